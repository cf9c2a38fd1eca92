"""Spikes of one stimulus (`Response`), the one spike codec, and the counting that rates rest on.

The codec: a population's [T, N] spike raster is stored as the sorted flat indices t * N + n of
its spikes (int32 while T * N < 2^31). `encode` makes them (`encode_batch` for a [B, T, N] batch
in one pass), `decode` makes the raster again and `split` gives (time step, afferent) pairs without
a raster. Job folders, datasets, plots and
summaries all go through these three.

Rates: spikes per afferent per second over a window (`rate`), or in bins (`psth`); bins of k steps
start at step 0 and the last bin takes what is left (`bin_widths`), as the outcome series do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# -- the codec ----------------------------------------------------------------------------------


def _flat_nonzero(x: Any) -> np.ndarray:
    """Flat indices of the nonzero elements of an array or tensor (int64 numpy)."""
    if hasattr(x, "detach"):  # a torch tensor
        if x.device.type != "cpu":  # on a GPU, find them there and copy only the indices
            import torch

            return torch.nonzero(x.reshape(-1)).reshape(-1).cpu().numpy()
        x = x.detach().numpy()  # a view; numpy's nonzero is ~15x faster than torch's on CPU
    return np.flatnonzero(x)


def index_dtype(size: int) -> type:
    return np.int32 if size < 2**31 else np.int64


def encode(raster: Any) -> np.ndarray:
    """Sorted flat indices t * N + n of the spikes of a [T, N] bool raster (numpy or torch)."""
    return _flat_nonzero(raster).astype(index_dtype(math.prod(raster.shape)))


def encode_batch(rasters: Any) -> list[np.ndarray]:
    """`encode` of each [T, N] raster of a [B, T, N] batch, in one pass over the batch."""
    b, per = rasters.shape[0], math.prod(rasters.shape[1:])
    if b == 0:
        return []
    flat = _flat_nonzero(rasters)
    cuts = np.searchsorted(flat, np.arange(1, b) * per)
    flat = flat - np.repeat(np.arange(b, dtype=np.int64) * per, np.diff(cuts, prepend=0, append=flat.size))
    return np.split(flat.astype(index_dtype(per)), cuts)


def decode(flat: np.ndarray, steps: int, n: int) -> np.ndarray:
    """The [T, N] bool raster of flat spike indices."""
    out = np.zeros(steps * n, dtype=bool)
    out[flat] = True
    return out.reshape(steps, n)


def split(flat: np.ndarray, n: int, out: np.ndarray | None = None) -> np.ndarray:
    """[2, k] int64 (time step, afferent) of k flat spike indices; written into `out` when given,
    so no temporary copies are made."""
    out = np.empty((2, flat.size), dtype=np.int64) if out is None else out
    np.floor_divide(flat, max(n, 1), out=out[0])
    np.remainder(flat, max(n, 1), out=out[1])
    return out


# -- counting -----------------------------------------------------------------------------------


def window(t0: float, t1: float | None, dt: float, steps: int) -> tuple[int, int]:
    """Steps [a, b) of the window [t0, t1) ms (t1 None: to the end)."""
    a = int(round(t0 / dt))
    b = steps if t1 is None else int(round(t1 / dt))
    return max(a, 0), min(max(b, a), steps)


def window_counts(spikes: np.ndarray, t0: float, t1: float | None, dt: float, axis: int = -2) -> np.ndarray:
    """Spikes per train in [t0, t1) ms; time is `axis` (default: [..., T, N] -> [..., N])."""
    a, b = window(t0, t1, dt, spikes.shape[axis])
    index = [slice(None)] * spikes.ndim
    index[axis] = slice(a, b)
    return spikes[tuple(index)].sum(axis)


def window_rate(spikes: np.ndarray, t0: float, t1: float | None, dt: float, axis: int = -2) -> np.ndarray:
    """Spikes per train per second in [t0, t1) ms (the window rounded to whole steps)."""
    a, b = window(t0, t1, dt, spikes.shape[axis])
    return window_counts(spikes, t0, t1, dt, axis) / max((b - a) * dt / 1000.0, 1e-300)


def bin_steps(bin_ms: float, dt: float) -> int:
    """Whole steps in a bin of bin_ms (at least one)."""
    return max(1, round(bin_ms / dt))


def bin_widths(steps: int, k: int) -> np.ndarray:
    """Steps in each bin of k steps; the last bin takes what is left."""
    n_bins = math.ceil(steps / k)
    widths = np.full(n_bins, k, dtype=np.int64)
    widths[-1] = steps - k * (n_bins - 1)
    return widths


def bin_sum(x: Any, k: int) -> Any:
    """x [..., T] (numpy or torch) summed in bins of k steps along the last axis -> [..., bins]."""
    steps = x.shape[-1]
    n_bins = math.ceil(steps / k)
    pad = n_bins * k - steps
    if hasattr(x, "detach"):
        import torch

        padded = torch.nn.functional.pad(x, (0, pad))
    else:
        padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])
    return padded.reshape(*x.shape[:-1], n_bins, k).sum(-1)


# -- one stimulus' spikes -----------------------------------------------------------------------


@dataclass
class Response:
    """The spikes of one stimulus: population -> [T, N] bool raster (numpy), time step dt (ms).

    `stimulus` and `seed` say what made it (when known). Times are in ms, rates in Hz."""

    spikes: dict[str, np.ndarray]
    dt: float
    stimulus: Any = None
    seed: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_flat(cls, flat: Mapping[str, np.ndarray], counts: Mapping[str, int], steps: int, dt: float,
                  **kwargs) -> Response:
        """From flat spike indices per population (as job folders store them)."""
        return cls({p: decode(flat[p], steps, int(counts[p])) for p in counts}, float(dt), **kwargs)

    @property
    def populations(self) -> list[str]:
        return list(self.spikes)

    @property
    def steps(self) -> int:
        return next(iter(self.spikes.values())).shape[0] if self.spikes else 0

    @property
    def duration(self) -> float:
        """ms"""
        return self.steps * self.dt

    def flat(self, pop: str) -> np.ndarray:
        return encode(self.spikes[pop])

    def counts(self, pop: str, t0: float = 0.0, t1: float | None = None) -> np.ndarray:
        """Spikes per afferent [N] in [t0, t1) ms (default: the whole response)."""
        return window_counts(self.spikes[pop], t0, t1, self.dt)

    def rate(self, pop: str, t0: float = 0.0, t1: float | None = None) -> np.ndarray:
        """Rate per afferent [N] (Hz) in [t0, t1) ms (default: the whole response)."""
        return window_rate(self.spikes[pop], t0, t1, self.dt)

    def psth(self, pop: str, bin_ms: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
        """(end of each bin, ms; population rate in each bin, Hz per afferent): the outcome
        series `<pop>_rate` of this stimulus."""
        x = self.spikes[pop]
        k = bin_steps(bin_ms, self.dt)
        widths = bin_widths(x.shape[0], k)
        per_step = x.sum(1, dtype=np.int64)
        rate = bin_sum(per_step, k) / (max(x.shape[1], 1) * widths * self.dt / 1000.0)
        return np.cumsum(widths) * self.dt, rate

    def isi(self, pop: str) -> list[np.ndarray]:
        """Inter-spike intervals (ms) of each afferent."""
        t, n = split(self.flat(pop), self.spikes[pop].shape[1])
        return [np.diff(t[n == i]) * self.dt for i in range(self.spikes[pop].shape[1])]
