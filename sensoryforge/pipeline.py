"""The afferent pipeline in torch, batched over stimuli.

stimulus factors -> innervation (each afferent pools receptors of its receptive field)
-> temporal filter per class -> seeded input noise -> spiking model -> spikes [B, T, N].

Every step that mixes numbers within a stimulus (projection, filtering, noise) runs per stimulus,
and the spiking loop is elementwise, so a stimulus gives bit-identical spikes whatever else
shares its batch: results never depend on chunking, order, launcher or resume.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from sensoryforge.config import POPULATIONS
from sensoryforge.neurons import MODELS, per_neuron
from sensoryforge.params import ConfigError
from sensoryforge.stimuli import Stimulus

# bytes of working memory per (stimulus x step x afferent) in the spiking loop: drive, noise,
# spikes and temporaries; used to size automatic batches.
BYTES_PER_ELEMENT = 14
AUTO_BATCH_BYTES = 256 * 2**20


def auto_batch(steps: int, afferents: int) -> int:
    """Stimuli per batch that keep the spiking loop's tensors within AUTO_BATCH_BYTES."""
    return max(1, min(256, AUTO_BATCH_BYTES // (steps * max(afferents, 1) * BYTES_PER_ELEMENT)))


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
class Grid:
    size: int
    spacing: float

    @property
    def extent(self) -> float:
        """Side of the square patch (mm); receptors sit at cell centres."""
        return self.size * self.spacing

    def coords(self, dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """x, y [H, W] in mm, centred on 0; rows run along y, columns along x."""
        c = (torch.arange(self.size, dtype=dtype, device=device) - (self.size - 1) / 2) * self.spacing
        y, x = torch.meshgrid(c, c, indexing="ij")
        return x, y


def afferent_positions(n: int, extent: float, jitter: float, gen: torch.Generator) -> torch.Tensor:
    """n positions [n, 2] (mm) on a jittered square lattice filling the patch; when n is not a
    square, a seeded choice of lattice cells is left empty."""
    if n == 0:
        return torch.zeros(0, 2, dtype=torch.float64)
    side = math.ceil(math.sqrt(n))
    step = extent / side
    cells = torch.randperm(side * side, generator=gen)[:n].sort().values
    rows, cols = cells // side, cells % side
    centre = (torch.stack([cols, rows], 1).to(torch.float64) + 0.5) * step - extent / 2
    offset = (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * jitter * step
    return centre + offset


def innervation(
    pos: torch.Tensor, grid: Grid, sigma: float, p_centre: float, gen: torch.Generator
) -> torch.Tensor:
    """Sparse receptive fields [n, H*W] (CSR, float64, rows sum to 1).

    A receptor at distance d <= 3 sigma from the afferent is connected with probability
    p_centre * exp(-d^2 / 2 sigma^2), with a weight uniform in [0.5, 1]; hot spots and irregular
    borders follow, as in real fields. An afferent left with no receptor takes its nearest one.
    """
    n, g = pos.shape[0], grid.size
    if n == 0:
        return torch.zeros(0, g * g, dtype=torch.float64).to_sparse_csr()
    reach = min(math.ceil(3 * sigma / grid.spacing), g)
    off = torch.arange(-reach, reach + 1)
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    disk = oy**2 + ox**2 <= (reach + 1) ** 2  # candidates: the 3-sigma disk around the nearest receptor
    oy, ox = oy[disk], ox[disk]
    half = (g - 1) / 2
    rows, cols, vals = [], [], []
    for start in range(0, n, 512):  # bounded memory for large populations
        p = pos[start : start + 512]
        ci = torch.round(p[:, 1] / grid.spacing + half).long().clamp(0, g - 1)
        cj = torch.round(p[:, 0] / grid.spacing + half).long().clamp(0, g - 1)
        ii, jj = ci[:, None] + oy[None], cj[:, None] + ox[None]
        on_grid = (ii >= 0) & (ii < g) & (jj >= 0) & (jj < g)
        d2 = ((jj - half) * grid.spacing - p[:, :1]) ** 2 + ((ii - half) * grid.spacing - p[:, 1:]) ** 2
        prob = p_centre * torch.exp(-d2 / (2 * sigma**2))
        u = torch.rand(prob.shape, generator=gen, dtype=torch.float64)
        keep = on_grid & (d2 <= (3 * sigma) ** 2) & (u < prob)  # fields end at 3 sigma
        # given a connection, u / prob is uniform in [0, 1): it sets the weight too
        w = 0.5 + 0.5 * u / prob
        # afferents with no receptor take the nearest one
        empty = ~keep.any(1)
        if empty.any():
            nearest = torch.where(on_grid, d2, torch.inf).argmin(1)
            keep[empty, nearest[empty]] = True
            w[empty, nearest[empty]] = 1.0
        a, k = keep.nonzero(as_tuple=True)
        rows.append(a + start)
        cols.append(ii[a, k] * g + jj[a, k])
        vals.append(w[a, k])
    rows_t, cols_t, vals_t = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, rows_t, vals_t)
    vals_t = vals_t / sums[rows_t]
    coo = torch.sparse_coo_tensor(
        torch.stack([rows_t, cols_t]), vals_t, (n, g * g), check_invariants=True
    ).coalesce()
    with warnings.catch_warnings():  # CSR is "beta" in torch; its matmul is what we need here
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()


def lowpass_response(tau: float, dt: float, n: int) -> np.ndarray:
    """Impulse response of y[t] = a y[t-1] + (1 - a) x[t], a = exp(-dt/tau) (unit DC gain)."""
    a = math.exp(-dt / tau)
    return (1 - a) * a ** np.arange(n, dtype=np.float64)


def velocity_response(tau: float, dt: float, n: int) -> np.ndarray:
    """tau * d/dt of two cascaded low-passes: a band-pass with gain tau*omega/(1+(tau*omega)^2)."""
    a = math.exp(-dt / tau)
    m = np.arange(n, dtype=np.float64)
    g = (1 - a) ** 2 * (m + 1) * a**m
    return tau / dt * np.diff(g, prepend=0.0)


@dataclass
class Population:
    name: str
    count: int
    offset: int  # first column in the concatenated afferent axis
    positions: torch.Tensor  # [n, 2] mm
    weights: torch.Tensor  # [n, H*W] sparse CSR on device
    cfg: object


@dataclass
class BatchResult:
    spikes: dict[str, torch.Tensor]  # population -> [B, T, N] bool
    drive: dict[str, torch.Tensor] = field(default_factory=dict)  # [B, T, N], rheobase units
    voltage: dict[str, torch.Tensor] = field(default_factory=dict)  # [B, T, N]
    factors: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)


class Simulator:
    """A patch of skin with its afferent populations, built once from (pipeline, neurons)."""

    def __init__(self, pipeline, neurons):
        self.cfg_pipeline, self.cfg_neurons = pipeline, neurons
        self.device = resolve_device(pipeline.device)
        self.dtype = getattr(torch, pipeline.dtype)
        # filters run in double precision where the device has it (MPS has no float64)
        self.fft_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        self.dt = float(pipeline.dt)
        self.steps = max(1, round(pipeline.duration / pipeline.dt))
        self.grid = Grid(int(pipeline.grid_size), float(pipeline.spacing))
        self.times = torch.arange(self.steps, dtype=torch.float64) * self.dt  # ms
        self.x, self.y = self.grid.coords()
        self.populations: list[Population] = []
        offset = 0
        for i, name in enumerate(POPULATIONS):
            pc = getattr(neurons, name)
            gen = torch.Generator().manual_seed(noise_seed(pipeline.seed, 1000 + i))
            pos = afferent_positions(pc.count, self.grid.extent, pc.jitter, gen)
            w = innervation(pos, self.grid, pc.rf_sigma, pc.innervation, gen)
            w = w.to(device=self.device, dtype=self.dtype)
            self.populations.append(Population(name, pc.count, offset, pos, w, pc))
            offset += pc.count
        self.n_total = offset
        self._build_filters()
        self._build_models()
        self.has_noise = any(p.cfg.noise_std > 0 for p in self.populations if p.count > 0)

    # -- filters ---------------------------------------------------------------------------
    def _build_filters(self) -> None:
        self.nfft = 1 << (2 * self.steps - 1).bit_length()
        cache: dict[tuple, torch.Tensor] = {}

        def transfer(kind: str, tau: float) -> torch.Tensor:
            if (kind, tau) not in cache:
                fn = lowpass_response if kind == "lp" else velocity_response
                h = torch.from_numpy(fn(tau, self.dt, self.steps)).to(self.fft_dtype)
                cache[(kind, tau)] = torch.fft.rfft(h, n=self.nfft).to(self.device)
            return cache[(kind, tau)]

        self.transfer = {
            p.name: (transfer("lp", p.cfg.filter.tau_static), transfer("vel", p.cfg.filter.tau_dynamic))
            for p in self.populations
        }

    # -- spiking models --------------------------------------------------------------------
    def _build_models(self) -> None:
        """One spiking model per run of consecutive populations that use the same model type."""
        self.groups = []  # (model, (first column, end column), per-neuron loop inputs)
        scale = torch.zeros(self.n_total, dtype=torch.float64)
        runs = itertools.groupby((p for p in self.populations if p.count > 0), key=lambda p: p.cfg.model)
        for model_name, pops in runs:
            model_cls, pops = MODELS[model_name], list(pops)
            params, sd, decay, refr = [], [], [], []
            for p in pops:
                i = POPULATIONS.index(p.name)
                gen = torch.Generator().manual_seed(noise_seed(self.cfg_pipeline.seed, 2000 + i))
                mp = getattr(p.cfg, model_name)
                params.append(per_neuron(model_cls, mp, p.count, p.cfg.variability, gen))
                rheobase = model_cls.rheobase(mp)
                scale[p.offset : p.offset + p.count] = rheobase
                n = p.count
                sd.append(torch.full((n,), p.cfg.noise_std * rheobase, dtype=torch.float64))
                decay.append(torch.full((n,), math.exp(-self.dt / p.cfg.noise_tau), dtype=torch.float64))
                refr.append(torch.full((n,), round(p.cfg.refractory / self.dt), dtype=torch.long))
            dev = dict(device=self.device, dtype=self.dtype)
            merged = {k: torch.cat([d[k] for d in params]).to(**dev) for k in params[0]}
            extras = dict(
                noise_sd=torch.cat(sd).to(**dev),
                noise_decay=torch.cat(decay).to(**dev),
                refractory_steps=torch.cat(refr).to(self.device),
            )
            cols = (pops[0].offset, pops[-1].offset + pops[-1].count)
            self.groups.append((model_cls(merged, self.dt), cols, extras))
        # drive (rheobase units) -> each model's current unit
        self.scale = scale.to(self.device, self.dtype)

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
        spectrum = torch.fft.rfft(temporal.T.to(self.fft_dtype), n=self.nfft)  # [K, F]
        out = torch.empty(self.steps, self.n_total, device=self.device, dtype=self.dtype)

        def filtered(transfer: torch.Tensor) -> torch.Tensor:  # [T, K]
            return torch.fft.irfft(spectrum * transfer, n=self.nfft)[:, : self.steps].T.to(self.dtype)

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
