"""`aggregate`: job folders -> one dataset and its summaries, in an output folder (the sweep folder
by default):
  results.h5           HDF5 (hdf5.py), streamed stimulus by stimulus
  results.pt           {'metadata', 'results': [...]} with sparse COO bool spikes (pytorch.py)
  results.nwb          with fmt="nwb" (its own choice; "both" is hdf5 + pytorch): trials = stimuli,
                       units = afferents, spike times on the trials' timeline (nwb.py)
  stimulus_index.json  stim_NNNN -> flat parameter dict
  raw.csv, summary.csv, consensus.csv   see tables.py
  sweep.png / heatmap.png               see plots.py
  batch_metadata.json  written last: batch id, counts, the config, runtimes, and failed_stimuli:
                       [{stimulus_id, error, reason}] for every planned stimulus not in the dataset
                       (reason: failed, lost, missing or damaged; collection.py)

Every job folder is checked before anything is written (jobs.read_folder): damage makes its
stimuli "damaged", never a half-written dataset. `problem_lines` says what is not in the dataset in
one line per reason, for this command and the sweeper.

Memory does not grow with the sweep for HDF5: one job folder's arrays are open at a time and one
stimulus' rasters are in memory at a time. results.pt keeps only sparse spike indices (int64
COO: 17 bytes per spike), the one part that grows with the number of spikes.

Every file is written atomically (files.py), so a file that exists is whole. Aggregating again into
the same folder replaces the outputs; those of the earlier aggregation that this one does not write
(a plot of another kind, results.pt after --format hdf5, summary.csv when no stimulus succeeded)
are removed, so the folder never mixes two aggregations. The input folders only need their job
folders (job.json + npz): no absolute paths are stored in them, so a sweep copied from a cluster
aggregates the same anywhere.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.text import compact_ids
from sensoryforge.dataset.collection import (
    REASONS,
    Collection,
    Item,
    collect,
    flat_params,
    labels,
    point_keys,
)
from sensoryforge.dataset.files import write_json
from sensoryforge.dataset.hdf5 import LAYOUTS, H5Writer
from sensoryforge.dataset.jobs import NpzReader
from sensoryforge.dataset.pytorch import PT_BYTES_PER_SPIKE, PT_WARN_MB, PtWriter

DATASET_FORMAT = "sensoryforge-dataset/1"
FORMATS = ("hdf5", "pytorch", "both", "nwb")


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
    counts = first.get("counts") or {p: 0 for p in POPULATIONS}
    return {
        "format": DATASET_FORMAT,
        "batch_id": name or (dirs[0].resolve().name if len(dirs) == 1 else "+".join(labels(dirs))),
        "num_stimuli": len(items),
        "num_planned": col.planned,
        "num_failed": len(col.failed),
        "failed_stimuli": [{"stimulus_id": k, "error": v, "reason": col.reasons.get(k, "failed")}
                           for k, v in col.failed.items()],
        "swept": col.swept,
        "sources": labels(dirs),
        "config": first.get("config", {}),
        # > 1 when a job-level key (neurons.*, pipeline.*) was swept: `config` is the first job's
        "num_configs": len(configs),
        "populations": list(POPULATIONS),
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
    layout: str = "groups",
    progress: bool = False,
) -> dict:
    """Build the dataset, summaries and plots of `dirs` in `out`. Returns batch_metadata's dict.

    fmt: hdf5, pytorch, both (the two) or nwb (results.nwb alone). intermediates: copy saved
    intermediates into the datasets. plots: write sweep.png / heatmap.png. measures / keys: what
    the plots show (default: chosen).
    log: a print-like function for messages (default: stderr). layout: results.h5's layout
    (hdf5.LAYOUTS: groups, the documented one, or ragged). progress: a bar (or plain periodic
    lines) over the stimuli as they are written.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt}: must be one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise ConfigError(f"layout={layout}: must be one of {', '.join(LAYOUTS)}")
    say = log or (lambda msg: print(msg, file=sys.stderr))
    t0 = time.perf_counter()
    out = Path(out)
    col = collect([Path(d) for d in dirs])  # every folder checked: nothing is written before
    timing = {"collect": time.perf_counter() - t0}
    for note in col.notes:
        say(note)
    items, swept = col.items, col.swept
    if plots and measures and items:  # a name that matches no measure: refused before any write
        from sensoryforge.core.outcome_names import MEASURE_NAME, resolve_measures

        resolve_measures(measures, dict.fromkeys(
            k for it in items for k in it.record.get("measures", {}) if MEASURE_NAME.match(k)))
    out.mkdir(parents=True, exist_ok=True)
    meta = metadata(col, name)
    files = ["stimulus_index.json"]
    with _timed(timing, "index"):
        write_json(out / "stimulus_index.json", {it.id: flat_params(it, swept) for it in items})
    from sensoryforge.dataset.tables import Consensus, group_keys, write_tables  # pandas, now

    pt = None
    if fmt in ("pytorch", "both"):
        n_spikes = sum(sum(it.record.get("spike_counts", {}).values()) for it in items)
        pt_mb = PT_BYTES_PER_SPIKE * n_spikes / 2**20
        if pt_mb > PT_WARN_MB:
            say(f"results.pt: {n_spikes} spikes = {pt_mb:.0f} MB of sparse indices, held in memory while "
                "it is written and when it is loaded; results.h5 (--format hdf5) streams instead")
        pt = PtWriter(out / "results.pt", items, swept, meta, intermediates)
    nwb = None
    if fmt == "nwb":
        from sensoryforge.dataset.nwb import NwbWriter  # pynwb: only when NWB is written

        with _timed(timing, "nwb"):
            nwb = NwbWriter(out / "results.nwb", items, swept, meta)
    consensus = Consensus(group_keys(items, swept))
    if fmt in ("hdf5", "both"):
        with _timed(timing, "hdf5"):
            h5 = H5Writer(out / "results.h5", items, swept, meta, intermediates, layout)
        try:
            one_pass(items, [h5, pt], consensus, intermediates, timing, progress)
        except BaseException:
            h5.__exit__(*sys.exc_info())  # no results.h5 (atomic): the error goes on
            raise
        with _timed(timing, "hdf5"):
            h5.__exit__(None, None, None)
        files.append("results.h5")
    else:
        one_pass(items, [pt, nwb], consensus, intermediates, timing, progress)
    if nwb is not None:
        with _timed(timing, "nwb"):
            nwb.write()
            del nwb
        files.append("results.nwb")
    if pt is not None:
        with _timed(timing, "pytorch"):
            meta["intermediates"] = pt.write()
            del pt
            release_memory()  # the sparse tensors are gone: give their heap back before the tables
        files.append("results.pt")
    with _timed(timing, "tables"):
        tables = write_tables(out, items, swept, consensus)
    files += tables.files
    if plots and items:
        from sensoryforge.dataset.plots import sweep_plots  # matplotlib: imported when needed

        try:
            with _timed(timing, "plots"):
                written, notes = sweep_plots(out, tables, point_keys(swept), meta, measures, keys)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - a plot must not cost the dataset; said loudly
            written, notes = [], [f"plots failed: {type(e).__name__}: {e}"]
        files += written
        for n in notes:
            say(n)
    meta["files"] = files + ["batch_metadata.json"]
    meta["aggregation_runtime_s"] = round(time.perf_counter() - t0, 3)
    # where the time went (s): collect (reading and checking the job folders), index
    # (stimulus_index.json), read (the arrays, in the one pass), hdf5, pytorch, nwb, tables, plots
    meta["aggregation_timing_s"] = {k: round(v, 4) for k, v in timing.items()}
    stale = [f for f in previous_files(out) if f not in meta["files"]]
    write_json(out / "batch_metadata.json", meta)
    for f in stale:  # an earlier aggregation's outputs that this one did not rewrite
        (out / f).unlink(missing_ok=True)
    return meta


