"""What the battery measures and judges: a `Criterion` is one figure and the published range it
must fall in; a `Check` is one experiment's criteria, with its source."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sensoryforge.core.text import fmt

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
