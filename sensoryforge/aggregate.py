"""`sensoryforge-aggregate`: job folders -> one dataset (results.h5, results.pt, stimulus_index.json,
batch_metadata.json) and summaries (raw.csv, summary.csv).

It streams: stimuli are read one job folder at a time and written to HDF5 incrementally, so peak
memory does not grow with the sweep (results.pt holds sparse spikes, the only part kept whole).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensoryforge.jobs import JOB_FILE, atomic_write_json, read_job
from sensoryforge.params import ConfigError

POPS = ("sa", "ra", "sa2")


@dataclass
class Item:
    """One finished stimulus: its record in job.json and where its arrays are."""

    id: str  # id in the dataset
    record: dict
    job_dir: Path
    job: dict
    source: str  # original folder / id


def job_dirs(root: Path) -> list[Path]:
    if (root / JOB_FILE).exists():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{JOB_FILE}"))


def collect(dirs: list[Path]) -> tuple[list[Item], dict[str, str], list[str]]:
    """(ok items in dataset order, failed id -> error, swept keys)."""
    items: list[Item] = []
    failed: dict[str, str] = {}
    many = len(dirs) > 1
    for root in dirs:
        if not root.is_dir():
            raise ConfigError(f"{root}: no such folder")
        best: dict[str, tuple[dict, Path, dict]] = {}
        for jd in job_dirs(root):
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
                items.append(Item(sid, rec, jd, job, f"{root.name}/{sid}"))
            else:
                failed[f"{root.name}/{sid}" if many else sid] = rec.get("error", "failed")
    if not items and not failed:
        raise ConfigError(f"{', '.join(map(str, dirs))}: no finished jobs (no */{JOB_FILE}) found")
    if many:  # renumber across folders; `source` keeps the original id
        width = max(4, len(str(len(items) - 1)))
        for i, it in enumerate(items):
            it.id = f"stim_{i:0{width}d}"
    keys: dict[str, set] = {}
    for it in items:
        for k, v in it.record.get("point", {}).items():
            keys.setdefault(k, set()).add(str(v))
    swept = [k for k, v in keys.items() if len(v) > 1]
    return items, failed, swept


def flat_params(it: Item, swept: list[str]) -> dict:
    """The stimulus' flat parameter dict: type, every parameter, seeds, swept values."""
    rec = it.record
    d = {"type": rec["type"], **rec["params"]}
    d.update(seed=rec["seed"], repetition=rec["repetition"], noise_seed=rec["noise_seed"])
    for k in swept:
        if k in rec.get("point", {}) and not k.startswith("stimulus.") and k not in d:
            d[k] = rec["point"][k]
    return d


class SpikeReader:
    """Reads spikes job by job, keeping one npz open at a time."""

    def __init__(self):
        self._dir, self._z = None, None

    def __call__(self, it: Item, name: str = "spikes") -> np.lib.npyio.NpzFile:
        key = (it.job_dir, name)
        if self._dir != key:
            if self._z is not None:
                self._z.close()
            self._z = np.load(it.job_dir / it.job["files"][name])
            self._dir = key
        return self._z

    def raster(self, it: Item, pop: str) -> np.ndarray:
        n, steps = it.job["counts"][pop], it.job["steps"]
        flat = self(it)[f"{it.record['id']}/{pop}"]
        out = np.zeros(steps * n, dtype=bool)
        out[flat] = True
        return out.reshape(steps, n)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _attr(v):
    if v is None:
        return "null"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return v


def write_hdf5(path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool) -> None:
    import h5py

    tmp = _tmp(path)
    read = SpikeReader()
    inter = SpikeReader()
    with h5py.File(tmp, "w") as f:
        m = f.create_group("metadata")
        m.attrs["batch_id"] = meta["batch_id"]
        m.attrs["num_stimuli"] = len(items)
        m.attrs["config"] = json.dumps(meta["config"])
        m.attrs["failed_stimuli"] = json.dumps(meta["failed_stimuli"])
        m.attrs["swept"] = json.dumps(swept)
        m.attrs["dt"] = meta["dt"]
        g = f.create_group("grid")
        g.attrs["size"] = meta["grid"]["size"]
        g.attrs["spacing"] = meta["grid"]["spacing"]
        stim_g, resp_g = f.create_group("stimuli"), f.create_group("responses")
        for it in items:
            s = stim_g.create_group(it.id)
            for k, v in flat_params(it, swept).items():
                s.attrs[k] = _attr(v)
            s.attrs["source"] = it.source
            r = resp_g.create_group(it.id)
            for pop in POPS:
                x = read.raster(it, pop)
                r.create_dataset(
                    f"{pop}_spikes", data=x, chunks=(min(x.shape[0], 1024), max(x.shape[1], 1)) if x.size else None,
                    compression="gzip" if x.size else None, compression_opts=4 if x.size else None,
                )
            if intermediates and "intermediates" in it.job["files"]:
                z = inter(it, "intermediates")
                prefix = f"{it.record['id']}/"
                for key in z.files:
                    if key.startswith(prefix):
                        r.create_dataset(key[len(prefix) :], data=z[key], compression="gzip", compression_opts=4)
    os.replace(tmp, path)


