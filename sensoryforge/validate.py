"""The physiology battery: standard experiments of tactile afferent physiology, run on a config,
each compared with the published range it should fall in.

    sensoryforge-validate [key=value ...] [-o OUT] [--checks 1,2,...]

prints PASS/FAIL per check with the measured figures, the expected ranges and the sources, writes
`validation.csv` and `validation.png` into OUT (default `validation/<timestamp>`), and exits 1 if any
check fails (2 on a bad config). Library use: `run_battery(cfg, out_dir) -> bool`,
`validation_loss(cfg, checks) -> float` (0 when every criterion passes; grows with the distance of
each figure from its range) and `battery(cfg, checks) -> list[Check]`.

Units: pressure kPa (the model's skin is linear, so the "indentation depth" series of the
literature are pressure series here), space mm, time ms, rates Hz. The experiments drive the
`Simulator` directly with batches of stimulus dataclasses (no Hydra sweep), with the config's
population (pipeline seed, grid, neurons) and its time step; durations are set per experiment.
"Afferent at the centre of the patch" means the afferents whose receptive-field centroid (weighted
mean of their receptors) lies nearest the patch centre, so that their fields lie inside the patch;
stimuli "on the receptive-field centre" are centred on that centroid. docs/PHYSIOLOGY.md says what
each check measures, which tolerance was chosen and why.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sensoryforge.config import POPULATIONS
from sensoryforge.params import ConfigError
from sensoryforge.pipeline import Simulator, noise_seed
from sensoryforge.stimuli.gaussian import Gaussian
from sensoryforge.stimuli.probe import Probe
from sensoryforge.stimuli.vibration import Vibration

NAN = float("nan")
MISSING_LOSS = 10.0  # loss of a criterion that could not be measured (no afferent, no spike...); also the cap


# -- results -----------------------------------------------------------------------------------
@dataclass
class Criterion:
    """One measured figure and the range it must fall in (inclusive bounds).

    loss = distance to the range / scale (in log10 units when `log`), 0 inside the range.
    """

    label: str
    value: float
    lo: float = -math.inf
    hi: float = math.inf
    unit: str = ""
    scale: float = 1.0
    log: bool = False

    @property
    def passed(self) -> bool:
        v = self.value
        return v is not None and not math.isnan(v) and self.lo <= v <= self.hi

    @property
    def loss(self) -> float:
        v = self.value
        if v is None or math.isnan(v):
            return MISSING_LOSS
        if self.passed:
            return 0.0
        if self.log:
            if v <= 0:  # below a positive lower bound by an infinite factor
                return MISSING_LOSS
            f = math.log10
            lo = f(self.lo) if self.lo > 0 else -math.inf
            hi = f(self.hi) if math.isfinite(self.hi) else math.inf
            v = f(v)
        else:
            lo, hi = self.lo, self.hi
        d = max(lo - v, v - hi, 0.0)
        return min(d / self.scale, MISSING_LOSS) if math.isfinite(d) else MISSING_LOSS

    @property
    def expected(self) -> str:
        u = f" {self.unit}" if self.unit else ""
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            if self.lo == self.hi:
                return f"= {fmt(self.lo)}{u}"
            return f"{fmt(self.lo)}..{fmt(self.hi)}{u}"
        if math.isfinite(self.lo):
            return f">= {fmt(self.lo)}{u}"
        return f"<= {fmt(self.hi)}{u}"


@dataclass
class Check:
    number: int
    title: str
    source: str
    criteria: list[Criterion] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)  # for the figure
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.criteria) and all(c.passed for c in self.criteria)

    @property
    def loss(self) -> float:
        if self.error is not None or not self.criteria:
            return MISSING_LOSS
        return float(sum(c.loss for c in self.criteria))


def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    a = abs(x)
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.01:
        return f"{x:.3g}"
    return f"{x:.2e}"


# -- battery settings ---------------------------------------------------------------------------
@dataclass
class Options:
    """Sizes of the experiments (afferents sampled per class, repetitions...)."""

    k_sa: int = 6  # afferents per class in the single-afferent experiments
    k_ra: int = 6
    k_sa2: int = 3
    k_tuning: int = 3  # per class (SA, RA) in the frequency-tuning experiment
    k_map: int = 10  # SA and RA fields mapped (SA2: k_sa2)
    repetitions: int = 10  # check 6
    map_step: float = 0.5  # mm, probe grid of the SA / RA field maps (SA2: twice)
    bisection_steps: int = 8
    batch: int = 64


QUICK = Options(k_sa=3, k_ra=3, k_sa2=2, k_tuning=2, k_map=3, repetitions=6, map_step=0.5, bisection_steps=7)

# the standard ramp-and-hold (the default gaussian stimulus): rest 100, ramp 50, hold 700, ramp 50
T_PRE, T_RAMP, T_HOLD = 100.0, 50.0, 700.0
AMPLITUDES = (10.0, 20.0, 30.0, 40.0, 50.0)  # kPa: checks 1, 2, 8 (issue 2's series)
REFERENCE = 30.0  # kPa: the default stimulus amplitude (checks 3, 6)
RAMP_TIMES = (200.0, 100.0, 50.0, 25.0, 12.5)  # ms: check 3 ramps to REFERENCE kPa
FREQUENCIES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 400.0)  # Hz, check 4
PHASE_LOCK_HZ = 40.0
PHASE_LOCK_AMPS = tuple(0.25 * 2 ** (i / 2) for i in range(17))  # 0.25 .. 64 kPa
MAP_FACTOR = 4.0  # fields mapped at 4x the afferent's threshold at its most sensitive point
STRONG = (100.0, 300.0)  # kPa, check 9's extra steps


# -- the laboratory: one config, simulators per duration, spike bookkeeping ---------------------
class Lab:
    def __init__(self, cfg: DictConfig, options: Options):
        self.cfg, self.opt = cfg, options
        self.dt = float(cfg.pipeline.dt)
        self.seed = noise_seed(int(cfg.seed), 0)
        self._sims: dict[float, Simulator] = {}
        self.cache: dict[str, Any] = {}
        self.min_isi = math.inf  # ms, over every spike train simulated
        self.trains = 0
        base = self.sim(self.dt * 2)  # any duration: the population is the same
        self.extent = base.grid.extent
        self.counts = {p.name: p.count for p in base.populations}
        self.pops = {p.name: p for p in base.populations}
        xs, ys = base.x.reshape(-1), base.y.reshape(-1)
        self.receptors = torch.stack([xs, ys], 1)  # [H*W, 2] mm, float64
        self._dense: dict[str, torch.Tensor] = {}

    # simulators share the population (it depends on the pipeline seed, grid and neurons only)
    def sim(self, duration: float) -> Simulator:
        d = float(duration)
        if d not in self._sims:
            pl = OmegaConf.merge(self.cfg.pipeline, {"duration": d})
            self._sims[d] = Simulator(pl, self.cfg.neurons)
        return self._sims[d]

    def weights(self, pop: str) -> torch.Tensor:
        """Dense receptive-field weights [n, H*W] (float64, rows sum to 1)."""
        if pop not in self._dense:
            w = self.pops[pop].weights.to_sparse_coo().to_dense().cpu().to(torch.float64)
            self._dense[pop] = w
        return self._dense[pop]

    def centroids(self, pop: str) -> np.ndarray:
        """Receptive-field centres [n, 2] (mm): the weighted mean of each afferent's receptors."""
        if self.counts[pop] == 0:
            return np.zeros((0, 2))
        return (self.weights(pop) @ self.receptors).numpy()

    def central(self, pop: str, k: int) -> np.ndarray:
        """The k afferents of `pop` whose field centre lies nearest the patch centre."""
        c = self.centroids(pop)
        order = np.argsort(np.hypot(c[:, 0], c[:, 1]), kind="stable")
        return order[: min(k, len(order))]

    def run(
        self,
        stimuli: Sequence,
        duration: float,
        seeds: Sequence[int] | None = None,
        keep: dict[str, Iterable[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Simulate `stimuli` (one noise seed each; default the battery's) for `duration` ms.

        Returns population -> bool spikes [B, T, k] of the afferents in `keep[pop]` (all if not
        given). Every spike train simulated also updates the battery's shortest ISI.
        """
        sim = self.sim(duration)
        seeds = list(seeds) if seeds is not None else [self.seed] * len(stimuli)
        keep = {p: np.asarray(list(v), dtype=np.int64) for p, v in (keep or {}).items()}
        out: dict[str, list[np.ndarray]] = {p: [] for p in POPULATIONS}
        for start in range(0, len(stimuli), self.opt.batch):
            res = sim.run(list(stimuli[start : start + self.opt.batch]), seeds[start : start + self.opt.batch])
            for pop in POPULATIONS:
                s = res.spikes[pop]
                self._track(s)
                if pop in keep:
                    s = s[..., torch.from_numpy(keep[pop]).to(s.device)]
                out[pop].append(s.cpu().numpy())
        return {p: np.concatenate(v) if v else np.zeros((0, sim.steps, 0), bool) for p, v in out.items()}

    def _track(self, s: torch.Tensor) -> None:
        B, T, N = s.shape
        self.trains += B * N
        if N == 0:
            return
        b, t, n = torch.nonzero(s, as_tuple=True)
        if t.numel() < 2:
            return
        key = (b * N + n).cpu().numpy()
        tt = t.cpu().numpy()
        order = np.lexsort((tt, key))
        key, tt = key[order], tt[order]
        same = key[1:] == key[:-1]
        if same.any():
            self.min_isi = min(self.min_isi, float(np.diff(tt)[same].min()) * self.dt)


def count(spikes: np.ndarray, t0: float, t1: float, dt: float) -> np.ndarray:
    """Spikes per train in [t0, t1) ms: [B, T, k] -> [B, k]."""
    a, b = int(round(t0 / dt)), int(round(t1 / dt))
    return spikes[:, a:b].sum(1)


def r_squared(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(y) == 0:
        return 0.0
    slope, icpt = np.polyfit(x, y, 1)
    res = y - (slope * x + icpt)
    return float(1 - (res @ res) / ((y - y.mean()) @ (y - y.mean())))


def median(x) -> float:
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else NAN


def steps_down(y: Sequence[float]) -> int:
    """How many consecutive pairs fail to rise strictly."""
    y = np.asarray(y, float)
    return int((np.diff(y) <= 0).sum())


# -- shared experiments (cached: several checks read the same one) ------------------------------
def exp_ramp_hold(lab: Lab) -> dict:
    """The default ramp-and-hold gaussian (sigma 1 mm) centred on each sampled afferent's field
    centre at AMPLITUDES: rates in rest/ramp/hold/release windows and PSTHs."""
    if "ramp_hold" in lab.cache:
        return lab.cache["ramp_hold"]
    ks = {"sa": lab.opt.k_sa, "ra": lab.opt.k_ra, "sa2": lab.opt.k_sa2}
    chosen = {p: lab.central(p, k) for p, k in ks.items()}
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            for a in AMPLITUDES:
                cx, cy = (float(v) for v in cen[i])
                stims.append(Gaussian(amplitude=a, sigma=1.0, center_x=cx, center_y=cy))
                tags.append((pop, j, a))
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    sp = lab.run(stims, duration, keep=chosen)
    t_on, t_off = T_PRE + T_RAMP, T_PRE + T_RAMP + T_HOLD
    out: dict[str, Any] = {"amplitudes": AMPLITUDES, "duration": duration}
    nb = int(round(20.0 / lab.dt))  # PSTH bins of 20 ms
    for pop, idx in chosen.items():
        k, na = len(idx), len(AMPLITUDES)
        rows = [b for b, tg in enumerate(tags) if tg[0] == pop]
        T = sp[pop].shape[1]
        own = np.stack([sp[pop][b, :, tags[b][1]] for b in rows]) if rows else np.zeros((0, T), bool)
        own = own.reshape(k, na, T)  # [afferent, amplitude, time]
        def rate(a, b, own=own):
            i, j = int(round(a / lab.dt)), int(round(b / lab.dt))
            return own[:, :, i:j].sum(-1) / ((b - a) / 1000.0)

        bins = np.arange(t_on, t_off - 1e-9, 100.0)
        through = np.stack([rate(b0, b0 + 100.0) > 0 for b0 in bins], -1) if k else np.zeros((0, na, 1))
        psth = own[:, :, : T - T % nb].reshape(k, na, T // nb, nb).sum(-1) / (nb * lab.dt / 1000.0)
        out[pop] = {
            "n": k,
            "hold": rate(t_on + 100.0, t_off),  # [k, na] Hz
            "onset": rate(T_PRE, T_PRE + T_RAMP + 30.0),
            "offset": rate(t_off, t_off + T_RAMP + 30.0),
            "through": through.all(-1) if k else np.zeros((0, na), bool),  # fires in every 100 ms of the hold
            "psth": psth,  # [k, na, bins] Hz
            "psth_dt": nb * lab.dt,
        }
    lab.cache["ramp_hold"] = out
    return out


def bisect_threshold(
    lab: Lab,
    make: Callable[[int, float], Any],
    n: int,
    duration: float,
    respond: Callable[[dict[str, np.ndarray]], np.ndarray],
    keep: dict[str, Iterable[int]],
    lo: float = 0.05,
    hi: float = 500.0,
) -> np.ndarray:
    """Per item i < n, the smallest amplitude (kPa) at which `respond` is true, by bisection in log
    amplitude between lo and hi; inf where even hi does not evoke a response.

    make(i, amplitude) -> stimulus; respond(spikes) -> bool [n] (spikes as Lab.run returns them)."""
    lo_a, hi_a = np.full(n, math.log(lo)), np.full(n, math.log(hi))
    top = respond(lab.run([make(i, hi) for i in range(n)], duration, keep=keep))
    bottom = respond(lab.run([make(i, lo) for i in range(n)], duration, keep=keep))
    for _ in range(lab.opt.bisection_steps):
        mid = (lo_a + hi_a) / 2
        r = respond(lab.run([make(i, math.exp(mid[i])) for i in range(n)], duration, keep=keep))
        hi_a = np.where(r, mid, hi_a)
        lo_a = np.where(r, lo_a, mid)
    thr = np.exp(hi_a)
    thr = np.where(top, thr, math.inf)
    return np.where(bottom, lo, thr)


# -- the checks ---------------------------------------------------------------------------------
def check_1(lab: Lab) -> Check:
    c = Check(1, "SA ramp-and-hold on the field centre: sustained, rate linear in pressure",
              "Vega-Bermudez & Johnson 1999, J Neurophysiol 81:2701")
    e = exp_ramp_hold(lab)["sa"]
    amps = np.asarray(AMPLITUDES)
    if e["n"] == 0:
        c.error = "no SA afferents"
        return c
    hold = e["hold"]  # [k, na]
    mean = hold.mean(0)
    r2 = [r_squared(amps, h) for h in hold]
    strong = amps >= 20
    c.criteria = [
        Criterion("afferents firing in every 100 ms of the hold (>= 20 kPa)",
                  float(e["through"][:, strong].all(1).mean()), lo=0.8, scale=0.2),
        Criterion("hold-rate rises strictly with pressure (mean curve: steps not rising)",
                  float(steps_down(mean)), lo=0, hi=0, scale=1.0),
        Criterion("linear fit of hold rate vs pressure, median R^2", median(r2), lo=0.9, scale=0.1),
    ]
    c.data = {"ramp_hold": exp_ramp_hold(lab)}
    return c


def check_2(lab: Lab) -> Check:
    c = Check(2, "RA ramp-and-hold: silent in the hold, bursts at onset and offset",
              "Knibestol 1973, J Physiol 232:427; Johnson 2001, Curr Opin Neurobiol 11:455")
    e = exp_ramp_hold(lab)["ra"]
    if e["n"] == 0:
        c.error = "no RA afferents"
        return c
    strong = np.asarray(AMPLITUDES) >= 20
    onset, hold, offset = e["onset"][:, strong], e["hold"][:, strong], e["offset"][:, strong]
    ratio = np.where(onset > 0, hold / np.maximum(onset, 1e-9), np.where(hold > 0, 1.0, NAN))
    c.criteria = [
        Criterion("hold rate / onset rate (median, >= 20 kPa)", median(ratio), hi=0.05, scale=0.3, log=True),
        Criterion("afferents bursting at onset", float((onset > 0).mean()), lo=0.8, scale=0.2),
        Criterion("afferents bursting at offset", float((offset > 0).mean()), lo=0.8, scale=0.2),
        Criterion("RA onset rate (median, >= 20 kPa)", median(onset), lo=20.0, unit="Hz", scale=10.0),
    ]
    c.data = {"ramp_hold": exp_ramp_hold(lab)}
    return c


def exp_ramp_speed(lab: Lab) -> dict:
    if "ramp_speed" in lab.cache:
        return lab.cache["ramp_speed"]
    chosen = {"sa": lab.central("sa", lab.opt.k_sa), "ra": lab.central("ra", lab.opt.k_ra)}
    hold = 500.0
    duration = T_PRE + 2 * max(RAMP_TIMES) + hold
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            for tr in RAMP_TIMES:
                stims.append(Gaussian(amplitude=REFERENCE, sigma=1.0, center_x=float(cen[i, 0]),
                                      center_y=float(cen[i, 1]), t_pre=T_PRE, t_ramp=tr, t_plateau=hold))
                tags.append((pop, j, tr))
    sp = lab.run(stims, duration, keep=chosen)
    out: dict[str, Any] = {"speeds": REFERENCE / np.asarray(RAMP_TIMES)}
    for pop, idx in chosen.items():
        ramp, after, static = (np.zeros((len(idx), len(RAMP_TIMES))) for _ in range(3))
        for b, (p, j, tr) in enumerate(tags):
            if p != pop:
                continue
            m = RAMP_TIMES.index(tr)
            s = sp[pop][b : b + 1, :, j : j + 1]
            # response to the ramp: from its start to 20 ms after its end (latency)
            ramp[j, m] = count(s, T_PRE, T_PRE + tr + 20.0, lab.dt)[0, 0] / ((tr + 20.0) / 1000.0)
            after[j, m] = count(s, T_PRE, T_PRE + tr, lab.dt)[0, 0] / (tr / 1000.0)
            end = T_PRE + tr + hold
            static[j, m] = count(s, end - 300.0, end, lab.dt)[0, 0] / 0.3
        out[pop] = {"n": len(idx), "onset": ramp, "ramp": after, "hold": static}
    lab.cache["ramp_speed"] = out
    return out


def check_3(lab: Lab) -> Check:
    c = Check(3, "Ramps of different speed to the same pressure: RA grows with speed; SA ramp > hold",
              "Knibestol 1973, J Physiol 232:427; Knibestol 1975, J Physiol 245:63")
    e = exp_ramp_speed(lab)
    if e["ra"]["n"] == 0 or e["sa"]["n"] == 0:
        c.error = "no SA or RA afferents"
        return c
    ra = np.median(e["ra"]["onset"], 0)  # by speed, slowest first
    fast = np.asarray(RAMP_TIMES) <= 50
    ramp, hold = e["sa"]["onset"][:, fast], e["sa"]["hold"][:, fast]
    sa_ratio = np.where(hold > 0, ramp / np.maximum(hold, 1e-9), np.where(ramp > 0, 10.0, NAN))
    c.criteria = [
        Criterion("RA onset rate rises with ramp speed (median curve: steps not rising)",
                  float(steps_down(ra)), lo=0, hi=0, scale=1.0),
        Criterion("RA onset rate, fastest / slowest ramp", float(ra[-1] / ra[0]) if ra[0] > 0 else (math.inf if ra[-1] > 0 else NAN),
                  lo=2.0, scale=0.3, log=True),
        Criterion("SA rate in the ramp (+20 ms) / hold rate (median, ramps <= 50 ms)", median(sa_ratio),
                  lo=1.2, scale=0.1, log=True),
    ]
    c.data = {"speeds": e["speeds"], "ra": e["ra"]["onset"], "sa_ramp": e["sa"]["onset"], "sa_hold": e["sa"]["hold"]}
    return c


def exp_tuning(lab: Lab) -> dict:
    """Threshold (kPa) vs vibration frequency for central SA and RA afferents: the smallest
    amplitude evoking at least 0.5 spikes per cycle (offset = amplitude, so the trough touches 0)."""
    if "tuning" in lab.cache:
        return lab.cache["tuning"]
    k = lab.opt.k_tuning
    chosen = {"sa": lab.central("sa", k), "ra": lab.central("ra", k)}
    nyq = 1000.0 / (2 * lab.dt)
    freqs = [f for f in FREQUENCIES if f <= nyq / 2]  # at least 4 samples per cycle
    pairs = [(pop, j, f) for pop, idx in chosen.items() for j in range(len(idx)) for f in freqs]
    thr = {}
    for group in ([p for p in pairs if p[2] < 8], [p for p in pairs if p[2] >= 8]):
        if not group:
            continue
        t_pre, t_ramp = 20.0, (100.0 if group[0][2] < 8 else 20.0)
        settle = 30.0
        window = 1000.0 if group[0][2] < 8 else 250.0
        w0 = t_pre + t_ramp + settle
        duration = w0 + window

        def make(i, a, group=group, t_pre=t_pre, t_ramp=t_ramp, duration=duration):
            pop, j, f = group[i]
            cx, cy = (float(v) for v in lab.centroids(pop)[chosen[pop][j]])
            return Vibration(amplitude=a, frequency=f, center_x=cx, center_y=cy, t_pre=t_pre, t_ramp=t_ramp,
                             t_plateau=duration)

        def respond(sp, group=group, w0=w0, window=window):
            out = np.zeros(len(group), bool)
            for i, (pop, j, f) in enumerate(group):
                n = count(sp[pop][i : i + 1, :, j : j + 1], w0, w0 + window, lab.dt)[0, 0]
                out[i] = n / (f * window / 1000.0) >= 0.5
            return out

        res = bisect_threshold(lab, make, len(group), duration, respond, keep=chosen)
        for (pop, j, f), v in zip(group, res):
            thr[(pop, j, f)] = v
    out = {"freqs": np.asarray(freqs)}
    for pop, idx in chosen.items():
        out[pop] = np.array([[thr[(pop, j, f)] for f in freqs] for j in range(len(idx))]).reshape(len(idx), len(freqs))
    lab.cache["tuning"] = out
    return out


def check_4(lab: Lab) -> Check:
    c = Check(4, "Vibrotactile tuning 1-400 Hz: lowest thresholds SA at low, RA at 8-64 Hz",
              "Johansson, Landstrom & Lundstrom 1982, Brain Res 244:17")
    e = exp_tuning(lab)
    if not len(e["sa"]) or not len(e["ra"]):
        c.error = "no SA or RA afferents"
        return c
    f = e["freqs"]
    sa, ra = np.median(e["sa"], 0), np.median(e["ra"], 0)

    def best(t):
        if not np.isfinite(t).any():
            return NAN
        m = np.isclose(t, t.min(), rtol=0.02)
        return float(np.exp(np.log(f[m]).mean()))

    low = f <= 2
    ra_best = best(ra)
    i_best = int(np.argmin(np.where(np.isfinite(ra), ra, np.inf)))
    with np.errstate(divide="ignore", invalid="ignore"):
        low_ratio = float(np.max(sa[low] / ra[low])) if low.any() else NAN
        best_ratio = float(ra[i_best] / sa[i_best])
    lo_f, hi_f = sa[f <= 8], sa[f >= 32]
    sa_low_high = float(lo_f.min() / hi_f.min()) if lo_f.size and hi_f.size and np.isfinite(lo_f.min()) else NAN
    low_ratio = 0.0 if not np.isfinite(low_ratio) and np.isfinite(sa[low]).all() else low_ratio
    best_ratio = 0.0 if np.isinf(sa[i_best]) and np.isfinite(ra[i_best]) else best_ratio
    c.criteria = [
        Criterion("RA best frequency (lowest median threshold)", ra_best, lo=8.0, hi=64.0, unit="Hz",
                  scale=0.3, log=True),
        Criterion("SA lowest threshold at <= 8 Hz / at >= 32 Hz", sa_low_high, hi=0.5, scale=0.2, log=True),
        Criterion("SA / RA threshold at 1-2 Hz (worst)", low_ratio, hi=1.0, scale=0.2, log=True),
        Criterion("RA / SA threshold at the RA best frequency", best_ratio, hi=0.5, scale=0.2, log=True),
    ]
    c.data = {"freqs": f, "sa": e["sa"], "ra": e["ra"]}
    return c


def check_5(lab: Lab) -> Check:
    c = Check(5, f"RA phase locking to {PHASE_LOCK_HZ:g} Hz: vector strength, 1 spike/cycle plateau",
              "Talbot, Darian-Smith, Kornhuber & Mountcastle 1968, J Neurophysiol 31:301")
    idx = lab.central("ra", lab.opt.k_ra)
    if len(idx) == 0:
        c.error = "no RA afferents"
        return c
    cen = lab.centroids("ra")
    t_pre, t_ramp, window = 20.0, 20.0, 500.0
    w0 = t_pre + t_ramp + 25.0  # whole cycles from 65 ms
    duration = w0 + window
    amps = np.asarray(PHASE_LOCK_AMPS)
    stims = [Vibration(amplitude=float(a), frequency=PHASE_LOCK_HZ, center_x=float(cen[i, 0]),
                       center_y=float(cen[i, 1]), t_pre=t_pre, t_ramp=t_ramp, t_plateau=duration)
             for i in idx for a in amps]
    sp = lab.run(stims, duration, keep={"ra": idx})["ra"]
    cycles = PHASE_LOCK_HZ * window / 1000.0
    a0, a1 = int(round(w0 / lab.dt)), int(round((w0 + window) / lab.dt))
    per_cycle = np.zeros((len(idx), len(amps)))
    vs = np.full((len(idx), len(amps)), NAN)
    for j in range(len(idx)):
        for m in range(len(amps)):
            t = np.nonzero(sp[j * len(amps) + m, a0:a1, j])[0] * lab.dt + w0
            per_cycle[j, m] = t.size / cycles
            if t.size >= 3:
                ph = 2 * math.pi * PHASE_LOCK_HZ * (t - t_pre) / 1000.0
                vs[j, m] = float(np.hypot(np.cos(ph).sum(), np.sin(ph).sum()) / t.size)
    width, vs_plateau = np.zeros(len(idx)), np.full(len(idx), NAN)
    la = np.log(amps)
    for j in range(len(idx)):
        y = per_cycle[j]
        up = np.nonzero(y >= 0.9)[0]
        if up.size == 0:
            continue
        i0 = up[0]
        above = np.nonzero(y[i0:] > 1.1)[0]
        i1 = i0 + above[0] if above.size else len(amps)
        # interpolate the crossings in log amplitude
        start = la[i0] if i0 == 0 else np.interp(0.9, [y[i0 - 1], y[i0]], [la[i0 - 1], la[i0]])
        end = la[-1] if i1 == len(amps) else np.interp(1.1, [y[i1 - 1], y[i1]], [la[i1 - 1], la[i1]])
        width[j] = math.exp(end - start) if end > start else 1.0
        plateau = np.arange(i0, i1)
        if plateau.size:
            vs_plateau[j] = float(np.nanmedian(vs[j, plateau]))
    c.criteria = [
        Criterion("width of the 1 spike/cycle plateau (median, max/min amplitude)", median(width), lo=2.0,
                  scale=0.3, log=True),
        Criterion("vector strength on the plateau (median)", median(vs_plateau), lo=0.8, scale=0.1),
    ]
    c.data = {"amplitudes": amps, "per_cycle": per_cycle, "vs": vs}
    return c


def check_6(lab: Lab) -> Check:
    c = Check(6, "Repeated identical trials with noise: spike-count SD < 1, jitter <= 1 ms, reproducible",
              "Vega-Bermudez & Johnson 1999, J Neurophysiol 81:2701")
    chosen = {"sa": lab.central("sa", lab.opt.k_sa), "ra": lab.central("ra", lab.opt.k_ra)}
    reps = lab.opt.repetitions
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            stims.append(Gaussian(amplitude=REFERENCE, sigma=1.0, center_x=float(cen[i, 0]), center_y=float(cen[i, 1])))
            tags.append((pop, j))
    if not stims:
        c.error = "no SA or RA afferents"
        return c
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    seeds = [noise_seed(int(lab.cfg.seed), r) for r in range(reps)]
    all_stims = [s for s in stims for _ in range(reps)]
    all_seeds = [sd for _ in stims for sd in seeds]
    sp = lab.run(all_stims, duration, seeds=all_seeds, keep=chosen)
    # the first trial of each again, in a batch of a different size: must be bit-identical
    again = lab.run(stims, duration, seeds=[seeds[0]] * len(stims), keep=chosen)
    sds, jit, varies, same = [], [], [], []
    for b, (pop, j) in enumerate(tags):
        trials = sp[pop][b * reps : (b + 1) * reps, :, j]  # [reps, T]
        n = trials.sum(1)
        if n.max() == 0:
            continue
        sds.append(float(n.std(ddof=1)) if reps > 1 else 0.0)
        first = [np.nonzero(tr)[0][0] * lab.dt for tr in trials if tr.any()]
        if len(first) >= 2:
            jit.append(float(np.std(first, ddof=1)))
        varies.append(bool((trials != trials[0]).any()))
        same.append(bool((again[pop][b, :, j] == trials[0]).all()))
    c.criteria = [
        Criterion("spike-count SD across trials (median)", median(sds), hi=1.0, unit="spikes", scale=0.5),
        Criterion("first-spike jitter, SD across trials (median)", median(jit), hi=1.0, unit="ms", scale=0.5),
        Criterion("afferents whose trials differ (noise on)", float(np.mean(varies)) if varies else NAN, lo=0.5,
                  scale=0.25),
        Criterion("trials reproduced bit-identically from their seed", float(np.mean(same)) if same else NAN,
                  lo=1.0, hi=1.0, scale=0.25),
    ]
    c.data = {"raster": {pop: sp[pop][: reps, :, 0] for pop in chosen if len(chosen[pop])}, "dt": lab.dt}
    return c


def check_7(lab: Lab) -> Check:
    c = Check(7, f"Receptive fields mapped with a point probe at {MAP_FACTOR:g}x threshold",
              "Johansson & Vallbo 1980, Brain Res 184:353")
    e = exp_fields(lab)
    areas = {p: e[p] for p in POPULATIONS}
    if any(len(v) == 0 for v in areas.values()):
        c.error = "a population has no afferent"
        c.data = e
        return c
    sa, ra, sa2 = (median(areas[p]) for p in POPULATIONS)
    c.criteria = [
        Criterion("SA median field area", sa, lo=9.0, hi=15.0, unit="mm^2", scale=0.1, log=True),
        Criterion("RA median field area", ra, lo=9.0, hi=15.0, unit="mm^2", scale=0.1, log=True),
        Criterion("SA2 / SA-and-RA median field area", sa2 / ((sa + ra) / 2) if sa + ra > 0 else NAN,
                  lo=3.0, hi=12.0, scale=0.1, log=True),
    ]
    c.data = e
    return c


def exp_fields(lab: Lab) -> dict:
    """Point-probe mapping: for central afferents, the threshold (probe amplitude evoking one
    spike) at the most sensitive spot, then the area of probe positions that evoke a spike at
    MAP_FACTOR times that threshold, on a grid (map_step mm; twice that for SA2).

    Probe positions whose pooled pressure on the afferent is under 1/(MAP_FACTOR^2) of the hot
    spot's are not simulated: the model pools pressure linearly, so they cannot reach threshold at
    MAP_FACTOR x threshold; they count as outside."""
    if "fields" in lab.cache:
        return lab.cache["fields"]
    sigma, t_pre, t_ramp, t_hold = 0.2, 5.0, 20.0, 35.0
    duration = t_pre + t_ramp + t_hold

    def probe(x, y, a):
        return Probe(amplitude=a, sigma=sigma, center_x=float(x), center_y=float(y), t_pre=t_pre, t_ramp=t_ramp,
                     t_plateau=t_hold)

    chosen = {"sa": lab.central("sa", lab.opt.k_map), "ra": lab.central("ra", lab.opt.k_map),
              "sa2": lab.central("sa2", lab.opt.k_sa2)}
    half = lab.extent / 2
    items = []  # (pop, j, hot spot, candidate positions [P, 2], step)
    for pop, idx in chosen.items():
        if len(idx) == 0:
            continue
        w = lab.weights(pop)[torch.from_numpy(idx)]  # [k, HW]
        step = lab.opt.map_step * (2 if pop == "sa2" else 1)
        reach = 3.5 * float(lab.pops[pop].cfg.rf_sigma) + 1.0
        for j in range(len(idx)):
            cen = (w[j] @ lab.receptors).numpy()
            g = np.arange(-reach, reach + 1e-9, step)
            gx, gy = np.meshgrid(cen[0] + g, cen[1] + g)
            pos = np.stack([gx.ravel(), gy.ravel()], 1)
            pos = pos[(np.abs(pos) <= half).all(1)]
            fine = lab.receptors.numpy()
            fine = fine[np.hypot(fine[:, 0] - cen[0], fine[:, 1] - cen[1]) <= reach]
            s_fine = sensitivity(lab, w[j], fine, sigma)
            hot = fine[int(np.argmax(s_fine))]
            s = sensitivity(lab, w[j], pos, sigma)
            keep = s >= s_fine.max() / MAP_FACTOR**2
            items.append((pop, j, hot, pos[keep], step))
    if not items:
        out = {p: np.zeros(0) for p in chosen}
        lab.cache["fields"] = out
        return out

    def responds(sp, tags):
        blank = lab.run([probe(0, 0, 0.0)], duration, keep=chosen)
        r = np.zeros(len(tags), bool)
        for i, (pop, j) in enumerate(tags):
            r[i] = sp[pop][i, :, j].sum() > blank[pop][0, :, j].sum()
        return r

    tags = [(pop, j) for pop, j, *_ in items]
    thr = bisect_threshold(lab, lambda i, a: probe(items[i][2][0], items[i][2][1], a), len(items), duration,
                           lambda sp: responds(sp, tags), keep=chosen, lo=0.01, hi=1e4)
    stims, owner = [], []
    for i, item in enumerate(items):
        if not np.isfinite(thr[i]):
            continue
        for x, y in item[3]:
            stims.append(probe(x, y, MAP_FACTOR * thr[i]))
            owner.append(i)
    hit = np.zeros(len(stims), bool)
    if stims:
        sp = lab.run(stims, duration, keep=chosen)
        hit = responds(sp, [tags[i] for i in owner])
    out: dict[str, Any] = {p: [] for p in chosen}
    maps = {}
    owner = np.asarray(owner, dtype=np.int64)
    for i, (pop, j, hot, pos, step) in enumerate(items):
        if not np.isfinite(thr[i]):
            out[pop].append(0.0)
            continue
        h = hit[owner == i]
        out[pop].append(float(h.sum()) * step**2)
        if j == 0:
            maps[pop] = (pos, h, hot)
    out = {p: np.asarray(v) for p, v in out.items()}
    out["thresholds"] = {p: thr[[k for k, t in enumerate(tags) if t[0] == p]] for p in chosen}
    out["maps"] = maps
    lab.cache["fields"] = out
    return out


def sensitivity(lab: Lab, w: torch.Tensor, pos: np.ndarray, sigma: float) -> np.ndarray:
    """Pooled pressure on one afferent (weights w [HW]) per kPa of a probe at each position."""
    r = lab.receptors
    nz = torch.nonzero(w).reshape(-1)
    rr, ww = r[nz], w[nz]  # the afferent's receptors
    p = torch.from_numpy(np.asarray(pos, dtype=np.float64))
    d2 = ((p[:, None, :] - rr[None, :, :]) ** 2).sum(-1)
    return (torch.exp(-d2 / (2 * sigma**2)) @ ww).numpy()


def exp_population(lab: Lab) -> dict:
    if "population" in lab.cache:
        return lab.cache["population"]
    stims = [Gaussian(amplitude=a, sigma=1.0) for a in AMPLITUDES]
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    sp = lab.run(stims, duration)
    out = {"amplitudes": np.asarray(AMPLITUDES)}
    for pop in POPULATIONS:
        out[pop] = sp[pop].sum((1, 2)).astype(float)
        out[f"{pop}_rate"] = sp[pop].mean((1, 2)) * 1000.0 / lab.dt if sp[pop].shape[2] else np.zeros(len(stims))
    lab.cache["population"] = out
    return out


def check_8(lab: Lab) -> Check:
    c = Check(8, "Population response to a pressure series: total spikes near-linear in pressure",
              "Vega-Bermudez & Johnson 1999, J Neurophysiol 81:2701")
    e = exp_population(lab)
    a = e["amplitudes"]
    c.criteria = []
    for pop in ("sa", "ra"):
        if lab.counts[pop] == 0:
            c.error = f"no {pop.upper()} afferents"
            return c
        c.criteria += [
            Criterion(f"{pop.upper()} total spikes vs pressure, linear fit R^2", r_squared(a, e[pop]), lo=0.9, scale=0.1),
            Criterion(f"{pop.upper()} total spikes rise strictly (steps not rising)", float(steps_down(e[pop])),
                      lo=0, hi=0, scale=1.0),
        ]
    c.data = e
    return c


def check_9(lab: Lab) -> Check:
    c = Check(9, "Refractoriness: no inter-spike interval under 1 ms, for any stimulus",
              "absolute refractory period of myelinated afferents (~1 ms)")
    # besides every train the battery simulated, instant steps of very high pressure
    duration = 300.0
    stims = [Gaussian(amplitude=a, sigma=s, t_pre=50.0, t_ramp=0.0, t_plateau=200.0)
             for a in STRONG for s in (0.5, 2.0)]
    stims += [Vibration(amplitude=STRONG[0] / 2, frequency=f, sigma=1.0, t_pre=20.0, t_ramp=0.0, t_plateau=280.0)
              for f in (40.0, 250.0)]
    lab.run(stims, duration)
    c.criteria = [Criterion(f"shortest inter-spike interval over {lab.trains} spike trains", lab.min_isi,
                            lo=1.0, unit="ms", scale=0.5)]
    return c


def check_10(lab: Lab) -> Check:
    c = Check(10, "Population layout: counts, densities and SA:RA ratio of a fingertip patch",
              "Johansson & Vallbo 1979, J Physiol 286:283")
    area_cm2 = (lab.extent / 10.0) ** 2
    dens = {p: lab.counts[p] / area_cm2 for p in POPULATIONS}
    configured = {p: int(getattr(lab.cfg.neurons, p).count) for p in POPULATIONS}
    ok = all(lab.counts[p] == configured[p] for p in POPULATIONS)
    # uniform cover: afferents per quadrant of the patch, worst relative deviation from the mean
    worst = 0.0
    for p in POPULATIONS:
        pos = lab.pops[p].positions.numpy()
        if len(pos) < 8:
            continue
        q = np.bincount((pos[:, 0] >= 0).astype(int) * 2 + (pos[:, 1] >= 0).astype(int), minlength=4)
        worst = max(worst, float(np.abs(q / q.mean() - 1).max()))
        inside = (np.abs(pos) <= lab.extent / 2 + 1e-9).all()
        ok = ok and bool(inside)
    c.criteria = [
        Criterion("afferents built = configured, all inside the patch", float(ok), lo=1.0, hi=1.0, scale=1.0),
        Criterion("SA density", dens["sa"], lo=50.0, hi=100.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("RA density", dens["ra"], lo=100.0, hi=200.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("SA2 density", dens["sa2"], lo=5.0, hi=30.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("SA:RA count ratio", lab.counts["sa"] / lab.counts["ra"] if lab.counts["ra"] else NAN,
                  lo=0.4, hi=0.65, scale=0.1, log=True),
        Criterion("uneven cover: worst quadrant vs mean count", worst, hi=0.35, scale=0.2),
    ]
    c.data = {"density": dens, "area_cm2": area_cm2}
    return c


CHECKS: dict[int, Callable[[Lab], Check]] = {
    1: check_1, 2: check_2, 3: check_3, 4: check_4, 5: check_5,
    6: check_6, 7: check_7, 8: check_8, 9: check_9, 10: check_10,
}
# the cheap subset used by calibration (experiment=calibrate): no tuning curves, no field maps
QUICK_CHECKS = (1, 2, 3, 8, 9, 10)


# -- running ------------------------------------------------------------------------------------
@dataclass
class Subject:
    """What the battery reads from a config: the population and the base seed of the noise."""

    pipeline: Any = None
    neurons: Any = None
    seed: int = 0


def as_config(cfg: DictConfig | dict) -> DictConfig:
    """The battery's config (pipeline, neurons, seed, typed and range-checked by the schema) from a
    composed DictConfig, or from a plain dict such as a dataset's stored config (missing keys take
    the schema's defaults; unknown keys are refused)."""
    from sensoryforge.config import NeuronsConfig, PipelineConfig
    from sensoryforge.params import check_fields

    d = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    try:
        out = OmegaConf.structured(Subject)
        out.pipeline = OmegaConf.merge(OmegaConf.structured(PipelineConfig), d.get("pipeline") or {})
        out.neurons = OmegaConf.merge(OmegaConf.structured(NeuronsConfig), d.get("neurons") or {})
        out.seed = int(d.get("seed", 0))
    except Exception as e:  # noqa: BLE001 - reported as one config line
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    check_fields(out.pipeline, "pipeline")
    check_fields(out.neurons, "neurons")
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def parse_checks(checks: Iterable[int] | str | None) -> list[int]:
    if checks is None or checks == "" or checks == []:
        return sorted(CHECKS)
    if isinstance(checks, str):
        checks = [int(x) for x in checks.replace(" ", "").split(",") if x]
    out = sorted({int(x) for x in checks})
    bad = [x for x in out if x not in CHECKS]
    if bad:
        raise ConfigError(f"checks={bad}: unknown check; allowed: 1..{max(CHECKS)}")
    return out


def battery(
    cfg: DictConfig | dict,
    checks: Iterable[int] | str | None = None,
    options: Options | None = None,
    progress: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run the chosen checks (default all) on a config; returns their results in order."""
    cfg = as_config(cfg)
    numbers = parse_checks(checks)
    # many small tensor operations: one thread is fastest (and much faster on a shared machine)
    with torch_threads(int(cfg.pipeline.threads) or 1), torch.no_grad():
        lab = Lab(cfg, options or Options())
        # check 9 reads every spike train simulated before it: it runs last
        order = [n for n in numbers if n != 9] + ([9] if 9 in numbers else [])
        results = {}
        for n in order:
            t0 = time.perf_counter()
            try:
                r = CHECKS[n](lab)
            except Exception as e:  # noqa: BLE001 - a crashing check is a failing check
                r = Check(n, SHORT.get(n, CHECKS[n].__name__), "", error=f"{type(e).__name__}: {e}")
            r.seconds = time.perf_counter() - t0
            results[n] = r
            if progress:
                progress(r)
    return [results[n] for n in numbers]


def validation_loss(cfg: DictConfig | dict, checks: Iterable[int] | str | None = None,
                    options: Options | None = None) -> float:
    """Sum over the criteria of the chosen checks of their distance to the expected range (each
    in its own scale); 0 when every criterion passes."""
    return float(sum(c.loss for c in battery(cfg, checks, options)))


def objective_results(cfg: DictConfig) -> list[Check]:
    """The checks a config's objective asks for: `validation_checks` (all when empty), with the
    QUICK sizes when objective=validation_quick."""
    quick = cfg.get("objective") == "validation_quick"
    return battery(cfg, list(cfg.get("validation_checks") or []) or None, QUICK if quick else None)


def objective(cfg: DictConfig, out_dir: str | Path) -> float:
    """The task's return value with `objective=validation` (or `validation_quick`: QUICK sizes),
    for calibration with Hydra's Optuna sweeper: the validation loss of `validation_checks` (all
    when empty) on the job's config. Writes validation.csv into the job's folder and prints one
    summary line."""
    results = objective_results(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(results, out / "validation.csv")
    loss = float(sum(c.loss for c in results))
    failed = [str(c.number) for c in results if not c.passed]
    print(f"validation loss {loss:.4f}: {len(results) - len(failed)}/{len(results)} checks passed"
          + (f" (failed: {', '.join(failed)})" if failed else "") + f" -> {out}", flush=True)
    return loss


def report_lines(c: Check) -> list[str]:
    head = f"[{'PASS' if c.passed else 'FAIL'}] {c.number:>2}. {c.title}  ({c.seconds:.1f} s)"
    lines = [head, f"        source: {c.source}"]
    if c.error:
        lines.append(f"        error: {c.error}")
    for k in c.criteria:
        mark = "ok " if k.passed else "BAD"
        u = f" {k.unit}" if k.unit else ""
        lines.append(f"     {mark} {k.label}: {fmt(k.value)}{u}   (expected {k.expected})")
    return lines


def write_csv(results: list[Check], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["check", "title", "criterion", "value", "lo", "hi", "unit", "passed", "loss", "check_passed",
                    "source", "seconds"])
        for c in results:
            rows = c.criteria or [Criterion(c.error or "not measured", NAN)]
            for k in rows:
                w.writerow([c.number, c.title, k.label, k.value, k.lo, k.hi, k.unit, k.passed, round(k.loss, 6),
                            c.passed, c.source, round(c.seconds, 3)])


def run_battery(cfg: DictConfig | dict, out_dir: str | Path, checks: Iterable[int] | str | None = None,
                options: Options | None = None, quiet: bool = False) -> bool:
    """Run the battery, print the report, write validation.csv and validation.png into out_dir.
    Returns True when every check passed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def show(c: Check) -> None:
        if not quiet:
            print("\n".join(report_lines(c)), flush=True)

    results = battery(cfg, checks, options, progress=show)
    results.sort(key=lambda c: c.number)
    write_csv(results, out / "validation.csv")
    plot_battery(results, out / "validation.png")
    ok = all(c.passed for c in results)
    if not quiet:
        passed = sum(c.passed for c in results)
        loss = sum(c.loss for c in results)
        print(f"{passed}/{len(results)} checks passed, validation loss {loss:.3f}, "
              f"{time.perf_counter() - t0:.1f} s -> {out}", flush=True)
    return ok


# -- the figure ---------------------------------------------------------------------------------
COLORS = {"sa": "tab:blue", "ra": "tab:red", "sa2": "tab:green"}
SHORT = {1: "SA sustained, linear in pressure", 2: "RA silent in hold, on/off bursts",
         3: "ramp speed: RA up, SA ramp > hold", 4: "vibrotactile tuning", 5: "RA phase locking, 40 Hz",
         6: "trial-to-trial variability", 7: "receptive-field areas", 8: "population response linear",
         9: "no ISI under 1 ms", 10: "population layout"}


def plot_battery(results: list[Check], path: Path) -> None:
    """validation.png: rate-intensity, adaptation, ramp speed, frequency tuning, phase locking,
    population response, field areas, repeated trials, and the PASS/FAIL summary."""
    import warnings

    with warnings.catch_warnings():  # all-NaN medians of a broken model are drawn as gaps
        warnings.simplefilter("ignore", RuntimeWarning)
        _plot_battery(results, path)


def _plot_battery(results: list[Check], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {c.number: c for c in results}
    fig, axes = plt.subplots(3, 3, figsize=(15, 12.5))
    ax = axes.ravel()
    for a in ax:
        a.set_visible(False)

    def panel(i, title):
        a = ax[i]
        a.set_visible(True)
        a.set_title(title, fontsize=10)
        return a

    rh = next((by[n].data["ramp_hold"] for n in (1, 2) if n in by and "ramp_hold" in by[n].data), None)
    if rh is not None:
        a = panel(0, "1-2. Rate-intensity at the field centre")
        amps = np.asarray(rh["amplitudes"])
        for pop, key, label in (("sa", "hold", "SA hold"), ("ra", "onset", "RA onset"), ("sa2", "hold", "SA2 hold")):
            if rh[pop]["n"]:
                y = rh[pop][key]
                a.plot(amps, y.T, color=COLORS[pop], alpha=0.25, lw=0.8)
                a.plot(amps, y.mean(0), color=COLORS[pop], lw=2, marker="o", label=label)
        a.set_xlabel("pressure (kPa)")
        a.set_ylabel("rate (Hz)")
        a.legend(fontsize=8)
        a = panel(1, f"Adaptation: ramp-and-hold {REFERENCE:g} kPa (mean PSTH)")
        m = list(AMPLITUDES).index(REFERENCE)
        for pop in POPULATIONS:
            if rh[pop]["n"]:
                y = rh[pop]["psth"][:, m].mean(0)
                t = (np.arange(y.size) + 0.5) * rh[pop]["psth_dt"]
                a.step(t, y, where="mid", color=COLORS[pop], label=pop.upper())
        env = Gaussian(t_pre=T_PRE, t_ramp=T_RAMP, t_plateau=T_HOLD)
        tt = torch.linspace(0, rh["duration"], 400, dtype=torch.float64)
        top = a.get_ylim()[1]
        a.fill_between(tt.numpy(), env.waveform(tt).numpy() * top * 0.15, color="0.85", zorder=0, label="pressure")
        a.set_xlabel("time (ms)")
        a.set_ylabel("rate (Hz)")
        a.legend(fontsize=8)
    if 3 in by and by[3].data:
        d = by[3].data
        a = panel(2, "3. Ramp speed (same pressure)")
        a.plot(d["speeds"], np.median(d["ra"], 0), "o-", color=COLORS["ra"], label="RA onset")
        a.plot(d["speeds"], np.median(d["sa_ramp"], 0), "o-", color=COLORS["sa"], label="SA ramp")
        a.plot(d["speeds"], np.median(d["sa_hold"], 0), "o--", color=COLORS["sa"], label="SA hold")
        a.set_xscale("log")
        a.set_xticks(d["speeds"], [f"{v:g}" for v in d["speeds"]])
        a.minorticks_off()
        a.set_xlabel("ramp speed (kPa/ms)")
        a.set_ylabel("rate (Hz)")
        a.legend(fontsize=8)
    if 4 in by and by[4].data:
        d = by[4].data
        a = panel(3, "4. Vibrotactile threshold (>= 0.5 spike/cycle)")
        a.axvspan(8, 64, color="tab:red", alpha=0.08)
        for pop in ("sa", "ra"):
            t = np.where(np.isfinite(d[pop]), d[pop], np.nan)
            a.plot(d["freqs"], t.T, color=COLORS[pop], alpha=0.3, lw=0.8)
            a.plot(d["freqs"], np.nanmedian(t, 0), "o-", color=COLORS[pop], lw=2, label=pop.upper())
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("frequency (Hz)")
        a.set_ylabel("threshold amplitude (kPa)")
        a.legend(fontsize=8)
    if 5 in by and by[5].data:
        d = by[5].data
        a = panel(4, f"5. RA phase locking, {PHASE_LOCK_HZ:g} Hz")
        a.plot(d["amplitudes"], d["per_cycle"].T, color=COLORS["ra"], alpha=0.3, lw=0.8)
        a.plot(d["amplitudes"], np.median(d["per_cycle"], 0), "o-", color=COLORS["ra"], lw=2, label="spikes/cycle")
        a.axhline(1, color="0.5", ls=":")
        a.set_xscale("log")
        a.set_xlabel("amplitude (kPa)")
        a.set_ylabel("spikes per cycle")
        b = a.twinx()
        b.plot(d["amplitudes"], np.nanmedian(np.where(np.isnan(d["vs"]), np.nan, d["vs"]), 0) if np.isfinite(d["vs"]).any()
               else d["amplitudes"] * np.nan, "s--", color="k", ms=3, label="vector strength")
        b.set_ylim(0, 1.05)
        b.set_ylabel("vector strength")
        a.legend(loc="upper left", fontsize=8)
        b.legend(loc="lower right", fontsize=8)
    if 8 in by and by[8].data:
        d = by[8].data
        a = panel(5, "8. Population: total spikes vs pressure")
        for pop in POPULATIONS:
            a.plot(d["amplitudes"], d[pop], "o-", color=COLORS[pop], label=pop.upper())
        a.set_xlabel("pressure (kPa), gaussian sigma 1 mm at the patch centre")
        a.set_ylabel("spikes (whole population, whole stimulus)")
        a.legend(fontsize=8)
    if 7 in by and by[7].data:
        d = by[7].data
        a = panel(6, f"7. Field areas at {MAP_FACTOR:g}x threshold")
        a.axhspan(9, 15, color="0.85", label="SA, RA expected")
        for k, pop in enumerate(POPULATIONS):
            v = np.asarray(d.get(pop, []))
            if v.size:
                a.scatter(np.full(v.size, k) + np.linspace(-0.15, 0.15, v.size), v, color=COLORS[pop], s=14)
                a.plot([k - 0.25, k + 0.25], [np.median(v)] * 2, color="k")
        a.set_xticks(range(3), ["SA", "RA", "SA2"])
        a.set_yscale("log")
        a.set_ylabel("field area (mm^2)")
        a.legend(fontsize=8)
    if 6 in by and by[6].data.get("raster"):
        d = by[6].data
        a = panel(7, "6. Repeated trials (one SA, one RA afferent)")
        row = 0
        for pop, r in d["raster"].items():
            for tr in r:
                t = np.nonzero(tr)[0] * d["dt"]
                a.vlines(t, row, row + 0.8, color=COLORS[pop], lw=0.8)
                row += 1
            row += 1
        a.set_xlabel("time (ms)")
        a.set_ylabel("trial")
    a = panel(8, "Summary")
    a.axis("off")
    lines = [f"{'PASS' if c.passed else 'FAIL'}  {c.number:>2}. {SHORT.get(c.number, c.title)}" for c in results]
    loss = sum(c.loss for c in results)
    lines += ["", f"{sum(c.passed for c in results)}/{len(results)} passed, validation loss {loss:.3f}"]
    a.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- calibration report -------------------------------------------------------------------------
def calibration_report(sweep_dir: str | Path, quiet: bool = False) -> dict:
    """Summarise an Optuna calibration sweep (experiment=calibrate): the loss of the mis-set start
    (recomputed from the sweep's config), every trial's parameters and loss, the best trial; writes
    calibration.png (loss per trial, parameters per trial, loss per check at start and best) and
    calibration.csv into the sweep folder."""
    from sensoryforge.config import load_config

    sweep = Path(sweep_dir)
    dirs = sorted((p for p in sweep.iterdir() if (p / ".hydra" / "hydra.yaml").exists() and p.name.isdigit()),
                  key=lambda p: int(p.name))
    if not dirs:
        raise ConfigError(f"{sweep}: no trial folders (<n>/.hydra/hydra.yaml) of a calibration sweep")
    hyd = OmegaConf.load(dirs[0] / ".hydra" / "hydra.yaml").hydra
    specs = dict(hyd.sweeper.get("params") or {})
    params, logs = list(specs), {n: "log" in str(v) for n, v in specs.items()}
    # the start: the sweep's command line without the searched parameters
    base = load_config([o for o in hyd.overrides.task if o.split("=", 1)[0] not in specs])
    start_results = objective_results(base)
    start = {n: OmegaConf.select(base, n) for n in params}
    trials = []
    for d in dirs:
        f = d / "validation.csv"
        if not f.exists():
            continue
        rows = list(csv.DictReader(open(f)))
        over = OmegaConf.load(d / ".hydra" / "overrides.yaml")
        values = dict(str(o).split("=", 1) for o in over)
        per_check: dict[int, float] = {}
        for r in rows:
            per_check[int(r["check"])] = per_check.get(int(r["check"]), 0.0) + float(r["loss"])
        trials.append({"trial": int(d.name), "loss": sum(per_check.values()), "per_check": per_check,
                       **{n: float(values[n]) for n in params if n in values}})
    start_loss = float(sum(c.loss for c in start_results))
    best = min(trials, key=lambda t: t["loss"]) if trials else None
    with open(sweep / "calibration.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", *params, "loss"])
        w.writerow(["start", *[start[n] for n in params], start_loss])
        for t in trials:
            w.writerow([t["trial"], *[t.get(n) for n in params], t["loss"]])
    _plot_calibration(sweep / "calibration.png", params, logs, start, start_loss,
                      {c.number: c.loss for c in start_results}, trials, best)
    if not quiet:
        print(f"start (mis-set): loss {start_loss:.3f}  " + "  ".join(f"{n}={fmt(start[n])}" for n in params))
        for t in trials:
            mark = "  <- best" if t is best else ""
            print(f"trial {t['trial']:>3}: loss {t['loss']:8.3f}  "
                  + "  ".join(f"{n}={fmt(t[n])}" for n in params if n in t) + mark)
        if best is not None:
            print(f"best trial {best['trial']}: loss {best['loss']:.3f} (start {start_loss:.3f}) -> "
                  f"{sweep / 'calibration.png'}")
    return {"start_loss": start_loss, "start": start, "trials": trials, "best": best}


def _plot_calibration(path, params, logs, start, start_loss, start_checks, trials, best) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(len(params), 2)
    fig = plt.figure(figsize=(4 * k, 8))
    grid = fig.add_gridspec(2, k)
    a0 = fig.add_subplot(grid[0, : k // 2 + k % 2])
    a1 = fig.add_subplot(grid[0, k // 2 + k % 2 :])
    n = [t["trial"] for t in trials]
    loss = [t["loss"] for t in trials]
    a0.axhline(start_loss, color="tab:red", ls="--", label=f"mis-set start ({start_loss:.2f})")
    a0.plot(n, loss, "o", color="0.4", label="trial")
    if loss:
        a0.plot(n, np.minimum.accumulate(loss), "-", color="k", label=f"best so far ({min(loss):.2f})")
    a0.set_yscale("symlog", linthresh=1.0)
    a0.set_xlabel("trial")
    a0.set_ylabel("validation loss")
    a0.set_title("Optuna calibration: validation loss per trial")
    a0.legend(fontsize=8)
    numbers = sorted(start_checks)
    x = np.arange(len(numbers))
    a1.bar(x - 0.2, [start_checks[c] for c in numbers], 0.4, color="tab:red", label="mis-set start")
    if best is not None:
        a1.bar(x + 0.2, [best["per_check"].get(c, 0.0) for c in numbers], 0.4, color="k",
               label=f"best (trial {best['trial']})")
    for c in a1.containers:
        a1.bar_label(c, fmt="%.2f", fontsize=7)
    a1.set_xticks(x, [f"check {c}" for c in numbers])
    a1.set_ylabel("loss")
    a1.set_title("loss per check")
    a1.legend(fontsize=8)
    for i, name in enumerate(params):
        a = fig.add_subplot(grid[1, i])
        a.plot(n, [t.get(name, np.nan) for t in trials], "o-", ms=3, lw=0.8, color="0.3")
        a.axhline(float(start[name]), color="tab:red", ls="--", label="mis-set start")
        if best is not None:
            a.plot([best["trial"]], [best[name]], "*", ms=14, color="k", label="best")
        if logs.get(name):
            a.set_yscale("log")
        a.set_title(name, fontsize=9)
        a.set_xlabel("trial")
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="sensoryforge-validate",
        description="Run the physiology battery on a config (Hydra overrides, as for `sensoryforge`).",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. neurons.sa.gain=0.3 pipeline=fast")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: validation/<timestamp>)")
    p.add_argument("--checks", default=None, help="comma-separated check numbers (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer afferents and trials per experiment")
    p.add_argument("--calibration", type=Path, metavar="SWEEP_DIR",
                   help="instead: summarise an experiment=calibrate sweep (start vs trials, calibration.png)")
    args = p.parse_args(argv)
    if args.calibration is not None:
        try:
            calibration_report(args.calibration)
        except (ConfigError, OSError) as e:
            print(f"sensoryforge-validate: error: {e}", file=sys.stderr)
            sys.exit(2)
        return
    from sensoryforge.config import load_config
    from sensoryforge.preflight import compose_error

    try:
        numbers = parse_checks(args.checks)
        try:
            cfg = load_config(args.overrides)
        except Exception as e:  # noqa: BLE001 - Hydra's composition errors become one line
            raise compose_error(e) from None
        cfg = as_config(cfg)
    except ConfigError as e:
        print(f"sensoryforge-validate: error: {e}", file=sys.stderr)
        sys.exit(2)
    out = args.out or Path("validation") / time.strftime("%Y%m%d-%H%M%S")
    ok = run_battery(cfg, out, numbers, QUICK if args.quick else None)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
