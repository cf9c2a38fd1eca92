"""`sensoryforge-aggregate`: job folders -> one dataset and its summaries.

Written into the output folder (the sweep folder by default):
  results.h5           HDF5, streamed stimulus by stimulus (gzip-chunked bool [T, N] spikes)
  results.pt           {'metadata', 'results': [...]} with sparse COO bool spikes [T, N]
  stimulus_index.json  stim_NNNN -> flat parameter dict
  raw.csv, summary.csv, consensus.csv   see summarize.py
  sweep.png / heatmap.png               see plots.py
  batch_metadata.json  written last: batch id, counts, the config, runtimes, failed stimuli

Memory does not grow with the sweep for HDF5: one job folder's arrays are open at a time and one
stimulus' rasters are in memory at a time. results.pt keeps only sparse spike indices (int64
COO: 17 bytes per spike), the one part that grows with the number of spikes.

Every file is written to a temporary name and renamed into place, so a file that exists is whole.
Aggregating again into the same folder replaces the outputs; those of the earlier aggregation that
this one does not write (a plot of another kind, results.pt after --format hdf5, summary.csv when
no stimulus succeeded) are removed, so the folder never mixes two aggregations.
The input folders only need their job folders (job.json + npz): no absolute paths are stored in
them, so a sweep copied from a cluster aggregates the same anywhere.

`--plot`, `--compare` and `--validate` are analyses on top; see `main()`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sensoryforge.config import POPULATIONS as POPS
from sensoryforge.config import SEED_KEYS
from sensoryforge.jobs import JOB_FILE, atomic_write_json, dense_spikes, read_job, tmp_path
from sensoryforge.params import ConfigError

DATASET_FORMAT = "sensoryforge-dataset/1"
# results.pt carries the intermediates (dense float tensors) only up to this total size
PT_INTERMEDIATES_LIMIT_MB = 256.0
PT_BYTES_PER_SPIKE = 17  # int64 (t, n) index pair + a bool value
PT_WARN_MB = 256.0  # say so when results.pt's spikes alone need more memory than this
# units of the arrays in responses/stim_NNNN (HDF5 attribute `unit`)
UNITS = {"spikes": "bool", "drive": "rheobase units", "voltage": "mV (model units)",
         "stimulus_spatial": "kPa", "stimulus_temporal": "1 (dimensionless)"}


@dataclass
class Item:
    """One finished stimulus: its record in job.json and where its arrays are."""

    id: str  # id in the dataset
    record: dict
    job_dir: Path
    job: dict
    source: str  # "<folder>/<original id>"


@dataclass
class Collection:
    items: list[Item]
    failed: dict[str, str]  # id (or folder/id) -> error
    swept: list[str]  # keys with more than one value, in order of first appearance
    dirs: list[Path]


# -- reading job folders -------------------------------------------------------------------------


def job_dirs(root: Path) -> list[Path]:
    """The job folders of a sweep folder (or the folder itself if it is a single run)."""
    if (root / JOB_FILE).exists():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{JOB_FILE}"))


def _labels(dirs: list[Path]) -> list[str]:
    names = [d.resolve().name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]


def _no_jobs(root: Path) -> ConfigError:
    deeper = sorted({p.parent.parent for p in root.glob(f"*/*/**/{JOB_FILE}")})
    started = [p for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()] if root.is_dir() else []
    hint = ""
    if deeper:
        shown = ", ".join(str(d) for d in deeper[:3]) + (", ..." if len(deeper) > 3 else "")
        hint = f"; sweep folders below it: {shown} (pass those)"
    elif started:
        hint = f"; {len(started)} job folders started but none finished"
    return ConfigError(f"{root}: no finished jobs (no {JOB_FILE} in it or its sub-folders){hint}")


def collect(dirs: list[Path]) -> Collection:
    """Finished stimuli of every folder, in dataset order, and the failed ones.

    A stimulus recorded twice (a resumed sweep) counts once, its successful run preferred.
    With several folders, stimuli are renumbered stim_0000... in folder order; `source` keeps
    "<folder>/<original id>".
    """
    dirs = [Path(d) for d in dirs]
    items: list[Item] = []
    failed: dict[str, str] = {}
    many = len(dirs) > 1
    for root, label in zip(dirs, _labels(dirs)):
        if not root.exists():
            raise ConfigError(f"{root}: no such folder")
        if not root.is_dir():
            raise ConfigError(f"{root}: not a folder")
        best: dict[str, tuple[dict, Path, dict]] = {}
        found = job_dirs(root)
        if not found:
            raise _no_jobs(root)
        for jd in found:
            job = read_job(jd)
            if job is None:
                continue
            for rec in job.get("stimuli", []):
                prev = best.get(rec["id"])
                if prev is None or (prev[0]["status"] != "ok" and rec["status"] == "ok"):
                    best[rec["id"]] = (rec, jd, job)
        for sid in sorted(best):
            rec, jd, job = best[sid]
            if rec["status"] == "ok":
                items.append(Item(sid, rec, jd, job, f"{label}/{sid}"))
            else:
                failed[f"{label}/{sid}" if many else sid] = rec.get("error", "failed")
    if many:  # renumber across folders; `source` keeps the original id
        width = max(4, len(str(len(items) - 1)))
        for i, it in enumerate(items):
            it.id = f"stim_{i:0{width}d}"
    return Collection(items, failed, swept_keys(items), dirs)


def typed(text: Any) -> Any:
    """A sweep value as written ('10', '0.5', 'true', 'null', 'gaussian') -> its Python value."""
    if not isinstance(text, str):
        return text
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if re.fullmatch(r"[-+]?\d+", text.strip()):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _walk(d: Any, path: list[str]) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def key_value(it: Item, key: str) -> Any:
    """The value of a (swept) key for one stimulus: from the stimulus' own parameters, its seeds,
    the job's resolved config, or else the sweep point as written."""
    rec = it.record
    if key.startswith("stimulus."):
        name = key.split(".", 1)[1]
        return rec["params"].get(name)
    if key in ("seed", "repetition"):
        return rec[key]
    if key == "stimulus":
        return rec["type"]
    v = _walk(it.job.get("config"), key.split("."))
    if v is not None and not isinstance(v, (dict, list)):
        return v
    return typed(rec.get("point", {}).get(key))


