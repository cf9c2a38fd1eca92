"""The names of outcome series and measures, and their check, without torch: the config checks
(every command's start, dry runs) need them, the computation (core/outcomes.py) needs torch.

Series are <population>_rate or <population>_count; measures mean, peak, final, auc and
time_to_N; a computed measure is named <series>_<measure>. `resolve_measures` reads the names a
user gives (`--measures`): full ones, or short ones that stand for every computed measure they end.
"""

from __future__ import annotations

import functools
import re

from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import POPULATIONS

KINDS = ("rate", "count")
MEASURES = ("mean", "peak", "final", "auc", "time_to_N")
TIME_TO = re.compile(r"^time_to_(\d+(\.\d+)?)$")
# <population>_<kind>_<measure> (longest population names first: sa2_... is not read as sa)
_POPS = "|".join(sorted(POPULATIONS, key=len, reverse=True))
MEASURE_NAME = re.compile(rf"^(?P<pop>{_POPS})_(?P<kind>{'|'.join(KINDS)})_(?P<m>.+)$")


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


def resolve_measures(names, available, option: str = "--measures", where: str = "computed"
                     ) -> tuple[list[str], list[str]]:
    """The measure columns that `names` stand for, in the order given, and a note for each short
    name that stood for several. A name is a full column (`sa_rate_mean`) or a short one: the
    measure (`auc`, `time_to_50`: every series'), kind and measure (`rate_auc`: every
    population's rate) or population and measure (`sa_auc`: SA's rate and count). A short name
    takes every computed measure it matches, in the table's order (one per population is the
    common case, and the one a user means); a name that matches nothing is refused in one line
    with the measures there are (`where` says where they are)."""
    available = list(available)
    out: list[str] = []
    notes: list[str] = []
    bad: list[str] = []
    for name in names:
        if name in available:
            hits = [name]
        else:
            hits = [c for c in available if _matches(name, c)]
            if len(hits) > 1:
                notes.append(f"{option} {name}: {', '.join(hits)}")
        if not hits:
            bad.append(name)
        out += [h for h in hits if h not in out]
    if bad:
        raise ConfigError(
            f"{option} {','.join(bad)}: unknown measure; {where}: {_listing(available)} (a full name, "
            "e.g. sa_rate_auc, or a short one for every series that has it: auc, rate_auc, sa_auc)"
        )
    return out, notes


def _listing(columns: list[str]) -> str:
    """'mean, auc of sa_rate, ra_rate' when the columns are every series x every measure, else
    the columns one by one."""
    parsed = [MEASURE_NAME.match(c) for c in columns]
    if not columns or not all(parsed):
        return ", ".join(columns) or "none"
    series = list(dict.fromkeys(f"{m['pop']}_{m['kind']}" for m in parsed))
    measures = list(dict.fromkeys(m["m"] for m in parsed))
    if len(columns) != len(series) * len(measures):
        return ", ".join(columns)
    return f"{', '.join(measures)} of {', '.join(series)}"


def _matches(short: str, column: str) -> bool:
    m = MEASURE_NAME.match(column)
    if not m:
        return False
    return short in (m["m"], f"{m['kind']}_{m['m']}", f"{m['pop']}_{m['m']}")
