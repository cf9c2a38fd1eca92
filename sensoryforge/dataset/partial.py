"""A running job's saved segments: what a kill, a preemption or a time limit cannot take back.

A job of many stimuli writes its folder (npz files, then job.json) when it ends. While it runs it
also saves, every SEGMENT_S seconds, the stimuli simulated since the last save as one segment:
`partial/seg_NNNN/`, itself a job folder (dataset/jobs.py) of those stimuli, written the same
atomic way. So

- a job started again in the same folder (Slurm's requeue after a preemption or a time limit)
  takes the segments' stimuli whose fingerprints match instead of simulating them again (`restore`),
  and starts from its first unsaved stimulus;
- a sweep resumed after its submitter was killed first finishes each job folder that was cut
  short (`salvage`): the segments become the folder's files and job.json (the stimuli never saved
  are listed as lost), and the usual resume skips what they hold.

The job's own job.json, written when it ends, holds every stimulus; the segments are then removed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from sensoryforge.dataset.files import Npz, NpzError
from sensoryforge.dataset.jobs import (
    ARRAY_FILES,
    JOB_FILE,
    Plan,
    read_folder,
    write_arrays,
    write_record,
)

PARTIAL = "partial"


def segment_s() -> float:
    """Seconds between two saves of a running job (SENSORYFORGE_SEGMENT_S, default 20; 0: every batch)."""
    try:
        return max(0.0, float(os.environ.get("SENSORYFORGE_SEGMENT_S", "20")))
    except ValueError:
        return 20.0


def _segments(job_dir: Path) -> list[Path]:
    return sorted(p.parent for p in (job_dir / PARTIAL).glob(f"seg_*/{JOB_FILE}"))


def next_segment(job_dir: Path) -> int:
    """The number of the next segment (after any a previous run of the job saved)."""
    nums = [int(p.name[4:]) for p in (job_dir / PARTIAL).glob("seg_*") if p.name[4:].isdigit()]
    return max(nums, default=-1) + 1


def write_segment(job_dir: Path, number: int, job: dict, records: list[dict],
                  arrays: dict[str, dict[str, np.ndarray] | None]) -> None:
    """Saves `records` (the stimuli of one segment) and their arrays as partial/seg_NNNN."""
    seg = job_dir / PARTIAL / f"seg_{number:04d}"
    seg.mkdir(parents=True, exist_ok=True)
    files = write_arrays(seg, arrays)
    write_record(seg, {**job, "files": files, "stimuli": records})


def owned(named: dict[str, np.ndarray], ids: set[str]) -> dict[str, np.ndarray]:
    """The arrays of stimuli `ids` in a job's {name: array} (names `<id>/<what>`), with the shared
    ones (no id: the series' `times`)."""
    return {k: v for k, v in named.items() if "/" not in k or k.split("/", 1)[0] in ids}


def _saved(job_dir: Path):
    """(segment folder, its ok records) of each segment with any; the segments' files are checked
    (dataset/jobs.py read_folder): a damaged one gives nothing."""
    for seg in _segments(job_dir):
        found = [r for r in read_folder(seg, Plan(None)) if r.ok]
        if found:
            yield seg, found


def saved_ids(job_dir: Path) -> set[str]:
    """The stimuli the segments of a job folder hold (their arrays unread)."""
    return {r.record["id"] for _, found in _saved(job_dir) for r in found}


def restore(job_dir: Path) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]], dict]:
    """The saved stimuli of a job folder's segments: (ok records by id, arrays by kind ({name:
    array}, the series' `times` included), the job fields of the first segment). A damaged
    segment gives nothing (its stimuli are simulated again)."""
    records: dict[str, dict] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    first: dict = {}
    for seg, found in _saved(job_dir):
        job = found[0].job
        first = first or {k: v for k, v in job.items() if k not in ("stimuli", "files", "format")}
        ids = {r.record["id"] for r in found}
        try:
            for kind, name in job["files"].items():
                z = Npz(seg / name)
                try:
                    arrays.setdefault(kind, {}).update(owned({key: z[key] for key in z.files}, ids))
                finally:
                    z.close()
        except (OSError, NpzError):
            continue
        records.update({r.record["id"]: r.record for r in found})
    return records, arrays, first


def salvage(sweep_dir: Path) -> int:
    """Finishes every job folder of `sweep_dir` that was cut short with saved segments (no job.json,
    or the sweeper's record of a lost job): its segments become its files and job.json, the
    stimuli it never saved are listed as lost. Returns the number of stimuli kept. Run it only
    while no job writes there (under the sweep's lock, before planning a resume)."""
    kept = 0
    for partial in sorted(sweep_dir.glob(f"*/{PARTIAL}")):
        job_dir = partial.parent
        lost: list[dict] = []
        if (job_dir / JOB_FILE).exists():
            try:
                job = json.loads((job_dir / JOB_FILE).read_bytes())
            except (OSError, ValueError):  # a damaged record is the reader's to report
                continue
            if not (isinstance(job, dict) and job.get("lost")):
                shutil.rmtree(partial, ignore_errors=True)  # the job finished: its segments are spent
                continue
            lost = [r for r in job.get("stimuli", []) if isinstance(r, dict)]
        records, arrays, first = restore(job_dir)
        if not records:
            continue
        stimuli = list(records.values()) + [{**r, "lost": True} for r in lost if r.get("id") not in records]
        files = write_arrays(job_dir, {k: arrays.get(k) for k in ARRAY_FILES if k in arrays})
        write_record(job_dir, {**first, "salvaged": True, "files": files, "stimuli": stimuli})
        shutil.rmtree(partial, ignore_errors=True)
        kept += len(records)
    return kept
