"""The laboratory: one config's population, simulators per duration, batches of stimuli run with
the battery's noise seed, and the small statistics the checks share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.simulator import Simulator, noise_seed


@dataclass
class Options:
    """Sizes of the experiments (afferents sampled per class, repetitions...)."""

    k_sa: int = 6  # afferents per class in the single-afferent experiments
    k_ra: int = 6
    k_sa2: int = 3  # SA2, and PC (the large fields)
    k_tuning: int = 3  # per class (SA, RA) in the frequency-tuning experiment
    k_map: int = 10  # SA and RA fields mapped (SA2: k_sa2)
    repetitions: int = 10  # check 6
    map_step: float = 0.5  # mm, probe grid of the SA / RA field maps (SA2: twice)
    bisection_steps: int = 8
    batch: int = 64


QUICK = Options(k_sa=3, k_ra=3, k_sa2=2, k_tuning=2, k_map=3, repetitions=6, map_step=0.5, bisection_steps=7)


class Lab:
    def __init__(self, cfg: DictConfig, options: Options):
        self.cfg, self.opt = cfg, options
        self.dt = float(cfg.pipeline.dt)
        self.seed = noise_seed(int(cfg.seed), 0)
        self._sims: dict[float, Simulator] = {}
        self._restricted: dict[tuple, Simulator] = {}
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

        With `keep`, only the afferents keep[pop] are simulated (a population not named: none), and
        population -> bool spikes [B, T, k] come back in that order; without, the whole patch.
        Every spike train simulated also updates the battery's shortest ISI.
        """
        sim = self.sim(duration)
        if keep is not None:
            keep = {p: tuple(int(i) for i in v) for p, v in keep.items()}
            key = (float(duration), tuple(sorted(keep.items())))
            if key not in self._restricted:
                self._restricted[key] = sim.restricted(keep)
            sim = self._restricted[key]
        seeds = list(seeds) if seeds is not None else [self.seed] * len(stimuli)
        out: dict[str, list[np.ndarray]] = {p: [] for p in POPULATIONS}
        for start in range(0, len(stimuli), self.opt.batch):
            res = sim.run(list(stimuli[start : start + self.opt.batch]), seeds[start : start + self.opt.batch])
            for pop in POPULATIONS:
                s = res.spikes[pop]
                self._track(s)
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
    return float(np.median(x)) if x.size else math.nan


def steps_down(y: Sequence[float]) -> int:
    """How many consecutive pairs fail to rise strictly."""
    y = np.asarray(y, float)
    return int((np.diff(y) <= 0).sum())


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


def ladder_threshold(
    lab: Lab,
    make: Callable[[int, float], Any],
    n: int,
    duration: float,
    respond: Callable[[dict[str, np.ndarray]], np.ndarray],
    keep: dict[str, Iterable[int]],
    lo: float = 0.05,
    hi: float = 2000.0,
) -> np.ndarray:
    """Like bisect_threshold, for responses that need not grow with amplitude (a second spike per
    cycle lowers phase locking): the lowest responding amplitude of a ladder of steps of 4x from
    lo to hi, refined by bisection (bisection_steps - 3 halvings) between it and the step below."""
    levels = lo * 4.0 ** np.arange(int(math.floor(math.log(hi / lo, 4))) + 1)
    hit = np.zeros((n, len(levels)), bool)
    for m, a in enumerate(levels):
        hit[:, m] = respond(lab.run([make(i, float(a)) for i in range(n)], duration, keep=keep))
    first = np.where(hit.any(1), hit.argmax(1), -1)
    hi_a = np.log(levels[np.maximum(first, 0)])
    lo_a = hi_a - math.log(4.0)
    todo = first > 0
    for _ in range(max(lab.opt.bisection_steps - 3, 0)):
        if not todo.any():
            break
        mid = (lo_a + hi_a) / 2
        r = respond(lab.run([make(i, math.exp(mid[i])) for i in range(n)], duration, keep=keep)) & todo
        hi_a = np.where(r, mid, hi_a)
        lo_a = np.where(r | ~todo, lo_a, mid)
    thr = np.exp(hi_a)
    return np.where(first < 0, math.inf, np.where(first == 0, lo, thr))

