"""Tables over a sweep: raw.csv (one row per stimulus) and summary.csv (one row per parameter
point: the swept keys other than seed and repetition, with mean, std, n and a 95% t-interval of
every outcome measure over the seeds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SEED_KEYS = ("seed", "repetition")


def raw_table(items, swept: list[str]) -> pd.DataFrame:
    rows = []
    for it in items:
        rec = it.record
        row = {"stimulus_id": it.id, "type": rec["type"]}
        for k in swept:
            row[k] = rec.get("point", {}).get(k)
        row.update(seed=rec["seed"], repetition=rec["repetition"])
        row.update({k: (np.nan if v is None else v) for k, v in rec.get("measures", {}).items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    for k in swept:
        if k in df:
            converted = pd.to_numeric(df[k], errors="coerce")
            if converted.notna().sum() == df[k].notna().sum():
                df[k] = converted
    return df


def measure_columns(df: pd.DataFrame, swept: list[str]) -> list[str]:
    fixed = {"stimulus_id", "type", *swept, *SEED_KEYS}
    return [c for c in df.columns if c not in fixed]


def summary_table(df: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    keys = [k for k in swept if k not in SEED_KEYS]
    measures = measure_columns(df, swept)
    groups = df.groupby(keys, dropna=False, sort=False) if keys else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        for m in measures:
            x = g[m].dropna().to_numpy(dtype=float)
            n = x.size
            mean = float(x.mean()) if n else np.nan
            std = float(x.std(ddof=1)) if n > 1 else np.nan
            half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)) if n > 1 else np.nan
            row.update({f"{m}_mean": mean, f"{m}_std": std, f"{m}_n": n,
                        f"{m}_ci95_low": mean - half, f"{m}_ci95_high": mean + half})
        rows.append(row)
    return pd.DataFrame(rows)


def write_tables(out: Path, items, swept: list[str]) -> None:
    df = raw_table(items, swept)
    _write_csv(df, out / "raw.csv")
    if len(df):
        _write_csv(summary_table(df, swept), out / "summary.csv")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)
