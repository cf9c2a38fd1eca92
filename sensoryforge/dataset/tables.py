"""Tables over a sweep.

raw.csv        one row per stimulus: id, source, type, the swept values, seed, repetition and
               every outcome measure (<series>_<measure>, see core/outcomes.py)
summary.csv    one row per parameter point (the swept keys other than seed and repetition; also
               the stimulus type when there are several): n_stimuli and, for every measure,
               <m>_mean, <m>_std (ddof 1), <m>_n (stimuli where the measure is defined, e.g.
               time_to_N is undefined when the level is never reached) and the 95% confidence
               interval of the mean <m>_ci95_low/high = mean -+ t(0.975, n-1) std / sqrt(n), n >= 2
consensus.csv  one row per parameter point and time bin: time_ms, n and, for every outcome
               series, <series>_mean and <series>_std over the seeds/repetitions at that point
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # scipy.stats would add ~50 MB of imports to every aggregation

from sensoryforge.core.schema import SEED_KEYS
from sensoryforge.dataset.collection import Item, key_value, point_keys
from sensoryforge.dataset.files import atomic
from sensoryforge.dataset.jobs import NpzReader


@dataclass
class Tables:
    raw: pd.DataFrame
    summary: pd.DataFrame
    files: list[str] = field(default_factory=list)


def group_keys(items: list[Item], swept: list[str]) -> list[str]:
    """Columns that define a parameter point."""
    keys = point_keys(swept)
    if len({it.record["type"] for it in items}) > 1 and "stimulus" not in keys:
        keys = ["type", *keys]
    return keys


def raw_table(items: list[Item], swept: list[str]) -> pd.DataFrame:
    keys = point_keys(swept)
    rows = []
    for it in items:
        rec = it.record
        row = {"stimulus_id": it.id, "source": it.source, "type": rec["type"]}
        for k in keys:
            row[k] = key_value(it, k)
        row.update(seed=rec["seed"], repetition=rec["repetition"])
        row.update({k: (np.nan if v is None else v) for k, v in rec.get("measures", {}).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def measure_columns(df: pd.DataFrame, swept: list[str]) -> list[str]:
    fixed = {"stimulus_id", "source", "type", *swept, *SEED_KEYS}
    return [c for c in df.columns if c not in fixed]


def describe(x: np.ndarray) -> dict:
    """mean, std (ddof 1), n and the 95% t interval of the mean of the finite values of x."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stdtrit(n - 1, 0.975) * std / math.sqrt(n)) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}


def _groups(df: pd.DataFrame, keys: list[str]):
    if not keys:
        yield (), df
        return
    for key, g in df.groupby(keys, dropna=False, sort=False):
        yield (key if isinstance(key, tuple) else (key,)), g


def summary_table(df: pd.DataFrame, swept: list[str], keys: list[str] | None = None) -> pd.DataFrame:
    keys = point_keys(swept) if keys is None else keys
    measures = measure_columns(df, swept)
    rows = []
    for key, g in _groups(df, keys):
        row = dict(zip(keys, key))
        row["n_stimuli"] = len(g)
        for m in measures:
            row.update({f"{m}_{k}": v for k, v in describe(g[m].to_numpy()).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def hashable(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, dict)):
        return repr(v)
    return v


def consensus_table(items: list[Item], keys: list[str]) -> pd.DataFrame:
    """Mean and std (ddof 1) of every outcome series over time across the seeds at each point.

    Streams: series are read job by job and folded into running (Welford) means per point."""
    reader = NpzReader("series")
    acc: dict[tuple, dict] = {}
    try:
        for it in items:
            if "series" not in it.job.get("files", {}):
                continue
            names = it.job["config"]["outcome"]["series"]
            point = tuple(hashable(it.record["type"] if k == "type" else key_value(it, k)) for k in keys)
            a = acc.get(point)
            if a is None:
                a = acc[point] = {"times": reader.get(it, "times").astype(float), "n": 0,
                                  "mean": {}, "m2": {}, "names": list(names)}
            a["n"] += 1
            for s in names:
                x = reader.get(it, f"{it.record['id']}/{s}").astype(float)
                if s not in a["mean"]:
                    a["mean"][s], a["m2"][s] = np.zeros_like(x), np.zeros_like(x)
                delta = x - a["mean"][s]
                a["mean"][s] += delta / a["n"]
                a["m2"][s] += delta * (x - a["mean"][s])
    finally:
        reader.close()
    frames = []
    for point, a in acc.items():
        cols: dict = {k: [v] * a["times"].size for k, v in zip(keys, point)}
        cols["time_ms"] = a["times"]
        cols["n"] = a["n"]
        for s in a["names"]:
            cols[f"{s}_mean"] = a["mean"][s]
            cols[f"{s}_std"] = np.sqrt(a["m2"][s] / (a["n"] - 1)) if a["n"] > 1 else np.nan
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_tables(out: Path, items: list[Item], swept: list[str]) -> Tables:
    df = raw_table(items, swept)
    keys = group_keys(items, swept)
    write_csv(df, out / "raw.csv")
    files = ["raw.csv"]
    summary = pd.DataFrame()
    if len(df):
        summary = summary_table(df, swept, keys)
        write_csv(summary, out / "summary.csv")
        write_csv(consensus_table(items, keys), out / "consensus.csv")
        files += ["summary.csv", "consensus.csv"]
    return Tables(df, summary, files)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic(path) as tmp:
        df.to_csv(tmp, index=False)
