"""Sizes and seeds computed from the config alone, without torch: the dry run, the estimate and
preflight need them, and importing torch would cost them over a second of start-up."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from sensoryforge.core.schema import POPULATIONS

if TYPE_CHECKING:
    from sensoryforge.core.schema import NeuronsConfig, PipelineConfig

# bytes of working memory per (stimulus x step x afferent) in the spiking loop: drive, noise,
# spikes and temporaries; used to size automatic batches.
BYTES_PER_ELEMENT = 14
AUTO_BATCH_BYTES = 256 * 2**20


def auto_batch(steps: int, afferents: int) -> int:
    """Stimuli per batch that keep the spiking loop's tensors within AUTO_BATCH_BYTES."""
    return max(1, min(256, AUTO_BATCH_BYTES // (steps * max(afferents, 1) * BYTES_PER_ELEMENT)))


def step_count(pipeline: PipelineConfig) -> int:
    """Time steps of a stimulus: duration / dt, at least one."""
    return max(1, round(pipeline.duration / pipeline.dt))


def memory_needed(pipeline: PipelineConfig, neurons: NeuronsConfig, stimuli: int = 1) -> dict[str, int]:
    """Peak bytes one job of `stimuli` stimuli allocates beyond the interpreter, by part, computed
    from the config alone (nothing is built): what lets a job too large for the machine be
    refused before it starts instead of failing inside an allocation."""
    steps = step_count(pipeline)
    pops = [getattr(neurons, p) for p in POPULATIONS]
    n = sum(p.count for p in pops)
    receptors = pipeline.grid_size**2
    scale = 2 if pipeline.dtype == "float64" else 1
    batch = max(1, min(pipeline.batch_size or auto_batch(steps, n), stimuli))

    def candidates(p) -> int:  # receptors within a field's 3-sigma disk (innervation())
        return min(math.ceil(math.pi * (3 * p.rf_sigma / pipeline.spacing + 2) ** 2), receptors)

    parts = {
        # coordinates and a stimulus' spatial factors, float64 while they are evaluated
        "receptor grid": 64 * receptors,
        # sparse fields (COO while built: 48 bytes per candidate) and the 512-afferent build blocks
        "receptive fields": sum(p.count * candidates(p) * 48 + min(p.count, 512) * candidates(p) * 64 for p in pops),
        # the filters' spectra and transfer functions (complex128, zero-padded to 2T)
        "filters": 512 * steps,
        # the spiking loop's tensors and one stimulus' drive with its temporaries
        "spiking loop": scale * (batch * steps * n * BYTES_PER_ELEMENT + steps * n * 12),
    }
    if pipeline.save_intermediates:  # drive and membrane potential of every stimulus, kept to the end
        parts["saved intermediates"] = scale * 8 * stimuli * steps * n
    return parts


def noise_seed(seed: int, repetition: int) -> int:
    """The trial's noise seed: a hash of (seed, repetition), so seeds never collide across them."""
    return int(np.random.SeedSequence([int(seed), int(repetition)]).generate_state(1, np.uint64)[0] >> 1)
