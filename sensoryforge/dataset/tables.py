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

import csv
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


def group_stats(x: np.ndarray, starts: np.ndarray) -> dict[str, np.ndarray]:
    """describe() of every group of the rows of x [rows, M], the groups being the runs of rows
    that begin at `starts`: each figure [groups, M], over the finite values of its column."""
    finite = np.isfinite(x)
    n = np.add.reduceat(finite, starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(np.where(finite, x, 0.0), starts, axis=0) / n
        dev = np.where(finite, x - np.repeat(mean, np.diff(np.r_[starts, len(x)]), axis=0), 0.0)
        std = np.where(n > 1, np.sqrt(np.add.reduceat(dev * dev, starts, axis=0) / (n - 1)), np.nan)
        half = np.where(n > 1, stdtrit(n - 1, 0.975) * std / np.sqrt(n), np.nan)
    mean[n == 0] = np.nan
    return {"mean": mean, "std": std, "n": n, "ci95_low": mean - half, "ci95_high": mean + half}


def describe(x: np.ndarray) -> dict:
    """mean, std (ddof 1), n and the 95% t interval of the mean of the finite values of x."""
    x = np.asarray(x, dtype=float).reshape(-1, 1)
    if not x.size:
        return {"mean": math.nan, "std": math.nan, "n": 0, "ci95_low": math.nan, "ci95_high": math.nan}
    return {k: (int(v[0, 0]) if k == "n" else float(v[0, 0])) for k, v in group_stats(x, np.zeros(1, np.int64)).items()}


def summary_table(df: pd.DataFrame, swept: list[str], keys: list[str] | None = None) -> pd.DataFrame:
    """One row per parameter point, in order of first appearance: the point's keys, n_stimuli and
    describe()'s figures for every measure (group_stats). Vectorised over points (a pandas group per point cost
    ~1 ms, the whole of aggregation's time for sweeps without repetitions)."""
    keys = point_keys(swept) if keys is None else keys
    measures = measure_columns(df, swept)
    point = (df.groupby(keys, dropna=False, sort=False).ngroup().to_numpy() if keys
             else np.zeros(len(df), np.int64))
    order = np.argsort(point, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(point[order]) != 0])
    out = {k: df[k].to_numpy()[order[starts]] for k in keys}
    out["n_stimuli"] = np.diff(np.r_[starts, len(df)])
    stats = group_stats(df[measures].to_numpy(dtype=float)[order], starts)
    for j, m in enumerate(measures):
        out.update({f"{m}_{k}": v[:, j] for k, v in stats.items()})
    return pd.DataFrame(out)


def hashable(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, dict)):
        return repr(v)
    return v


