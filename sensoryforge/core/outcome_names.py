"""The names of outcome series and measures, and their check, without torch: the config checks
(every command's start, dry runs) need them, the computation (core/outcomes.py) needs torch.

Series are <population>_rate or <population>_count; measures mean, peak, final, auc and
time_to_N; a computed measure is named <series>_<measure>.
"""

from __future__ import annotations

import functools
import re

from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import POPULATIONS

KINDS = ("rate", "count")
MEASURES = ("mean", "peak", "final", "auc", "time_to_N")
TIME_TO = re.compile(r"^time_to_(\d+(\.\d+)?)$")


def parse_outcomes(outcome) -> list[tuple[str, str]]:
    """Checks series, measures and primary; returns the (series, measure) pairs computed."""
    # each field read once: on a composed config every read costs (omegaconf)
    return list(_parse(tuple(outcome.series), tuple(outcome.measures), outcome.primary))


@functools.lru_cache(maxsize=64)
def _parse(series: tuple, measures: tuple, primary: str) -> tuple[tuple[str, str], ...]:
    allowed_series = [f"{p}_{k}" for p in POPULATIONS for k in KINDS]
    for s in series:
        if s not in allowed_series:
            raise ConfigError(f"outcome.series: unknown series '{s}'; allowed: {', '.join(allowed_series)}")
    for m in measures:
        if m not in MEASURES[:-1] and not TIME_TO.match(m):
            raise ConfigError(
                f"outcome.measures: unknown measure '{m}'; allowed: mean, peak, final, auc, time_to_N (e.g. time_to_10)"
            )
    pairs = tuple((s, m) for s in series for m in measures)
    names = [f"{s}_{m}" for s, m in pairs]
    if primary not in names:
        raise ConfigError(
            f"outcome.primary={primary}: must be one of the computed measures <series>_<measure>, "
            f"e.g. {', '.join(names[:4])}"
        )
    return pairs
