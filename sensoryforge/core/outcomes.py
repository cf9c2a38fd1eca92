"""Outcome time series and the measures computed over them.

Series are binned (`outcome.bin` ms, rounded to whole steps); sample k stands for the time at the
end of bin k:
  <pop>_rate   spikes in the bin per afferent per second (Hz)
  <pop>_count  cumulative spikes of the whole population up to the end of the bin
Measures, named <series>_<measure>:
  mean, peak, final   time-weighted mean, maximum, last value
  auc                 trapezoidal integral over time, in the series' unit x s
  time_to_N           first time (ms) at which the series reaches N; NaN if it never does

A population's spikes come as a [B, T, N] bool raster (torch, any device, or numpy) or as the
codec's flat indices (`Flat`): then counting costs what the spikes cost, not the raster.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sensoryforge.core.outcome_names import KINDS, MEASURES, TIME_TO, parse_outcomes  # noqa: F401
from sensoryforge.core.response import bin_steps, bin_sum, bin_widths


@dataclass(frozen=True)
class Flat:
    """A population's spikes as `response.encode` stores them: per stimulus, the sorted flat
    indices t * n + i of its [steps, n] raster."""

    flats: Sequence[np.ndarray]
    n: int
    steps: int


def _steps(spikes) -> int:
    return spikes.steps if isinstance(spikes, Flat) else spikes.shape[1]


def _afferents(spikes) -> int:
    return spikes.n if isinstance(spikes, Flat) else spikes.shape[-1]


def binned_counts(spikes, k: int) -> np.ndarray:
    """Population spikes in bins of k steps, [B, n_bins] int64 (the last bin takes what is left)."""
    return _binned({"p": spikes}, k)["p"]


def _binned(spikes: dict, k: int) -> dict[str, np.ndarray]:
    """binned_counts of each population; CPU rasters that are column ranges of one raster (as
    the simulator's populations are) are read in one pass."""
    out, shared = {}, {}
    for pop, x in spikes.items():
        n_bins = -(-_steps(x) // k)
        if isinstance(x, np.ndarray) and x.dtype == np.bool_ and min(x.strides, default=0) >= 0:
            x = torch.from_numpy(x)  # a view: the same raster, read by the same loop
        if isinstance(x, Flat):
            per_bin = max(x.n, 1) * k  # flat index // (n k) = step // k
            rows = [np.bincount(f // per_bin, minlength=n_bins) for f in x.flats]
            out[pop] = np.array(rows, dtype=np.int64).reshape(len(rows), n_bins)
        elif isinstance(x, torch.Tensor) and x.device.type != "cpu":
            out[pop] = bin_sum(x.sum(-1, dtype=torch.int64), k).cpu().numpy()
        elif (not isinstance(x, torch.Tensor) or x.dtype != torch.bool or x.numel() == 0
              or x.stride(-1) != 1):
            x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            out[pop] = bin_sum(x.sum(-1, dtype=np.int64), k)
        else:
            key = (x.untyped_storage().data_ptr(), x.shape[:2], x.stride())
            shared.setdefault(key, []).append((pop, x))
    count = _bin_counter()
    for group in shared.values():
        pops, xs = [p for p, _ in group], [x for _, x in group]
        lo = min(x.storage_offset() for x in xs)
        width = max(x.storage_offset() + x.shape[-1] for x in xs) - lo
        if len(xs) > 1 and width > xs[0].stride(1):  # not columns of one raster: one at a time
            for p, x in group:
                out[p] = _binned({p: x.contiguous()}, k)[p]
            continue
        whole = torch.as_strided(xs[0], (*xs[0].shape[:2], width), xs[0].stride(), lo)
        starts = np.array([x.storage_offset() - lo for x in xs], np.int64)
        ends = starts + np.array([x.shape[-1] for x in xs], np.int64)
        n_bins = -(-whole.shape[1] // k)
        counts = count(whole.numpy().view(np.uint8), k, n_bins, starts, ends)
        out.update(zip(pops, counts))
    return out


def _bins(raster, k, n_bins, starts, ends):
    """Bins of the column ranges [starts[p], ends[p]) of a [B, T, W] 0/1 uint8 raster, [P, B,
    n_bins]: each column's spikes are added in uint8 lanes over at most 255 steps (no overflow;
    one byte add per column and step, which vectorises), then summed once per range."""
    B, T, W = raster.shape
    out = np.zeros((starts.shape[0], B, n_bins), np.int64)
    per_column = np.empty(W, np.uint8)
    for b in range(B):
        for j in range(n_bins):
            end = min(T, j * k + k)
            for start in range(j * k, end, 255):
                per_column[:] = 0
                for t in range(start, min(end, start + 255)):
                    row = raster[b, t]
                    for i in range(W):
                        per_column[i] += row[i]
                for p in range(starts.shape[0]):
                    for i in range(starts[p], ends[p]):
                        out[p, b, j] += per_column[i]
    return out


def _bins_numpy(raster, k, n_bins, starts, ends):
    return [bin_sum(raster[..., a:e].sum(-1, dtype=np.int64), k) for a, e in zip(starts, ends)]


@functools.cache
def _bin_counter():
    """_bins compiled (numba, imported on first use, as the spiking kernel is), else numpy."""
    try:
        import numba
    except ImportError:
        return _bins_numpy
    return numba.njit(_bins, cache=True, nogil=True)


def series(spikes: dict, names: list[str], dt: float, bin_ms: float):
    """spikes: population -> [B, T, N] bool, or `Flat`. Returns (times_ms [n_bins],
    {name: [B, n_bins] float64})."""
    times, stacked = _series(spikes, list(dict.fromkeys(names)), dt, bin_ms)
    return times, dict(zip(dict.fromkeys(names), stacked.unbind(0)))


def _series(spikes: dict, names: list[str], dt: float, bin_ms: float):
    """times and the series stacked [S, B, n_bins], made in numpy (elementwise, the same
    numbers as torch's) and handed to torch at once."""
    T = _steps(next(iter(spikes.values())))
    k = bin_steps(bin_ms, dt)
    widths = bin_widths(T, k).astype(np.float64)
    # population spikes per bin, shared by its rate and count
    pops = dict.fromkeys(name.rsplit("_", 1)[0] for name in names)
    binned = _binned({p: spikes[p] for p in pops}, k)
    out = None
    for i, name in enumerate(names):
        pop, kind = name.rsplit("_", 1)
        counts = binned[pop].astype(np.float64)
        if out is None:
            out = np.empty((len(names), *counts.shape))
        if kind == "rate":
            n = max(_afferents(spikes[pop]), 1)
            np.divide(counts, n * widths * dt / 1000.0, out=out[i])
        else:
            np.cumsum(counts, -1, out=out[i])
    if out is None:
        out = np.empty((0, 0, len(widths)))
    return torch.from_numpy(np.cumsum(widths) * dt), torch.from_numpy(out)


def measure(values: torch.Tensor, times: torch.Tensor, dt: float, name: str) -> torch.Tensor:
    """values [..., n_bins] on times [n_bins] (ms) -> [...]; every row on its own, so a stack of
    series gives each one's measure exactly as alone."""
    if name == "mean":
        widths = torch.diff(times, prepend=times.new_zeros(1))
        return (values * widths).sum(-1) / widths.sum()
    if name == "peak":
        return values.max(-1).values
    if name == "final":
        return values[..., -1]
    if name == "auc":
        return torch.trapezoid(values, times / 1000.0, dim=-1)
    level = float(TIME_TO.match(name).group(1))
    reached = values >= level
    first = reached.to(torch.int8).argmax(-1)
    return torch.where(reached.any(-1), times[first], torch.tensor(float("nan"), dtype=times.dtype))


def compute(spikes, outcome, dt: float):
    """All outcome series and measures for a batch. Returns (times, series dict, measures dict)."""
    pairs = parse_outcomes(outcome)  # never empty: the primary is one of them
    names = list(dict.fromkeys(s for s, _ in pairs))
    bin_ms = outcome.bin
    # torch's thread pool would only add synchronisation to these small operations (several
    # times their cost); each measure runs once, over all series stacked [S, B, n_bins]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times, stacked = _series(spikes, names, dt, bin_ms)
        kinds = dict.fromkeys(m for _, m in pairs)
        done = {m: measure(stacked, times, dt, m).unbind(0) for m in kinds}
    finally:
        torch.set_num_threads(threads)
    row = {s: i for i, s in enumerate(names)}
    measures = {f"{s}_{m}": done[m][row[s]] for s, m in pairs}
    return times, dict(zip(names, stacked.unbind(0))), measures