class Consensus:
    """The running mean and std of every outcome series over time at each parameter point, fed
    stimulus by stimulus in dataset order (`add`; Welford, so the result does not depend on how the
    stimuli were chunked into jobs), all series of a stimulus as one [series, bins] array."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.acc: dict[tuple, dict] = {}

    def add(self, it: Item, reader: NpzReader) -> None:
        if "series" not in it.job.get("files", {}):
            return
        names = it.job["config"]["outcome"]["series"]
        point = tuple(hashable(it.record["type"] if k == "type" else key_value(it, k)) for k in self.keys)
        sid = it.record["id"]
        x = np.array([reader.get(it, f"{sid}/{s}") for s in names], dtype=float)
        a = self.acc.get(point)
        if a is None:
            a = self.acc[point] = {"times": reader.get(it, "times").astype(float), "n": 0, "names": list(names),
                                   "mean": np.zeros_like(x), "m2": np.zeros_like(x)}
        if x.shape != a["mean"].shape or list(names) != a["names"]:  # another outcome config: by name
            self._add_by_name(a, dict(zip(names, x)))
            return
        a["n"] += 1
        delta = x - a["mean"]
        a["mean"] += delta / a["n"]
        a["m2"] += delta * (x - a["mean"])

    @staticmethod
    def _add_by_name(a: dict, series: dict) -> None:
        """A stimulus whose series differ from the point's first: each series on its own."""
        a["n"] += 1
        rows = {s: i for i, s in enumerate(a["names"])}
        for s, x in series.items():
            if s in rows and x.shape == a["mean"][rows[s]].shape:
                i = rows[s]
                delta = x - a["mean"][i]
                a["mean"][i] += delta / a["n"]
                a["m2"][i] += delta * (x - a["mean"][i])

    def table(self) -> pd.DataFrame:
        """One row per point and time bin; a series a point lacks (another outcome config) is
        empty there. Built column by column, not a frame per point."""
        if not self.acc:
            return pd.DataFrame()
        accs = list(self.acc.values())
        bins = [a["times"].size for a in accs]
        cols: dict = {k: [v for point, b in zip(self.acc, bins) for v in [point[j]] * b]
                      for j, k in enumerate(self.keys)}
        cols["time_ms"] = np.concatenate([a["times"] for a in accs])
        cols["n"] = np.repeat([a["n"] for a in accs], bins)
        for s in dict.fromkeys(s for a in accs for s in a["names"]):
            means, stds = [], []
            for a, b in zip(accs, bins):
                i = a["names"].index(s) if s in a["names"] else None
                means.append(a["mean"][i] if i is not None else np.full(b, np.nan))
                stds.append(np.sqrt(a["m2"][i] / (a["n"] - 1)) if i is not None and a["n"] > 1
                            else np.full(b, np.nan))
            cols[f"{s}_mean"], cols[f"{s}_std"] = np.concatenate(means), np.concatenate(stds)
        return pd.DataFrame(cols)


def consensus_table(items: list[Item], keys: list[str]) -> pd.DataFrame:
    """Mean and std (ddof 1) of every outcome series over time across the seeds at each point.

    Streams: series are read job by job and folded into running (Welford) means per point."""
    reader = NpzReader("series")
    cons = Consensus(keys)
    try:
        for it in items:
            cons.add(it, reader)
    finally:
        reader.close()
    return cons.table()


def write_tables(out: Path, items: list[Item], swept: list[str], consensus: Consensus | None = None) -> Tables:
    """raw.csv, summary.csv, consensus.csv (from `consensus` when the caller fed one)."""
    df = raw_table(items, swept)
    keys = group_keys(items, swept)
    write_csv(df, out / "raw.csv")
    files = ["raw.csv"]
    summary = pd.DataFrame()
    if len(df):
        summary = summary_table(df, swept, keys)
        write_csv(summary, out / "summary.csv")
        write_csv(consensus.table() if consensus is not None else consensus_table(items, keys),
                  out / "consensus.csv")
        files += ["summary.csv", "consensus.csv"]
    return Tables(df, summary, files)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """`df.to_csv(path, index=False)`, byte for byte, written atomically and ~4x faster: each
    distinct value of a column is formatted once (pandas formats every cell; 100,000 rows of
    consensus.csv took 1-1.7 s) and the csv module writes the rows, with pandas' dialect."""
    cols = [_csv_column(df[c]) for c in df.columns] if df.columns.is_unique else [None]
    with atomic(path) as tmp:
        if any(c is None for c in cols) or not len(df.columns):
            df.to_csv(tmp, index=False)
            return
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(df.columns)
            w.writerows(zip(*cols))


def _csv_column(s: pd.Series) -> list | None:
    """A column's cells as pandas' to_csv writes them (NaN and None empty, floats as numpy's
    shortest repr); None for dtypes left to pandas."""
    x = s.to_numpy()
    if not isinstance(s.dtype, np.dtype) or x.dtype.kind not in "fiubO":
        return None
    x = np.ascontiguousarray(x)
    if x.dtype.kind == "O":
        x = x.copy()
        x[pd.isna(x)] = ""
        return x.tolist()
    if x.dtype.kind == "f":  # distinct by bit pattern, so -0.0 keeps its sign
        codes, bits = pd.factorize(x.view(f"i{x.itemsize}"))
        values = bits.view(x.dtype)
        text = values.astype(str).astype(object)
        text[np.isnan(values)] = ""
    else:
        codes, values = pd.factorize(x)
        text = np.asarray(values).astype(str).astype(object)
    return text[codes].tolist()
