"""The afferent pipeline in torch, batched over stimuli.

stimulus factors -> innervation (each afferent pools receptors of its receptive field)
-> temporal filter per class -> seeded input noise -> spiking model -> spikes [B, T, N].

Every step that mixes numbers within a stimulus (projection, filtering, noise) runs per stimulus,
and the spiking loop is elementwise, so a stimulus gives bit-identical spikes whatever else
shares its batch: results never depend on chunking, order, launcher or resume.
"""

from __future__ import annotations

import copy
import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from sensoryforge.core.filters import FilterBank
from sensoryforge.core.grid import Grid, afferent_positions, innervation
from sensoryforge.core.neurons import MODELS, per_neuron
from sensoryforge.core.params import ConfigError, check_fields
from sensoryforge.core.response import Response
from sensoryforge.core.schema import POPULATIONS, NeuronsConfig, PipelineConfig
from sensoryforge.core.stimuli import Stimulus

# bytes of working memory per (stimulus x step x afferent) in the spiking loop: drive, noise,
# spikes and temporaries; used to size automatic batches.
BYTES_PER_ELEMENT = 14
AUTO_BATCH_BYTES = 256 * 2**20
# each population's seed stream; pc came last, so the others kept their afferents when it was added
SEED_INDEX = {"sa": 0, "ra": 1, "sa2": 2, "pc": 3}


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("pipeline.device=cuda: CUDA is not available here; allowed: cpu, auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("pipeline.device=mps: MPS is not available here; allowed: cpu, auto")
    return torch.device(name)


@dataclass
class Population:
    name: str
    count: int
    offset: int  # first column in the concatenated afferent axis
    positions: torch.Tensor  # [n, 2] mm
    weights: torch.Tensor  # [n, H*W] sparse CSR on device
    cfg: object
    index: torch.Tensor | None = None  # which afferents of the configured population (None: all)


@dataclass
class BatchResult:
    spikes: dict[str, torch.Tensor]  # population -> [B, T, N] bool
    drive: dict[str, torch.Tensor] = field(default_factory=dict)  # [B, T, N], rheobase units
    voltage: dict[str, torch.Tensor] = field(default_factory=dict)  # [B, T, N]
    factors: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class Simulator:
    """A patch of skin with its afferent populations, built once from (pipeline, neurons).

    Both are schema objects (`PipelineConfig`, `NeuronsConfig`: plain dataclasses, or a composed
    config's nodes); left out, they are the defaults. Values out of range raise ConfigError.

        sim = Simulator(PipelineConfig(duration=500.0))
        (r,) = sim.simulate([Gaussian(amplitude=40.0)])
        r.rate("sa")                     # Hz per SA afferent
    """

    def __init__(self, pipeline=None, neurons=None):
        pipeline = PipelineConfig() if pipeline is None else pipeline
        neurons = NeuronsConfig() if neurons is None else neurons
        check_fields(pipeline, "pipeline")
        check_fields(neurons, "neurons")
        self.cfg_pipeline, self.cfg_neurons = pipeline, neurons
        self.device = resolve_device(pipeline.device)
        self.dtype = getattr(torch, pipeline.dtype)
        # filters run in double precision where the device has it (MPS has no float64)
        self.fft_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.dt = float(pipeline.dt)
        self.steps = step_count(pipeline)
        self.grid = Grid(int(pipeline.grid_size), float(pipeline.spacing))
        self.times = torch.arange(self.steps, dtype=torch.float64) * self.dt  # ms
        self.x, self.y = self.grid.coords()
        self.populations: list[Population] = []
        offset = 0
        for name in POPULATIONS:
            pc = getattr(neurons, name)
            gen = torch.Generator().manual_seed(noise_seed(pipeline.seed, 1000 + SEED_INDEX[name]))
            pos = afferent_positions(pc.count, self.grid.extent, pc.jitter, gen)
            w = innervation(pos, self.grid, pc.rf_sigma, pc.innervation, gen)
            w = w.to(device=self.device, dtype=self.dtype)
            self.populations.append(Population(name, pc.count, offset, pos, w, pc))
            offset += pc.count
        self.n_total = offset
        self.whole = {p.name: p for p in self.populations}  # the configured populations
        self.filters = FilterBank(self.steps, self.dt, self.device, self.dtype, self.fft_dtype)
        self.transfer = {
            p.name: (self.filters.transfer("lowpass", p.cfg.filter.tau_static),
                     self.filters.transfer("velocity", p.cfg.filter.tau_dynamic, int(p.cfg.filter.order)))
            for p in self.populations
        }
        self._build_models()

    # -- spiking models --------------------------------------------------------------------
    def _build_models(self) -> None:
        """One spiking model per run of consecutive populations that use the same model type."""
        self.groups = []  # (model, (first column, end column), per-neuron loop inputs)
        scale = torch.zeros(self.n_total, dtype=torch.float64)
        runs = itertools.groupby((p for p in self.populations if p.count > 0), key=lambda p: p.cfg.model)
        for model_name, pops in runs:
            model_cls, pops = MODELS[model_name], list(pops)
            params, sd, decay, refr, scaling = [], [], [], [], []
            for p in pops:
                gen = torch.Generator().manual_seed(noise_seed(self.cfg_pipeline.seed, 2000 + SEED_INDEX[p.name]))
                mp = getattr(p.cfg, model_name)
                values = per_neuron(model_cls, mp, int(p.cfg.count), p.cfg.variability, gen)
                if p.index is not None:
                    values = {k: v[p.index] for k, v in values.items()}
                params.append(values)
                rheobase = model_cls.rheobase(mp)
                scale[p.offset : p.offset + p.count] = rheobase
                n = p.count
                sd.append(torch.full((n,), p.cfg.noise_std * rheobase, dtype=torch.float64))
                scaling.append(torch.full((n,), float(p.cfg.noise_scaling), dtype=torch.float64))
                decay.append(torch.full((n,), math.exp(-self.dt / p.cfg.noise_tau), dtype=torch.float64))
                refr.append(torch.full((n,), round(p.cfg.refractory / self.dt), dtype=torch.long))
            dev = dict(device=self.device, dtype=self.dtype)
            merged = {k: torch.cat([d[k] for d in params]).to(**dev) for k in params[0]}
            extras = dict(
                noise_sd=torch.cat(sd).to(**dev),
                noise_decay=torch.cat(decay).to(**dev),
                refractory_steps=torch.cat(refr).to(self.device),
                noise_scaling=torch.cat(scaling).to(**dev),
            )
            cols = (pops[0].offset, pops[-1].offset + pops[-1].count)
            self.groups.append((model_cls(merged, self.dt), cols, extras))
        # drive (rheobase units) -> each model's current unit
        self.scale = scale.to(self.device, self.dtype)

    def restricted(self, keep: dict[str, Sequence[int]]) -> Simulator:
        """The same patch with only the afferents keep[population] (indices into the configured
        population; a population not named keeps none). Each keeps its receptive field and
        parameters, so an experiment on a few afferents costs what they cost. The noise differs
        from the whole patch's (it is drawn per simulated column)."""
        sim = copy.copy(self)
        sim.populations, offset = [], 0
        for name, p in self.whole.items():
            idx = torch.as_tensor(np.asarray(keep.get(name, []), dtype=np.int64))
            w = p.weights.to_sparse_coo().to_dense()[idx.to(self.device)]
            with warnings.catch_warnings():  # CSR is "beta" in torch
                warnings.simplefilter("ignore", UserWarning)
                w = w.to_sparse_csr()
            sim.populations.append(Population(name, len(idx), offset, p.positions[idx], w, p.cfg, idx))
            offset += len(idx)
        sim.n_total = offset
        sim._build_models()
        return sim

    @property
    def has_noise(self) -> bool:
        return any(p.cfg.noise_std > 0 or p.cfg.noise_scaling > 0 for p in self.populations if p.count > 0)

    # -- simulation ------------------------------------------------------------------------
    def auto_batch(self) -> int:
        return auto_batch(self.steps, self.n_total)

    def factors(self, stim: Stimulus) -> tuple[torch.Tensor, torch.Tensor]:
        spatial, temporal = stim.factors(self.x, self.y, self.times)
        return spatial.to(self.device, self.dtype), temporal.to(self.device, self.dtype)

    def drive(self, stim: Stimulus) -> tuple[torch.Tensor, tuple]:
        """Filtered drive [T, N_total] (rheobase units) for one stimulus, and its factors.

        Filters act on the K temporal factors; the rectified velocity paths need the pooled
        signal per afferent, except for a separable stimulus (K = 1): pooled pressure is then
        temporal(t) * coef(n) with coef >= 0, so rectifying the [T] time course is the same and
        the drive is one outer product."""
        spatial, temporal = self.factors(stim)
        flat = spatial.reshape(spatial.shape[0], -1)  # [K, H*W]
        spectrum = self.filters.spectrum(temporal)  # [K, F]
        out = torch.empty(self.steps, self.n_total, device=self.device, dtype=self.dtype)

        def filtered(transfer: torch.Tensor) -> torch.Tensor:  # [T, K]
            return self.filters.apply(spectrum, transfer)

        for p in self.populations:
            if p.count == 0:
                continue
            f = p.cfg.filter
            coef = (p.weights @ flat.T).T  # [K, n]: pooled kPa per unit of each factor
            lp, vel = self.transfer[p.name]
            dynamic = f.w_on > 0 or f.w_off > 0
            cols = out[:, p.offset : p.offset + p.count]
            if coef.shape[0] == 1 and bool((coef >= 0).all()):
                course = torch.zeros(self.steps, device=self.device, dtype=self.dtype)
                if f.w_static > 0:
                    course += f.w_static * filtered(lp)[:, 0]
                if dynamic:
                    v = filtered(vel)[:, 0]
                    course += f.w_on * v.clamp_min(0) + f.w_off * (-v).clamp_min(0)
                torch.outer(p.cfg.gain * course, coef[0], out=cols)
            else:
                d = torch.zeros(self.steps, p.count, device=self.device, dtype=self.dtype)
                if f.w_static > 0:
                    d += f.w_static * (filtered(lp) @ coef)
                if dynamic:
                    v = filtered(vel) @ coef
                    d += f.w_on * v.clamp_min(0) + f.w_off * (-v).clamp_min(0)
                torch.mul(d, p.cfg.gain, out=cols)
            if p.cfg.saturation > 0:
                s = float(p.cfg.saturation)
                cols.copy_(torch.tanh(cols / s).mul_(s))
            if p.cfg.bias:
                cols += p.cfg.bias
        return out, (spatial, temporal)

    def noise(self, seed: int) -> torch.Tensor:
        """Standard normal numbers [T+1, N] from the trial's seed (shaped into input noise by the
        spiking loop)."""
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        return torch.randn(self.steps + 1, self.n_total, generator=gen, device=self.device, dtype=self.dtype)

    def run(self, stimuli: list[Stimulus], seeds: list[int], intermediates: bool = False) -> BatchResult:
        """Simulate a batch: one noise seed per stimulus. Spikes come back as [B, T, N]."""
        B, T, N = len(stimuli), self.steps, self.n_total
        opts = dict(device=self.device, dtype=self.dtype)
        current = torch.empty(T, B, N, **opts)  # each model's current unit
        noise = torch.empty(T + 1, B, N, **opts) if self.has_noise else None
        drives, factors = [], []
        for b, (stim, seed) in enumerate(zip(stimuli, seeds)):
            d, f = self.drive(stim)
            torch.mul(d, self.scale, out=current[:, b])
            if noise is not None:
                noise[:, b] = self.noise(seed)
            if intermediates:
                drives.append(d)
                factors.append(f)
        spikes = torch.empty(T, B, N, dtype=torch.bool, device=self.device)
        volts = torch.empty(T, B, N, **opts) if intermediates else None
        for model, cols, extras in self.groups:
            lo, hi = cols
            s, v = model.run(
                current[..., lo:hi],
                noise[..., lo:hi] if noise is not None else None,
                record_voltage=intermediates,
                **extras,
            )
            spikes[..., lo:hi] = s
            if volts is not None:
                volts[..., lo:hi] = v
        res = BatchResult(spikes=self.split(spikes.transpose(0, 1)))
        if intermediates:
            res.drive = self.split(torch.stack(drives))
            res.voltage = self.split(volts.transpose(0, 1))
            res.factors = factors
        return res

    def split(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {p.name: x[..., p.offset : p.offset + p.count] for p in self.populations}

    def simulate(self, stimuli: Sequence[Stimulus], seeds: Sequence[int] | None = None) -> list[Response]:
        """One Response per stimulus, in batches of `auto_batch()`. seeds: the noise seed of each
        stimulus (default 0 for all; `noise_seed(seed, repetition)` is what a sweep uses)."""
        stimuli = list(stimuli)
        seeds = [0] * len(stimuli) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(stimuli):
            raise ValueError(f"seeds: {len(seeds)} given for {len(stimuli)} stimuli")
        out, batch = [], self.auto_batch()
        with torch.no_grad():
            for start in range(0, len(stimuli), batch):
                group, group_seeds = stimuli[start : start + batch], seeds[start : start + batch]
                res = self.run(group, group_seeds)
                for b, (stim, seed) in enumerate(zip(group, group_seeds)):
                    spikes = {pop: x[b].cpu().numpy() for pop, x in res.spikes.items()}
                    out.append(Response(spikes, self.dt, stimulus=stim, seed=seed))
        return out
