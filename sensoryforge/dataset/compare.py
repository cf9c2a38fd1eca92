"""`sensoryforge-aggregate A --compare B`: do two sweeps differ in their outcome measures?

Stimuli are matched by parameter point: the swept keys of either sweep (other than seed and
repetition) plus the stimulus type, each side's value of a key it did not sweep read from its own
config (so a one-point sweep B matches that point of a grid A). Each matched point and outcome
measure is one test over the seeds/repetitions; when no point matches, each measure is one test
over all stimuli pooled.

Per test: n, mean and std of A and B, diff = mean_B - mean_A, Welch's t-test (unequal
variances) p, Cohen's d = diff / pooled sd, the Holm-Bonferroni adjusted p over every test of the
comparison, `significant` = adjusted p < alpha, and with bootstrap=N a 95% CI of diff from N
resamples of each side (`scipy.stats.bootstrap`, BCa: it corrects the bias and skew of the
resampled differences, which spike counts near zero and latencies have; seeded: the same table
every time), NaN where there is nothing to resample (a side with n < 2, both sides constant), with
the reason in `diff_ci95_note`. With few seeds (n < ~10 a side) a bootstrap interval is narrower
than it should be (it resamples the few values there are); the t-test's p is the safer guide there.
Degenerate cases: a side with n < 2 gives no test (p NaN); both sides constant (spread under 1e-9
of the values: rounding) gives p = 1, d = 0 if the values are equal, else p = 0, d = +-inf (a
certain difference, the limit of Welch's test); NaN values (time_to_N never reached) are left
out of n.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from sensoryforge.core.outcome_names import resolve_measures
from sensoryforge.core.params import ConfigError
from sensoryforge.core.text import fmt
from sensoryforge.dataset.collection import collect, key_value, point_keys
from sensoryforge.dataset.tables import hashable, measure_columns, raw_table, write_csv


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(adj)
    return out


def welch(a: np.ndarray, b: np.ndarray) -> dict:
    """Welch's t-test and Cohen's d of b against a (finite values only)."""
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    na, nb = a.size, b.size
    ma = float(a.mean()) if na else math.nan
    mb = float(b.mean()) if nb else math.nan
    # spread below 1e-9 of the values is rounding noise (e.g. auc of identical spike trains)
    tiny = 1e-9 * max(abs(ma) if na else 0.0, abs(mb) if nb else 0.0, 1e-300)
    if na > 1 and np.ptp(a) <= tiny:
        a = np.full(na, ma)
    if nb > 1 and np.ptp(b) <= tiny:
        b = np.full(nb, mb)
    sa = float(a.std(ddof=1)) if na > 1 else math.nan
    sb = float(b.std(ddof=1)) if nb > 1 else math.nan
    diff = mb - ma
    t = p = d = math.nan
    if na > 1 and nb > 1:
        if sa == 0 and sb == 0:  # both constant: equal (p = 1) or certainly different (p = 0)
            if abs(diff) <= tiny:
                t, p, d = 0.0, 1.0, 0.0
            else:
                t, p, d = math.copysign(math.inf, diff), 0.0, math.copysign(math.inf, diff)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                r = stats.ttest_ind(b, a, equal_var=False)
            t, p = float(r.statistic), float(r.pvalue)
            sp = math.sqrt(((na - 1) * sa**2 + (nb - 1) * sb**2) / (na + nb - 2))
            d = diff / sp
    return {"n_a": na, "mean_a": ma, "std_a": sa, "n_b": nb, "mean_b": mb, "std_b": sb,
            "diff": diff, "t": t, "p": p, "cohen_d": d}


_BATCH_VALUES = 4_000_000


def _diff_of_means(a, b, axis=-1):
    """The bootstrap's statistic, vectorized: mean of b - mean of a along `axis`."""
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def bootstrap_ci(a: np.ndarray, b: np.ndarray, n: int, rng: np.random.Generator,
                 level: float = 0.95) -> tuple[float, float, str]:
    """(low, high, note): the BCa bootstrap interval of mean(b) - mean(a) from `n` resamples of
    each side (scipy.stats.bootstrap, drawn from `rng`), finite values only. NaN with a note
    where the bootstrap has nothing to resample: a side with n < 2, or both sides constant
    (spread under 1e-9 of the values, as in `welch`). Where BCa's correction is undefined (a
    bootstrap distribution with too many ties), the percentile interval of the same resamples,
    said in the note. No warning leaks."""
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan, "no interval: n < 2 on a side"
    tiny = 1e-9 * max(abs(float(a.mean())), abs(float(b.mean())), 1e-300)
    if np.ptp(a) <= tiny and np.ptp(b) <= tiny:
        return math.nan, math.nan, "no interval: both sides constant"
    # resamples (and BCa's jackknife) `batch` at a time: memory about batch x n values, so a pooled
    # comparison of large sweeps stays within tens of MB (a seed-sized sample is one batch)
    batch = max(1, _BATCH_VALUES // max(a.size, b.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DegenerateDataWarning, and BCa's 0/0 (handled below)
        res = stats.bootstrap((a, b), _diff_of_means, n_resamples=n, vectorized=True, method="BCa",
                              confidence_level=level, rng=rng, batch=batch)
        ci, note = res.confidence_interval, ""
        if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
            ci = stats.bootstrap((a, b), _diff_of_means, n_resamples=0, vectorized=True,
                                 method="percentile", confidence_level=level,
                                 bootstrap_result=res).confidence_interval
            note = "percentile interval: BCa undefined (ties)"
    return float(ci.low), float(ci.high), note


def _side(dirs):
    col = collect([Path(d) for d in dirs])
    if not col.items:
        raise ConfigError(f"{', '.join(map(str, dirs))}: no successful stimuli to compare")
    return col


def _points(col, keys: list[str]) -> dict[tuple, list[int]]:
    """point (values of `keys`, type first) -> row positions in the raw table."""
    out: dict[tuple, list[int]] = {}
    for i, it in enumerate(col.items):
        p = (it.record["type"], *(hashable(key_value(it, k)) for k in keys))
        out.setdefault(p, []).append(i)
    return out


def compare(a_dirs, b_dirs, alpha: float = 0.05, bootstrap: int = 0, measures: list[str] | None = None,
            seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The comparison table (one row per point x measure, or per measure when pooled) and a
    printable digest."""
    a_dirs = [Path(d) for d in a_dirs]
    b_dirs = [Path(d) for d in b_dirs]
    A, B = _side(a_dirs), _side(b_dirs)
    ra, rb = raw_table(A.items, A.swept), raw_table(B.items, B.swept)
    ma, mb = measure_columns(ra, A.swept), measure_columns(rb, B.swept)
    common = [m for m in ma if m in mb]
    notes: list[str] = []
    if measures:
        common, notes = resolve_measures(measures, common, where="computed in both")
    if not common:
        raise ConfigError("--compare: the two sweeps have no outcome measure in common")
    keys = list(dict.fromkeys(point_keys(A.swept) + point_keys(B.swept)))
    keys = [k for k in keys if k != "stimulus"]  # the type is matched anyway
    pa, pb = _points(A, keys), _points(B, keys)
    matched = [p for p in pa if p in pb]
    rows = []
    if matched:
        mode = "matched"
        for p in matched:
            for m in common:
                a = ra[m].to_numpy(dtype=float)[pa[p]]
                b = rb[m].to_numpy(dtype=float)[pb[p]]
                rows.append({"type": p[0], **dict(zip(keys, p[1:])), "measure": m, **welch(a, b), "_a": a, "_b": b})
    else:
        mode = "pooled"
        for m in common:
            a, b = ra[m].to_numpy(dtype=float), rb[m].to_numpy(dtype=float)
            rows.append({"measure": m, **welch(a, b), "_a": a, "_b": b})
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table["p"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    if bootstrap:
        rng = np.random.default_rng(seed)  # one stream, rows in table order: the same table every time
        cis = [bootstrap_ci(a, b, bootstrap, rng) for a, b in zip(table["_a"], table["_b"])]
        table["diff_ci95_low"] = [c[0] for c in cis]
        table["diff_ci95_high"] = [c[1] for c in cis]
        table["diff_ci95_note"] = [c[2] for c in cis]
    table = table.drop(columns=["_a", "_b"])
    table.insert(0, "mode", mode)
    text = digest(table, mode, keys, A, B, len(pa), len(pb), len(matched), alpha, bootstrap)
    return table, "\n".join([*notes, text])


def _name(col) -> str:
    return "+".join(str(d) for d in col.dirs)


def digest(table, mode, keys, A, B, na, nb, nm, alpha, bootstrap) -> str:
    tested = int(np.isfinite(table["p"]).sum())
    lines = [
        f"A: {_name(A)} ({len(A.items)} stimuli, {na} points)   B: {_name(B)} ({len(B.items)} stimuli, {nb} points)",
    ]
    if mode == "matched":
        on = ", ".join(["type", *keys])
        lines.append(f"matched on {on}: {nm} point{'s' if nm != 1 else ''} in both"
                     + (f" ({na - nm} of A's and {nb - nm} of B's have no match, left out)" if nm < max(na, nb) else ""))
    else:
        lines.append("no parameter point in common: every stimulus pooled per measure")
    lines.append(f"{tested} tests (Welch), Holm-Bonferroni at alpha={alpha:g}; "
                 f"{int(table['significant'].sum())} significant. diff and d are B - A.")
    boot = bootstrap and "diff_ci95_low" in table
    if boot:
        lines.append(f"bootstrap 95% CI of diff: BCa, {bootstrap} resamples per test")
        reasons = table.loc[table["diff_ci95_note"] != "", "diff_ci95_note"].value_counts()
        if len(reasons):
            lines.append("  " + "; ".join(f"{v} test{'s' if v != 1 else ''}: {k}" for k, v in reasons.items())
                         + " (diff_ci95_note in compare.csv)")
    if mode == "pooled" or nm == 1:
        head = f"{'measure':<22}{'mean A':>11}{'mean B':>11}{'n':>7}{'p':>10}{'p Holm':>10}{'d':>8}  sig"
        if boot:
            head += "   95% CI of diff (bootstrap)"
        lines.append(head)
        for _, r in table.iterrows():
            line = (f"{r['measure']:<22}{fmt(r['mean_a'], '.4g'):>11}{fmt(r['mean_b'], '.4g'):>11}"
                    f"{f'{r.n_a}/{r.n_b}':>7}{fmt(r['p'], '.3g'):>10}{fmt(r['p_holm'], '.3g'):>10}"
                    f"{fmt(r['cohen_d'], '.2f'):>8}  {'*' if r['significant'] else ''}")
            if boot:
                line += f"   [{fmt(r['diff_ci95_low'], '.4g')}, {fmt(r['diff_ci95_high'], '.4g')}]"
            lines.append(line)
        return "\n".join(lines)
    lines.append(f"{'measure':<22}{'mean A':>11}{'mean B':>11}{'sig points':>12}{'min p Holm':>12}{'median d':>10}")
    for m, g in table.groupby("measure", sort=False):
        finite_d = g["cohen_d"].to_numpy(dtype=float)
        finite_d = finite_d[~np.isnan(finite_d)]
        lines.append(
            f"{m:<22}{fmt(g['mean_a'].mean(), '.4g'):>11}{fmt(g['mean_b'].mean(), '.4g'):>11}"
            f"{f'{int(g.significant.sum())}/{len(g)}':>12}{fmt(g['p_holm'].min(), '.3g'):>12}"
            f"{fmt(float(np.median(finite_d)) if finite_d.size else math.nan, '.2f'):>10}"
        )
    lines.append("(means over the matched points; one test per point and measure in compare.csv)")
    return "\n".join(lines)


def write(table: pd.DataFrame, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "compare.csv"
    write_csv(table, path)
    return path