@contextlib.contextmanager
def _timed(timing: dict, part: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        timing[part] = timing.get(part, 0.0) + time.perf_counter() - t


GROUP = 256  # stimuli handed to the writers at a time: one job's, at most this many


def one_pass(items: list[Item], writers: list, consensus, intermediates: bool, timing: dict,
             progress: bool = False) -> None:
    """The one read of the job folders' arrays: each job's spike indices, series and (when a
    writer copies them) intermediates go to every writer and to the consensus table."""
    from sensoryforge.dataset.progress import Bar

    writers = [w for w in writers if w is not None]
    bar = Bar(len(items), "aggregate") if progress else None
    spikes, series, inter = NpzReader("spikes"), NpzReader("series"), NpzReader("intermediates")
    try:
        start = 0
        while start < len(items):
            stop = start + 1
            while stop < len(items) and stop - start < GROUP and items[stop].job_dir == items[start].job_dir:
                stop += 1
            group = items[start:stop]
            start = stop
            with _timed(timing, "read"):
                entries = [(it, {p: spikes.flat(it, p) for p in POPULATIONS}) for it in group]
                z = inter(group[0]) if intermediates and "intermediates" in group[0].job["files"] else None
            for w in writers:
                with _timed(timing, w.part):
                    w.add(entries, z)
            with _timed(timing, "tables"):
                for it in group:
                    consensus.add(it, series)
            if bar:
                bar.update(len(group))
    finally:
        if bar:
            bar.close()
        spikes.close()
        series.close()
        inter.close()


def previous_files(out: Path) -> list[str]:
    """Files an earlier aggregation into `out` listed as its own (plain names only)."""
    try:
        files = json.loads((out / "batch_metadata.json").read_text()).get("files", [])
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str) and f == Path(f).name and not f.startswith(".")]


