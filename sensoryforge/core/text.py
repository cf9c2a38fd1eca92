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


def clock(seconds: float) -> str:
    """m:ss or h:mm:ss."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