def swept_keys(items: list[Item]) -> list[str]:
    """Keys of the sweep points with more than one value over `items` (several folders included)."""
    keys: dict[str, None] = {}
    for it in items:
        for k in it.record.get("point", {}):
            keys.setdefault(k, None)
    out = []
    for k in keys:
        values = {json.dumps(key_value(it, k), sort_keys=True, default=str) for it in items}
        if len(values) > 1:
            out.append(k)
    return out


def point_keys(swept: list[str]) -> list[str]:
    """Swept keys that define a parameter point (not seeds or repetitions)."""
    return [k for k in swept if k not in SEED_KEYS]


def flat_params(it: Item, swept: list[str]) -> dict:
    """The stimulus' flat parameter dict: type, every parameter, seeds, swept values, source."""
    rec = it.record
    d = {"type": rec["type"], **rec["params"]}
    d.update(seed=rec["seed"], repetition=rec["repetition"], noise_seed=rec["noise_seed"])
    for k in swept:
        if not k.startswith("stimulus") and k not in d:
            d[k] = key_value(it, k)
    d["source"] = it.source
    return d


class NpzReader:
    """Reads a job folder's npz files, keeping one open at a time (items come job by job)."""

    def __init__(self, name: str = "spikes"):
        self.name = name
        self._key: Path | None = None
        self._path: Path | None = None
        self._z = None

    def __call__(self, it: Item):
        if self._key != it.job_dir:
            self.close()
            path = it.job_dir / it.job.get("files", {}).get(self.name, f"{self.name}.npz")
            try:
                self._z = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: cannot read it ({type(e).__name__}: {e}); re-run that job") from None
            self._key, self._path = it.job_dir, path
        return self._z

    def get(self, it: Item, name: str) -> np.ndarray:
        z = self(it)
        try:
            return z[name]
        except KeyError:
            raise ConfigError(f"{self._path}: no array '{name}'; re-run that job") from None

    def close(self) -> None:
        if self._z is not None:
            self._z.close()
        self._z, self._key = None, None

    def flat(self, it: Item, pop: str) -> np.ndarray:
        return self.get(it, f"{it.record['id']}/{pop}")

    def raster(self, it: Item, pop: str) -> np.ndarray:
        return dense_spikes(self.flat(it, pop), it.job["steps"], it.job["counts"][pop])