def write_pytorch(path: Path, items: list[Item], swept: list[str], meta: dict) -> None:
    import torch

    read = SpikeReader()
    results = []
    for it in items:
        entry = {}
        for pop in POPS:
            n, steps = it.job["counts"][pop], it.job["steps"]
            flat = torch.from_numpy(read(it)[f"{it.record['id']}/{pop}"].astype(np.int64))
            idx = torch.stack([flat // max(n, 1), flat % max(n, 1)])
            entry[f"{pop}_spikes"] = torch.sparse_coo_tensor(
                idx, torch.ones(flat.numel(), dtype=torch.bool), (steps, n), is_coalesced=True,
                check_invariants=False,
            )
        entry["stimulus_config"] = {"stimulus_id": it.id, **flat_params(it, swept)}
        results.append(entry)
    tmp = _tmp(path)
    torch.save({"metadata": meta, "results": results}, tmp)
    os.replace(tmp, path)


def aggregate(
    dirs: list[Path], out: Path, fmt: str = "both", name: str | None = None, intermediates: bool = True
) -> dict:
    """Build the dataset and summaries of `dirs` in `out`. Returns batch_metadata's dict."""
    t0 = time.perf_counter()
    dirs = [Path(d) for d in dirs]
    out = Path(out)
    items, failed, swept = collect(dirs)
    out.mkdir(parents=True, exist_ok=True)
    first = items[0].job if items else {}
    runtime = sum(
        {str(it.job_dir): it.job.get("runtime_s", 0.0) for it in items}.values()
    )
    meta = {
        "batch_id": name or (dirs[0].name if len(dirs) == 1 else "+".join(d.name for d in dirs)),
        "num_stimuli": len(items),
        "num_failed": len(failed),
        "failed_stimuli": [{"stimulus_id": k, "error": v} for k, v in failed.items()],
        "swept": swept,
        "sources": [str(d.resolve()) for d in dirs],
        "config": first.get("config", {}),
        "dt": first.get("dt"),
        "steps": first.get("steps"),
        "counts": first.get("counts"),
        "grid": first.get("grid", {}),
        "simulation_runtime_s": round(runtime, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    index = {it.id: flat_params(it, swept) for it in items}
    atomic_write_json(out / "stimulus_index.json", index)
    if fmt in ("hdf5", "both"):
        write_hdf5(out / "results.h5", items, swept, meta, intermediates)
    if fmt in ("pytorch", "both"):
        write_pytorch(out / "results.pt", items, swept, meta)
    from sensoryforge import summarize

    summarize.write_tables(out, items, swept)
    meta["aggregation_runtime_s"] = round(time.perf_counter() - t0, 3)
    atomic_write_json(out / "batch_metadata.json", meta)
    return meta


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="sensoryforge-aggregate", description="Collect sweep folders into one dataset and summary."
    )
    p.add_argument("dirs", nargs="+", type=Path, help="sweep folders (or single-run folders)")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: the only DIR)")
    p.add_argument("--format", choices=["hdf5", "pytorch", "both"], default="both")
    p.add_argument("--name", help="batch id (default: the folder's name)")
    p.add_argument("--validate", action="store_true", help="also run the physiology battery on the config")
    args = p.parse_args(argv)
    if args.out is None and len(args.dirs) > 1:
        p.error("-o/--out is required with several folders")
    try:
        meta = aggregate(args.dirs, args.out or args.dirs[0], args.format, args.name)
    except ConfigError as e:
        print(f"sensoryforge-aggregate: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(
        f"{meta['num_stimuli']} stimuli ({meta['num_failed']} failed) -> {args.out or args.dirs[0]}"
    )
    if meta["num_failed"]:
        sys.exit(1)
