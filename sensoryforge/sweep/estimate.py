"""What a sweep or a run would cost, without running it: the dry run's report and its estimates
of time, memory and disk."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

from omegaconf import DictConfig

from sensoryforge.config import to_stimulus
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.simulator import BYTES_PER_ELEMENT, auto_batch
from sensoryforge.core.text import clock
from sensoryforge.sweep.plan import Point, swept_keys, written

# Measured on the reference 2-core machine (benchmarks/RESULTS.md, W1-W4): seconds per stimulus,
# step and afferent (drive, noise, spiking loop, outcomes), per step of a batch (Python and
# dispatch overhead of the spiking loop), per Hydra job, per stimulus to write the dataset, and the
# fixed start-up (Python, torch, Hydra). Bytes on disk per spike (job files, results.pt and
# results.h5 together) and per stimulus (records, attributes, index), at an assumed mean rate.
SEC_PER_ELEMENT_STEP = 1.5e-8
SEC_PER_BATCH_STEP = 1.2e-4
SEC_PER_JOB = 0.5
SEC_PER_STIMULUS_DATASET = 5e-3
SEC_STARTUP = 3.5
BASE_MEMORY_MB = 450  # python + torch + hydra
DISK_BYTES_PER_SPIKE, DISK_BYTES_PER_STIMULUS, ASSUMED_RATE_HZ = 25, 2048, 2.0


def estimate(cfg: DictConfig, n_stimuli: int, n_jobs: int, parallel: int) -> str:
    steps = max(1, round(cfg.pipeline.duration / cfg.pipeline.dt))
    n = sum(getattr(cfg.neurons, p).count for p in POPULATIONS)
    batch = cfg.pipeline.batch_size or auto_batch(steps, n)
    batch = min(batch, max(1, math.ceil(n_stimuli / max(n_jobs, 1))))
    per_stim = SEC_PER_ELEMENT_STEP * steps * n + SEC_PER_BATCH_STEP * steps / batch
    at_once = max(1, min(parallel, n_jobs))
    seconds = (
        SEC_STARTUP
        + (n_stimuli * per_stim + n_jobs * SEC_PER_JOB) / at_once
        + n_stimuli * SEC_PER_STIMULUS_DATASET
    )
    memory = BASE_MEMORY_MB + batch * steps * max(n, 1) * BYTES_PER_ELEMENT / 2**20
    spikes = n_stimuli * n * ASSUMED_RATE_HZ * steps * cfg.pipeline.dt / 1000.0
    disk = (spikes * DISK_BYTES_PER_SPIKE + n_stimuli * DISK_BYTES_PER_STIMULUS) / 2**20
    return (
        f"~{clock(seconds)} (~{per_stim * 1000:.0f} ms per stimulus, {at_once} job(s) at a time), "
        f"peak memory ~{memory:.0f} MB per job, disk ~{disk:.0f} MB (at ~{ASSUMED_RATE_HZ:g} Hz per afferent)"
    )


def single_dry_run(cfg: DictConfig) -> None:
    stim = to_stimulus(cfg.stimulus)
    params = " ".join(f"{k}={v}" for k, v in stim.params().items())
    print("dry run: nothing simulated, nothing written")
    print(f"  1 stimulus: {stim.type_name} {params} seed={cfg.seed} repetition={cfg.repetition}")
    print(f"  estimate: {estimate(cfg, 1, 1, 1)}")


def print_dry_run(config, points: list[Point], done, chunks, size: int, sweep_dir: Path, parallel: int) -> None:
    todo = sum(len(c) for c in chunks.values())
    print("dry run: nothing simulated, nothing written")
    print(f"  stimuli: {len(points)} ({todo} to run, {len(done)} already finished)")
    print(f"  jobs: {len(chunks)} (up to {size} stimuli each), {parallel} at a time")
    for k in swept_keys(points):
        vals = list(OrderedDict.fromkeys(written(p.point[k]) for p in points if k in p.point))
        shown = ", ".join(vals[:8]) + (", ..." if len(vals) > 8 else "")
        print(f"  swept {k}: {shown} ({len(vals)} values)")
    print(f"  output folder: {sweep_dir}")
    print("  examples:")
    shown = swept_keys(points) or list(points[0].point) if points else []
    for p in points[:3] + (points[-1:] if len(points) > 3 else []):
        print(f"    {p.id}: " + " ".join(f"{k}={written(p.point[k])}" for k in shown if k in p.point))
    print(f"  estimate: {estimate(config, todo, max(len(chunks), 1), parallel)}")