# -- writers -------------------------------------------------------------------------------------


def _attr(v):
    if v is None:
        return "null"
    if isinstance(v, (list, dict, tuple)):
        return json.dumps(v)
    return v


def _unit(name: str) -> str:
    for k, u in UNITS.items():
        if name.endswith(k):
            return u
    return ""


def write_hdf5(path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool) -> None:
    """results.h5, one stimulus at a time (peak memory: one stimulus' rasters)."""
    import h5py

    tmp = tmp_path(path)
    spikes = NpzReader("spikes")
    inter = NpzReader("intermediates")
    try:
        # HDF5 >= 1.10 file format: compact groups and attributes, 2-4x smaller than the 1.8 one
        # for many small per-stimulus datasets (readable with HDF5 1.10 or newer: h5py >= 2.10)
        with h5py.File(tmp, "w", libver=("v110", "latest")) as f:
            m = f.create_group("metadata")
            for k in ("batch_id", "num_stimuli", "num_failed", "format", "created"):
                m.attrs[k] = meta[k]
            for k in ("config", "failed_stimuli", "swept", "counts", "populations"):
                m.attrs[k] = json.dumps(meta[k])
            m.attrs["dt"] = meta["dt"] if meta["dt"] is not None else np.nan
            m.attrs["steps"] = meta["steps"] if meta["steps"] is not None else -1
            g = f.create_group("grid")
            g.attrs["size"] = meta["grid"].get("size", -1)
            g.attrs["spacing"] = meta["grid"].get("spacing", np.nan)
            g.attrs["unit"] = "mm"
            stim_g, resp_g = f.create_group("stimuli"), f.create_group("responses")
            for it in items:
                s = stim_g.create_group(it.id)
                for k, v in flat_params(it, swept).items():
                    s.attrs[k] = _attr(v)
                r = resp_g.create_group(it.id)
                for pop in POPS:
                    x = spikes.raster(it, pop)
                    big = x.size > 0
                    rows = max(1, min(x.shape[0], 2**20 // max(x.shape[1], 1)))  # chunks <= 1 MiB
                    r.create_dataset(
                        f"{pop}_spikes", data=x, chunks=(rows, x.shape[1]) if big else None,
                        compression="gzip" if big else None, compression_opts=4 if big else None,
                    )
                if intermediates and "intermediates" in it.job["files"]:
                    z = inter(it)
                    prefix = f"{it.record['id']}/"
                    for key in z.files:
                        if key.startswith(prefix):
                            a = z[key]
                            d = r.create_dataset(
                                key[len(prefix):], data=a,
                                compression="gzip" if a.size else None, compression_opts=4 if a.size else None,
                            )
                            d.attrs["unit"] = _unit(key)
        os.replace(tmp, path)
    finally:
        spikes.close()
        inter.close()
        tmp.unlink(missing_ok=True)


def _intermediate_bytes(items: list[Item]) -> int:
    total = 0
    for it in items:
        if "intermediates" not in it.job.get("files", {}):
            continue
        counts, steps = it.job["counts"], it.job["steps"]
        g = it.job.get("grid", {}).get("size", 0)
        total += 4 * (2 * steps * sum(counts.values()) + g * g + steps)
    return total


def write_pytorch(
    path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool = True,
    intermediates_limit_mb: float = PT_INTERMEDIATES_LIMIT_MB,
) -> dict:
    """results.pt: sparse COO bool spikes [T, N] per population and the stimulus config; with
    intermediates (when saved and under `intermediates_limit_mb` in all) their dense tensors.
    Returns a note on the intermediates for batch_metadata."""
    import torch

    has_inter = any("intermediates" in it.job.get("files", {}) for it in items)
    note = {"included": False, "reason": "not saved (pipeline.save_intermediates=false)"}
    if has_inter:
        size_mb = _intermediate_bytes(items) / 2**20
        if not intermediates:
            note = {"included": False, "reason": "not asked for"}
        elif size_mb > intermediates_limit_mb:
            note = {"included": False, "reason": f"{size_mb:.0f} MB > {intermediates_limit_mb:.0f} MB: read them from results.h5"}
        else:
            note = {"included": True, "size_mb": round(size_mb, 1)}
    spikes = NpzReader("spikes")
    inter = NpzReader("intermediates")
    results = []
    try:
        for it in items:
            entry: dict[str, Any] = {}
            for pop in POPS:
                n, steps = it.job["counts"][pop], it.job["steps"]
                flat = torch.from_numpy(spikes.flat(it, pop))
                idx = torch.empty(2, flat.numel(), dtype=torch.int64)  # written in place: no temporaries
                torch.div(flat, max(n, 1), rounding_mode="floor", out=idx[0])
                torch.remainder(flat, max(n, 1), out=idx[1])
                entry[f"{pop}_spikes"] = torch.sparse_coo_tensor(
                    idx, torch.ones(flat.numel(), dtype=torch.bool), (steps, n), is_coalesced=True,
                    check_invariants=False,
                )
            if note["included"] and "intermediates" in it.job["files"]:
                z = inter(it)
                prefix = f"{it.record['id']}/"
                for key in z.files:
                    if key.startswith(prefix):
                        entry[key[len(prefix):]] = torch.from_numpy(z[key])
            entry["stimulus_config"] = {"stimulus_id": it.id, **flat_params(it, swept)}
            results.append(entry)
    finally:
        spikes.close()
        inter.close()
    tmp = tmp_path(path)
    try:
        torch.save({"metadata": {**meta, "intermediates": note}, "results": results}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return note


def release_memory() -> None:
    """Return freed heap memory to the OS (glibc keeps small freed blocks otherwise)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


# -- the whole aggregation -----------------------------------------------------------------------


def metadata(col: Collection, name: str | None) -> dict:
    items, dirs = col.items, col.dirs
    first = items[0].job if items else {}
    configs = {
        json.dumps({k: v for k, v in it.job.get("config", {}).items() if k != "stimulus"}, sort_keys=True)
        for it in items
    }
    runtime = sum({str(it.job_dir): it.job.get("runtime_s", 0.0) for it in items}.values())
    counts = first.get("counts") or {p: 0 for p in POPS}
    return {
        "format": DATASET_FORMAT,
        "batch_id": name or (dirs[0].resolve().name if len(dirs) == 1 else "+".join(_labels(dirs))),
        "num_stimuli": len(items),
        "num_failed": len(col.failed),
        "failed_stimuli": [{"stimulus_id": k, "error": v} for k, v in col.failed.items()],
        "swept": col.swept,
        "sources": _labels(dirs),
        "config": first.get("config", {}),
        # > 1 when a job-level key (neurons.*, pipeline.*) was swept: `config` is the first job's
        "num_configs": len(configs),
        "populations": list(POPS),
        "dt": first.get("dt"),
        "steps": first.get("steps"),
        "counts": counts,
        "grid": first.get("grid", {}),
        "types": sorted({it.record["type"] for it in items}),
        "simulation_runtime_s": round(runtime, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def aggregate(
    dirs: list[Path],
    out: Path,
    fmt: str = "both",
    name: str | None = None,
    intermediates: bool = True,
    plots: bool = True,
    measures: list[str] | None = None,
    keys: list[str] | None = None,
    log=None,
) -> dict:
    """Build the dataset, summaries and plots of `dirs` in `out`. Returns batch_metadata's dict.

    fmt: hdf5, pytorch or both. intermediates: copy saved intermediates into the datasets.
    plots: write sweep.png / heatmap.png. measures / keys: what the plots show (default: chosen).
    log: a print-like function for messages (default: stderr).
    """
    if fmt not in ("hdf5", "pytorch", "both"):
        raise ConfigError(f"format={fmt}: must be one of hdf5, pytorch, both")
    say = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    out = Path(out)
    col = collect([Path(d) for d in dirs])
    items, swept = col.items, col.swept
    out.mkdir(parents=True, exist_ok=True)
    meta = metadata(col, name)
    files = ["stimulus_index.json"]
    atomic_write_json(out / "stimulus_index.json", {it.id: flat_params(it, swept) for it in items})
    if fmt in ("hdf5", "both"):
        write_hdf5(out / "results.h5", items, swept, meta, intermediates)
        files.append("results.h5")
    if fmt in ("pytorch", "both"):
        n_spikes = sum(sum(it.record.get("spike_counts", {}).values()) for it in items)
        pt_mb = PT_BYTES_PER_SPIKE * n_spikes / 2**20
        if pt_mb > PT_WARN_MB:
            say(f"results.pt: {n_spikes} spikes = {pt_mb:.0f} MB of sparse indices, held in memory while "
                "it is written and when it is loaded; results.h5 (--format hdf5) streams instead")
        meta["intermediates"] = write_pytorch(out / "results.pt", items, swept, meta, intermediates)
        files.append("results.pt")
        release_memory()  # the sparse tensors are gone: give their heap back before the tables
    from sensoryforge import summarize

    tables = summarize.write_tables(out, items, swept)
    files += tables.files
    if plots and items:
        from sensoryforge import plots as plots_mod

        try:
            written, notes = plots_mod.sweep_plots(out, tables, point_keys(swept), meta, measures, keys)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a plot must not cost the dataset; said loudly
            written, notes = [], [f"plots failed: {type(e).__name__}: {e}"]
        files += written
        for n in notes:
            say(n)
    meta["files"] = files + ["batch_metadata.json"]
    meta["aggregation_runtime_s"] = round(time.perf_counter() - t0, 3)
    stale = [f for f in previous_files(out) if f not in meta["files"]]
    atomic_write_json(out / "batch_metadata.json", meta)
    for f in stale:  # an earlier aggregation's outputs that this one did not rewrite
        (out / f).unlink(missing_ok=True)
    return meta


def previous_files(out: Path) -> list[str]:
    """Files an earlier aggregation into `out` listed as its own (plain names only)."""
    try:
        files = json.loads((out / "batch_metadata.json").read_text()).get("files", [])
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and f == Path(f).name and not f.startswith(".")]


# -- command line --------------------------------------------------------------------------------


def _csv_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensoryforge-aggregate",
        description="Collect sweep folders into one dataset (results.h5, results.pt, stimulus_index.json, "
        "batch_metadata.json), tables (raw.csv, summary.csv, consensus.csv) and plots. "
        "--plot and --compare only plot or compare (the dataset is left as it is).",
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="sweep folders (or single-run folders)")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: the only DIR; required with several)")
    p.add_argument("--format", choices=["hdf5", "pytorch", "both"], default="both", help="dataset files to write")
    p.add_argument("--name", help="batch id (default: the folder's name)")
    p.add_argument("--no-intermediates", action="store_true", help="leave saved intermediates out of the datasets")
    p.add_argument("--no-plots", action="store_true", help="no sweep.png / heatmap.png")
    p.add_argument("--measures", help="comma-separated outcome measures to plot / compare (default: chosen)")
    p.add_argument("--keys", help="comma-separated swept keys for the x axis (and y axis) of the sweep plot")
    p.add_argument("--validate", action="store_true", help="also run the physiology battery on the dataset's config")
    p.add_argument("--plot", metavar="STIM_ID", action="append",
                   help="raster and population-rate plots of one stimulus (repeatable)")
    p.add_argument("--compare", type=Path, metavar="B", nargs="+",
                   help="compare the outcome measures of DIR with sweep folder(s) B; writes compare.csv")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="with --compare: bootstrap 95%% CIs of the difference from N resamples")
    p.add_argument("--alpha", type=float, default=0.05, help="with --compare: family-wise significance level")
    return p


def _fail(msg: str, code: int = 2) -> None:
    print(f"sensoryforge-aggregate: error: {msg}", file=sys.stderr)
    sys.exit(code)


def _load_validate():
    try:
        from sensoryforge import validate as v  # written separately; imported only when asked
    except ModuleNotFoundError as e:
        if e.name in ("sensoryforge.validate",):
            _fail("--validate: the physiology battery (sensoryforge.validate) is not installed")
        raise
    if not hasattr(v, "run_battery"):
        _fail("--validate: sensoryforge.validate has no run_battery(cfg, out_dir)")
    return v


def run_validation(v, meta: dict, out: Path) -> bool:
    from omegaconf import OmegaConf

    if not meta.get("config"):
        raise ConfigError(f"{out}: no config to validate (no finished stimulus)")
    cfg = OmegaConf.create(meta["config"])
    return bool(v.run_battery(cfg, out))


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.out is None and len(args.dirs) > 1:
        p.error("-o/--out is required with several folders")
    if args.bootstrap < 0:
        p.error("--bootstrap: must be >= 0")
    if args.bootstrap and not args.compare:
        p.error("--bootstrap goes with --compare")
    if not 0 < args.alpha < 1:
        p.error("--alpha: must be between 0 and 1")
    out = args.out or args.dirs[0]
    validator = _load_validate() if args.validate else None
    code = 0
    try:
        if args.plot or args.compare:
            if args.plot:
                from sensoryforge import plots

                for f in plots.stimulus_plots(args.dirs, out, args.plot):
                    print(f"wrote {f}")
            if args.compare:
                from sensoryforge import compare

                table, text = compare.compare(
                    args.dirs, args.compare, alpha=args.alpha, bootstrap=args.bootstrap,
                    measures=_csv_list(args.measures),
                )
                path = compare.write(table, Path(out))
                print(text)
                print(f"wrote {path}")
            meta = None
        else:
            meta = aggregate(
                args.dirs, out, args.format, args.name, intermediates=not args.no_intermediates,
                plots=not args.no_plots, measures=_csv_list(args.measures), keys=_csv_list(args.keys),
            )
            print(f"{meta['num_stimuli']} stimuli ({meta['num_failed']} failed) -> {out}: " + ", ".join(meta["files"]))
            if meta["num_failed"]:
                print(f"{meta['num_failed']} failed stimuli (see batch_metadata.json):", file=sys.stderr)
                for f in meta["failed_stimuli"][:10]:
                    print(f"  {f['stimulus_id']}: {f['error']}", file=sys.stderr)
                code = 1
        if validator is not None:
            if meta is None:
                meta = metadata(collect(args.dirs), args.name)
            ok = run_validation(validator, meta, Path(out))
            print(f"validation: {'PASS' if ok else 'FAIL'}")
            if not ok:
                code = 1
    except ConfigError as e:
        _fail(str(e))
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
