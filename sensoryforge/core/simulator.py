"""The afferent pipeline in torch, batched over stimuli.

stimulus factors -> innervation (each afferent pools receptors of its receptive field)
-> temporal filter per class -> seeded input noise -> spiking model -> spikes [B, T, N].

Every step that mixes numbers within a stimulus (projection, filtering, noise) gives each stimulus
the numbers it gets alone (the pooling and the FFTs run over the batch, but row by row in the same
order), and the spiking loop is elementwise, so a stimulus gives bit-identical spikes whatever else
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
from sensoryforge.core.response import Response, index_dtype
from sensoryforge.core.schema import POPULATIONS, NeuronsConfig, PipelineConfig
from sensoryforge.core.sizes import (  # noqa: F401  (kept importable from here)
    AUTO_BATCH_BYTES,
    BYTES_PER_ELEMENT,
    auto_batch,
    memory_needed,
    noise_seed,
    step_count,
)
from sensoryforge.core.stimuli import Stimulus

# each population's seed stream; pc came last, so the others kept their afferents when it was added
SEED_INDEX = {"sa": 0, "ra": 1, "sa2": 2, "pc": 3}
# afferents per task of the fused kernel: its state stays in L1 cache, and its split depends on
# the population alone, never on the batch
BLOCK = 128


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
    # population -> each stimulus' spikes as response.encode gives them, when the fused kernel
    # encoded them as it went (None from the torch loop)
    flats: dict[str, list[np.ndarray]] | None = None
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

    def __init__(self, pipeline=None, neurons=None, engine: str = "auto"):
        pipeline = PipelineConfig() if pipeline is None else pipeline
        neurons = NeuronsConfig() if neurons is None else neurons
        check_fields(pipeline, "pipeline")
        check_fields(neurons, "neurons")
        self.cfg_pipeline, self.cfg_neurons = pipeline, neurons
        self.engine = engine  # "auto": the fused kernel where it runs; "torch": the torch loop
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
        # every filter some population uses, stacked: one inverse FFT per stimulus filters all
        self.filter_rows, stack = {}, []
        for slot, p in enumerate(self.populations):
            f, (lp, vel) = p.cfg.filter, self.transfer[p.name]
            for kind, used, h in (("lp", f.w_static > 0, lp), ("vel", f.w_on > 0 or f.w_off > 0, vel)):
                if used and p.count > 0:
                    self.filter_rows[slot, kind] = len(stack)
                    stack.append(h)
        self.transfers = torch.stack(stack) if stack else None  # [M, F]
        # each population's (gain, w_static, w_on, w_off) as plain floats: read per stimulus, where
        # a config node's attribute access would cost more than the arithmetic
        self.mix = [(float(p.cfg.gain), float(p.cfg.filter.w_static), float(p.cfg.filter.w_on),
                     float(p.cfg.filter.w_off)) for p in self.populations]
        self._build_models()

    # -- spiking models --------------------------------------------------------------------
    def _build_models(self) -> None:
        """Per-afferent inputs of the spiking loop, laid out over the concatenated afferent axis:
        the kernel's rows (kernel.COMMON, each model's PARAMS, the initial state), the noise
        counter of each afferent (its index in the configured population, the population's
        seed index), one torch model per run of consecutive populations of the same model type
        (the torch path), and the kernel's blocks of at most BLOCK afferents of one population."""
        from sensoryforge.core import kernel

        N = self.n_total
        common = torch.zeros(len(kernel.COMMON), N, dtype=torch.float64)
        width = max(len(r) for r in kernel.PARAMS.values())
        params = torch.zeros(width, N, dtype=torch.float64)
        init = torch.zeros(kernel.STATE_ROWS, N, dtype=torch.float64)
        afferent = torch.zeros(N, dtype=torch.int64)
        population = torch.zeros(N, dtype=torch.int64)
        self.groups, blocks = [], []  # groups: (model, (first column, end column), loop inputs)
        live = [p for p in self.populations if p.count > 0]
        for model_name, run in itertools.groupby(live, key=lambda p: p.cfg.model):
            model_cls, pops = MODELS[model_name], list(run)
            values = []
            for p in pops:
                gen = torch.Generator().manual_seed(noise_seed(self.cfg_pipeline.seed, 2000 + SEED_INDEX[p.name]))
                mp = getattr(p.cfg, model_name)
                v = per_neuron(model_cls, mp, int(p.cfg.count), p.cfg.variability, gen)
                if p.index is not None:
                    v = {k: x[p.index] for k, x in v.items()}
                values.append(v)
                cols = slice(p.offset, p.offset + p.count)
                rheobase = model_cls.rheobase(mp)
                decay = math.exp(-self.dt / p.cfg.noise_tau)
                row = dict(saturation=p.cfg.saturation, bias=p.cfg.bias, scale=rheobase,
                           noise_sd=p.cfg.noise_std * rheobase, noise_scaling=p.cfg.noise_scaling,
                           noise_decay=decay, noise_kick=math.sqrt(1 - decay**2),
                           refractory=round(p.cfg.refractory / self.dt))
                for i, name in enumerate(kernel.COMMON):
                    common[i, cols] = row[name]
                afferent[cols] = torch.arange(p.count) if p.index is None else p.index
                population[cols] = SEED_INDEX[p.name]
                slot = self.populations.index(p)
                for lo in range(p.offset, p.offset + p.count, BLOCK):
                    blocks.append((model_cls.kernel_id, slot, lo, min(BLOCK, p.offset + p.count - lo)))
            merged = {k: torch.cat([d[k] for d in values]) for k in values[0]}
            model = model_cls(merged, self.dt)
            lo, hi = pops[0].offset, pops[-1].offset + pops[-1].count
            rows = model.rows()
            params[: rows.shape[0], lo:hi] = rows
            init[:, lo:hi] = model.initial()
            self.groups.append((model, (lo, hi)))
        self.common = common  # float64 masters; each path casts them once
        dev = dict(device=self.device, dtype=self.dtype)
        self.loop = {name: common[i].to(**dev) for i, name in enumerate(kernel.COMMON)}
        self.noise_index = (afferent.to(self.device), population.to(self.device))
        # each afferent's population (its column of a stimulus' time courses)
        self.slot_of = torch.cat([torch.full((p.count,), i, dtype=torch.long)
                                  for i, p in enumerate(self.populations)]).to(self.device)
        if self.device.type == "cpu":  # all receptive fields as one scipy CSR matrix (pool())
            import scipy.sparse

            self.pooling = scipy.sparse.vstack(
                [scipy.sparse.csr_matrix((p.weights.values().numpy(), p.weights.col_indices().numpy(),
                                          p.weights.crow_indices().numpy()), shape=tuple(p.weights.shape))
                 for p in self.populations], format="csr")
        f32 = dict(dtype=np.float32)
        self.kernel_inputs = dict(
            blocks=np.array(blocks, dtype=np.int64).reshape(-1, 4),
            common=common.numpy().astype(**f32), params=params.numpy().astype(**f32),
            init=init.numpy().astype(**f32), afferent=afferent.numpy().astype(np.uint32),
            population=population.numpy().astype(np.uint32),
            # each population's columns [first, end), as kernel.encode splits the spikes
            bounds=np.array([(p.offset, p.offset + p.count) for p in self.populations], np.int64).reshape(-1, 2),
        )

    @property
    def fused(self) -> bool:
        """The fused CPU kernel runs float32 on the CPU; anything else takes the torch loop."""
        return self.device.type == "cpu" and self.dtype == torch.float32 and self.engine != "torch"

    def restricted(self, keep: dict[str, Sequence[int]]) -> Simulator:
        """The same patch with only the afferents keep[population] (indices into the configured
        population; a population not named keeps none). Each keeps its receptive field, its
        parameters and its noise (drawn per configured afferent), so an experiment on a few
        afferents costs what they cost and sees what the whole patch would."""
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

    def linear_drive(self, stim: Stimulus) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, tuple]:
        """The filtered drive before saturation and bias (rheobase units), as the spiking loop
        takes it: (course [T, P], coef [N], None) when every population's drive is a time course
        times a coefficient per afferent, else (None, None, dense [T, N]); and the factors.

        Filters act on the K temporal factors; the rectified velocity paths need the pooled
        signal per afferent, except for a separable stimulus (K = 1): pooled pressure is then
        temporal(t) * coef(n) with coef >= 0, so rectifying the [T] time course is the same and
        the drive is one outer product."""
        return self.linear_drives([stim])[0]

    def linear_drives(self, stimuli: Sequence[Stimulus]) -> list[tuple]:
        """linear_drive of each stimulus, with one receptive-field product and one forward and one
        inverse FFT per group of stimuli: an FFT call costs ~0.25 ms however short its input, and
        these calls give every stimulus the numbers it gets alone (tests/test_pipeline.py checks
        this bit for bit): the CSR product adds each column's terms in the same order, and MKL's
        FFT is run on one thread (with two it splits odd batches differently)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # also spares the small per-stimulus operations torch's threading
        try:
            out: list[tuple] = []
            factors = [self.factors(stim) for stim in stimuli]
            for group in self._fft_groups(factors):
                out += self._linear_group(group)
            return out
        finally:
            torch.set_num_threads(threads)

    def _fft_groups(self, factors: list[tuple]) -> list[list[tuple]]:
        """Stimuli in groups whose filtered rows ([M, K, nfft] float64) stay under ~32 MB; one
        stimulus a group off the CPU, where no test holds batched FFTs to the single ones."""
        if self.device.type != "cpu":
            return [[f] for f in factors]
        per_row = max(1, len(self.filter_rows)) * self.filters.nfft * 8
        groups, size = [], 0
        for f in factors:
            k = f[0].shape[0] * per_row
            if not groups or size + k > 2**25:
                groups.append([])
                size = 0
            groups[-1].append(f)
            size += k
        return groups

    def _linear_group(self, factors: list[tuple]) -> list[tuple]:
        ks = [spatial.shape[0] for spatial, _ in factors]
        flat = torch.cat([spatial.reshape(spatial.shape[0], -1) for spatial, _ in factors])  # [sum K, H*W]
        pooled = self.pool(flat)  # [sum K, N]: pooled kPa per unit of each factor
        # all filters at once: [M, T, sum K] (M = 0 when no population filters)
        filtered = torch.zeros(0, self.steps, sum(ks), device=self.device, dtype=self.dtype)
        if self.transfers is not None:
            spectrum = self.filters.spectrum(torch.cat([temporal for _, temporal in factors], 1))  # [sum K, F]
            filtered = torch.fft.irfft(spectrum[None] * self.transfers[:, None], n=self.filters.nfft)
            filtered = filtered[..., : self.steps].transpose(1, 2).to(self.dtype)
        if len(ks) == sum(ks) and bool((pooled >= 0).all()):
            courses = self._courses(filtered.contiguous())  # every stimulus separable: all at once
            return [(c, k, None, f) for c, k, f in zip(courses, pooled, factors)]
        # each stimulus' rows contiguous, as alone: its products then take the same path
        rows = [r.contiguous() for r in filtered.split(ks, 2)]
        return [self._assemble(p, r, f) for p, r, f in zip(pooled.split(ks), rows, factors)]

    def _courses(self, rows: torch.Tensor) -> torch.Tensor:
        """[G, T, P] time courses of G separable stimuli from their filtered rows [M, T, G]."""
        courses = torch.zeros(rows.shape[2], self.steps, len(self.populations), device=self.device, dtype=self.dtype)
        for slot, p in enumerate(self.populations):
            if p.count > 0:
                courses[:, :, slot] = self._course(slot, rows).T
        return courses

    def _course(self, slot: int, rows: torch.Tensor, coef: torch.Tensor | None = None) -> torch.Tensor:
        """A population's filter mix of filtered rows [M, T, ...]: its time course when separable
        (one stimulus, or a group's columns: the same operations in the same order, so the same
        numbers), or with `coef` [K, n] its dense drive [T, n] (each row projected first)."""
        gain, w_static, w_on, w_off = self.mix[slot]
        lp, vel = self.filter_rows.get((slot, "lp")), self.filter_rows.get((slot, "vel"))
        shape = rows.shape[1:] if coef is None else (self.steps, coef.shape[1])
        course = torch.zeros(shape, device=self.device, dtype=self.dtype)
        if lp is not None:
            course += w_static * (rows[lp] if coef is None else rows[lp] @ coef)
        if vel is not None:
            v = rows[vel] if coef is None else rows[vel] @ coef
            course += w_on * v.clamp_min(0) + w_off * (-v).clamp_min(0)
        return gain * course

    def _assemble(self, pooled: torch.Tensor, rows: torch.Tensor, factors: tuple) -> tuple:
        """One stimulus' linear_drive from its pooled factors [K, N] and filtered rows [M, T, K]."""
        opts = dict(device=self.device, dtype=self.dtype)
        courses = torch.zeros(self.steps, len(self.populations), **opts)
        coefs = torch.zeros(self.n_total, **opts)
        dense = []  # (population, [T, n]) of the populations that are not separable

        for slot, p in enumerate(self.populations):
            if p.count == 0:
                continue
            coef = pooled[:, p.offset : p.offset + p.count]
            if coef.shape[0] == 1 and bool((coef >= 0).all()):
                courses[:, slot] = self._course(slot, rows[:, :, 0])
                coefs[p.offset : p.offset + p.count] = coef[0]
            else:
                dense.append((p, self._course(slot, rows, coef)))
        if not dense:
            return courses, coefs, None, factors
        out = self.outer(courses, coefs)
        for p, d in dense:
            out[:, p.offset : p.offset + p.count] = d
        return None, None, out, factors

    def pool(self, flat: torch.Tensor) -> torch.Tensor:
        """[K, H*W] pressure factors -> [K, N] pooled by every afferent's receptive field. On the
        CPU through one CSR product of all populations (kernel.pool: scipy's sums, with subnormal
        floats flushed; torch's CSR product costs ~1 ms a population here); elsewhere with the
        populations' torch CSR weights."""
        if self.device.type != "cpu":
            return torch.cat([(p.weights @ flat.T).T for p in self.populations], 1)
        from sensoryforge.core import kernel

        a, x = self.pooling, np.ascontiguousarray(flat.numpy().T)  # x: [H*W, K]
        out = np.empty((a.shape[0], x.shape[1]), np.result_type(a.dtype, x.dtype))
        kernel.pool(a.indptr, a.indices, a.data, x, out)  # scipy's sums, subnormals flushed
        return torch.from_numpy(np.ascontiguousarray(out.T)).to(self.dtype)

    def drive(self, stim: Stimulus) -> tuple[torch.Tensor, tuple]:
        """The drive [T, N_total] (rheobase units, after saturation and bias) for one stimulus,
        and its factors: what the spiking loop adds noise to."""
        course, coef, dense, factors = self.linear_drive(stim)
        return self._shape(self.outer(course, coef) if dense is None else dense), factors

    def outer(self, course: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        """The factored drive as [T, N]: each afferent's coefficient times its population's time
        course (one product per element, as in the kernel)."""
        return course[:, self.slot_of] * coef

    def _shape(self, d: torch.Tensor) -> torch.Tensor:
        """Saturation then bias, per afferent (the kernel's order and maths)."""
        from sensoryforge.core.noise import saturate

        return saturate(d, self.loop["saturation"]) + self.loop["bias"]

    def noise(self, seeds: Sequence[int]) -> torch.Tensor:
        """Standard normal numbers [T+1, B, N] of the trials' seeds (shaped into input noise by
        the spiking loop): the kernel's counter-based numbers, on this device."""
        from sensoryforge.core.noise import normals

        return normals(list(seeds), self.steps, *self.noise_index).to(self.dtype)

    def run(self, stimuli: list[Stimulus], seeds: list[int], intermediates: bool = False) -> BatchResult:
        """Simulate a batch: one noise seed per stimulus. Spikes come back as [B, T, N]."""
        inputs = self.linear_drives(stimuli)
        if self.fused:
            spikes, flats, drive, volts = self._run_fused(inputs, seeds, intermediates)
        else:
            (spikes, drive, volts), flats = self._run_torch(inputs, seeds, intermediates), None
        res = BatchResult(spikes=self.split(spikes), flats=flats)
        if intermediates:
            res.drive = self.split(drive)
            res.voltage = self.split(volts)
            res.factors = [f for *_, f in inputs]
        return res

    def _run_fused(self, inputs, seeds, intermediates):
        from sensoryforge.core import kernel

        spikes, active, drive, volts = self._kernel(inputs, seeds, intermediates)
        # the spikes encoded by reading only the steps where some afferent fired
        P, T = len(self.populations), self.steps
        flat, offsets = kernel.encode(spikes, active, self.kernel_inputs["bounds"])
        flats = {p.name: [flat[offsets[b * P + i] : offsets[b * P + i + 1]].astype(index_dtype(T * p.count))
                          for b in range(len(inputs))] for i, p in enumerate(self.populations)}
        as_t = torch.from_numpy
        return as_t(spikes), flats, (as_t(drive) if intermediates else None), (as_t(volts) if intermediates else None)

    def _kernel(self, inputs, seeds, intermediates):
        """kernel.run on a batch: spikes [B, T, N], active [B, T] (the steps with a spike), and
        drive and membrane potential [B, T, N] when intermediates (else empty)."""
        from sensoryforge.core import kernel
        from sensoryforge.core.noise import key_words

        B, T, N, P = len(inputs), self.steps, self.n_total, len(self.populations)
        course = np.zeros((B, T, P), np.float32)
        coef = np.zeros((B, N), np.float32)
        dense_of = np.full(B, -1, np.int64)
        dense = [d for _, _, d, _ in inputs if d is not None]
        dense_arr = np.empty((len(dense), T, N), np.float32)
        for b, (c, k, d, _) in enumerate(inputs):
            if d is None:
                course[b], coef[b] = c.numpy(), k.numpy()
            else:
                dense_of[b] = int((dense_of >= 0).sum())
                dense_arr[dense_of[b]] = d.numpy()
        keys = np.array([key_words(s) for s in seeds], dtype=np.uint32).reshape(B, 2)
        spikes = np.zeros((B, T, N), np.bool_)  # the kernel writes only the steps with a spike
        active = np.zeros((B, T), np.bool_)
        shape = (B, T, N) if intermediates else (0, 0, 0)
        drive, volts = np.empty(shape, np.float32), np.empty(shape, np.float32)
        k = self.kernel_inputs
        kernel.run(k["blocks"], np.float32(self.dt), course, coef, dense_arr, dense_of, k["common"],
                   k["params"], k["init"], k["afferent"], k["population"], keys, spikes, active, drive, volts,
                   bool(intermediates))
        return spikes, active, drive, volts

    def _run_torch(self, inputs, seeds, intermediates):
        from sensoryforge.core import kernel

        B, T, N = len(inputs), self.steps, self.n_total
        opts = dict(device=self.device, dtype=self.dtype)
        drive = torch.empty(T, B, N, **opts)
        for b, (c, k, d, _) in enumerate(inputs):
            drive[:, b] = self._shape(self.outer(c, k) if d is None else d)
        current = drive * self.loop["scale"]
        noise = self.noise(seeds) if self.has_noise else None
        spikes = torch.empty(T, B, N, dtype=torch.bool, device=self.device)
        volts = torch.empty(T, B, N, **opts) if intermediates else None
        for model, (lo, hi) in self.groups:
            s, v = model.run(
                current[..., lo:hi],
                noise[..., lo:hi] if noise is not None else None,
                # the float64 rows: cast where the kernel casts them (its kick from the same decay)
                *(self.common[kernel.COMMON.index(k), lo:hi] for k in ("noise_sd", "noise_decay")),
                self.common[kernel.COMMON.index("refractory"), lo:hi].round().long(),
                noise_scaling=self.common[kernel.COMMON.index("noise_scaling"), lo:hi],
                record_voltage=intermediates,
            )
            spikes[..., lo:hi] = s
            if volts is not None:
                volts[..., lo:hi] = v
        t = lambda x: None if x is None else x.transpose(0, 1)  # noqa: E731
        return t(spikes), t(drive) if intermediates else None, t(volts)

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
