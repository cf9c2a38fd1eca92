"""Outcome time series and the measures computed over them.

Series are binned (`outcome.bin` ms, rounded to whole steps); sample k stands for the time at the
end of bin k:
  <pop>_rate   spikes in the bin per afferent per second (Hz)
  <pop>_count  cumulative spikes of the whole population up to the end of the bin
Measures, named <series>_<measure>:
  mean, peak, final   time-weighted mean, maximum, last value
  auc                 trapezoidal integral over time, in the series' unit x s
  time_to_N           first time (ms) at which the series reaches N; NaN if it never does
"""

from __future__ import annotations

import re

import torch

from sensoryforge.core.params import ConfigError
from sensoryforge.core.response import bin_steps, bin_sum, bin_widths
from sensoryforge.core.schema import POPULATIONS

KINDS = ("rate", "count")
MEASURES = ("mean", "peak", "final", "auc", "time_to_N")
_TIME_TO = re.compile(r"^time_to_(\d+(\.\d+)?)$")


def parse_outcomes(outcome) -> list[tuple[str, str]]:
    """Checks series, measures and primary; returns the (series, measure) pairs computed."""
    allowed_series = [f"{p}_{k}" for p in POPULATIONS for k in KINDS]
    for s in outcome.series:
        if s not in allowed_series:
            raise ConfigError(f"outcome.series: unknown series '{s}'; allowed: {', '.join(allowed_series)}")
    for m in outcome.measures:
        if m not in MEASURES[:-1] and not _TIME_TO.match(m):
            raise ConfigError(
                f"outcome.measures: unknown measure '{m}'; allowed: mean, peak, final, auc, time_to_N (e.g. time_to_10)"
            )
    pairs = [(s, m) for s in outcome.series for m in outcome.measures]
    names = [f"{s}_{m}" for s, m in pairs]
    if outcome.primary not in names:
        raise ConfigError(
            f"outcome.primary={outcome.primary}: must be one of the computed measures <series>_<measure>, "
            f"e.g. {', '.join(names[:4])}"
        )
    return pairs


def series(spikes: dict[str, torch.Tensor], names: list[str], dt: float, bin_ms: float):
    """spikes: population -> [B, T, N] bool. Returns (times_ms [n_bins], {name: [B, n_bins] float})."""
    T = next(iter(spikes.values())).shape[1]
    k = bin_steps(bin_ms, dt)
    widths = torch.from_numpy(bin_widths(T, k)).to(torch.float64)
    times = torch.cumsum(widths, 0) * dt
    out, binned = {}, {}
    for name in names:
        pop, kind = name.rsplit("_", 1)
        s = spikes[pop]
        if pop not in binned:  # population spikes per bin, shared by its rate and count
            per_step = s.sum(-1, dtype=torch.int64).cpu()  # [B, T]
            binned[pop] = bin_sum(per_step, k).to(torch.float64)
        counts = binned[pop]
        if kind == "rate":
            n = max(s.shape[-1], 1)
            out[name] = counts / (n * widths * dt / 1000.0)
        else:
            out[name] = counts.cumsum(-1)
    return times, out


def measure(values: torch.Tensor, times: torch.Tensor, dt: float, name: str) -> torch.Tensor:
    """values [B, n_bins] on times [n_bins] (ms) -> [B]."""
    if name == "mean":
        widths = torch.diff(times, prepend=times.new_zeros(1))
        return (values * widths).sum(-1) / widths.sum()
    if name == "peak":
        return values.max(-1).values
    if name == "final":
        return values[:, -1]
    if name == "auc":
        return torch.trapezoid(values, times / 1000.0, dim=-1)
    level = float(_TIME_TO.match(name).group(1))
    reached = values >= level
    first = reached.to(torch.int8).argmax(-1)
    return torch.where(reached.any(-1), times[first], torch.tensor(float("nan"), dtype=times.dtype))


def compute(spikes, outcome, dt: float):
    """All outcome series and measures for a batch. Returns (times, series dict, measures dict)."""
    pairs = parse_outcomes(outcome)
    times, ser = series(spikes, list(outcome.series), dt, outcome.bin)
    measures = {f"{s}_{m}": measure(ser[s], times, dt, m) for s, m in pairs}
    return times, ser, measures
