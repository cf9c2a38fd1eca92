"""How numbers and durations are written for people: one format for every report, table and plot."""

from __future__ import annotations

import math
import numbers
from typing import Any


def fmt(x: Any, spec: str | None = None) -> str:
    """'n/a' for None and NaN, 'inf' / '-inf', whole numbers without a point; otherwise `spec`
    (a format spec such as '.4g') when given, else about three significant digits."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return "n/a" if x is None else str(x)
    x = float(x) if not isinstance(x, int) else x
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if spec is not None:
        return format(x, spec)
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


def written(value: Any) -> str:
    """A typed override value as it is written on the command line (10, 0.5, true, null, [a,b])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(written(v) for v in value) + "]"
    return str(value)


def clock(seconds: float) -> str:
    """m:ss or h:mm:ss."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def compact_ids(ids: list[str]) -> str:
    """stim_0000..stim_0003, stim_0007 style listing: runs of consecutive numbers, at most six
    shown (the first three and the last two); an id that is not stim_<number> is listed as it is."""
    if not ids:
        return "none"
    numbered = [i for i in ids if i.startswith("stim_") and i[5:].isdigit()]
    other = sorted(set(ids) - set(numbered))
    runs = []
    if numbered:
        nums = sorted({int(i[5:]) for i in numbered})
        width = len(numbered[0]) - 5
        start = prev = nums[0]
        for n in nums[1:] + [None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            runs.append(f"stim_{start:0{width}d}" + (f"..stim_{prev:0{width}d}" if prev > start else ""))
            if n is not None:
                start = prev = n
    runs += other
    return ", ".join(runs if len(runs) <= 6 else runs[:3] + ["..."] + runs[-2:])


def closed_pipe_exit() -> None:
    """The reader of stdout went away (`| head`): stop quietly, as Unix tools do (exit 141 = SIGPIPE),
    without the traceback Python would print when it flushes stdout at exit."""
    import os
    import sys

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(141)