# -- what is not in the dataset, for people ----------------------------------------------------


def _ids(ids: list[str]) -> str:
    """compact_ids, per folder when ids are "<folder>/<id>" (several folders aggregated)."""
    groups: dict[str, list[str]] = {}
    for i in ids:
        folder, _, sid = i.rpartition("/")
        groups.setdefault(folder, []).append(sid)
    return "; ".join(f"{folder}/{compact_ids(g)}" if folder else compact_ids(g) for folder, g in groups.items())


def _detail(reason: str, error: str) -> str:
    line = error.strip().splitlines()[0] if error.strip() else reason
    line = line.removeprefix(f"{reason}: ")  # the line starts with the reason already
    return line if len(line) <= 160 else line[:157] + "..."


def problem_lines(failed: list[dict]) -> list[str]:
    """One line per reason for batch_metadata's failed_stimuli ([{stimulus_id, error, reason}]):
    `damaged 19: stim_0000..stim_0018 (stim_0000-0018/spikes.npz: not a zip file (truncated?))`,
    `missing 19: stim_0038..stim_0056`; the distinct errors of a reason, two at most, in brackets."""
    by_reason: dict[str, list[dict]] = {}
    for f in failed:
        by_reason.setdefault(f.get("reason") or "failed", []).append(f)
    order = sorted(by_reason, key=lambda r: REASONS.index(r) if r in REASONS else len(REASONS))
    lines = []
    for reason in order:
        entries = by_reason[reason]
        line = f"{reason} {len(entries)}: {_ids([f['stimulus_id'] for f in entries])}"
        errors = list(dict.fromkeys(_detail(reason, str(f.get("error", ""))) for f in entries))
        if reason != "missing" and errors:
            more = f"; and {len(errors) - 2} other errors" if len(errors) > 2 else ""
            line += f" ({'; '.join(errors[:2])}{more})"
        lines.append(line)
    return lines
