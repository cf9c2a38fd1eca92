"""Job folders: the format one Hydra job writes, and the one reader of it.

A job folder holds
  spikes.npz         per stimulus and population, the flat spike indices t * N + n (core.response)
  series.npz         the outcome series per stimulus, and their time axis `times` (ms)
  intermediates.npz  with pipeline.save_intermediates: drive, membrane potential, stimulus factors
  job.json           written last and atomically: it marks the job finished and describes every
                     stimulus (id, type, parameters, sweep point, seeds, fingerprint, measures,
                     status and error)
A job that ended without its job.json (killed, lost on a cluster) gets one from the sweeper that
lists its stimuli as failed, with the reason (`write_lost`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sensoryforge.core.params import ConfigError
from sensoryforge.core.response import decode
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.dataset.files import write_json, write_npz

JOB_FILE = "job.json"
FORMAT = "sensoryforge-job/1"
ARRAY_FILES = {"spikes": "spikes.npz", "series": "series.npz", "intermediates": "intermediates.npz"}


def write_arrays(out_dir: Path, arrays: dict[str, dict[str, np.ndarray] | None]) -> dict[str, str]:
    """The job's npz files (ARRAY_FILES kind -> {name: array}; None = not saved); returns
    job.json's `files` entry. Written before job.json."""
    files = {}
    for kind, named in arrays.items():
        if named is not None:
            write_npz(out_dir / ARRAY_FILES[kind], named)
            files[kind] = ARRAY_FILES[kind]
    return files


def write_record(out_dir: Path, job: dict) -> dict:
    """job.json, last: it marks the job finished. Returns its dict."""
    job = {"format": FORMAT, **job}
    write_json(out_dir / JOB_FILE, job)
    return job


def write_lost(job_dir: Path, stimuli: list[dict], reason: str) -> None:
    """The record of a job that ended without writing its results: every stimulus failed."""
    job_dir.mkdir(parents=True, exist_ok=True)
    write_record(job_dir, {"lost": True, "stimuli": [{**s, "status": "failed", "error": reason} for s in stimuli]})


def read_job(job_dir: Path) -> dict | None:
    """job.json of a finished job folder, or None if the job did not finish."""
    try:
        return json.loads((job_dir / JOB_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def job_dirs(root: Path) -> list[Path]:
    """The finished job folders of a sweep folder (or the folder itself if it is a single run)."""
    if (root / JOB_FILE).exists():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{JOB_FILE}"))


@dataclass
class Record:
    """One stimulus as a finished job folder recorded it."""

    record: dict  # the stimulus' entry in job.json
    job_dir: Path
    job: dict  # the whole job.json

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"


def read_records(root: Path) -> dict[str, Record]:
    """stimulus id -> its record in the finished job folders of `root`, in id order. A stimulus
    recorded more than once (a resumed or repaired sweep) gives its first successful record in
    folder order, else its first failed one."""
    best: dict[str, Record] = {}
    for jd in job_dirs(root):
        job = read_job(jd)
        if job is None:
            continue
        if "counts" in job:  # a folder from before a population existed had none of it
            job["counts"] = {**{p: 0 for p in POPULATIONS}, **job["counts"]}
        for rec in job.get("stimuli", []):
            prev = best.get(rec["id"])
            if prev is None or (not prev.ok and rec["status"] == "ok"):
                best[rec["id"]] = Record(rec, jd, job)
    return dict(sorted(best.items()))


class NpzReader:
    """Reads the job folders' npz files of one kind (ARRAY_FILES), keeping one open at a time
    (records come job by job)."""

    def __init__(self, kind: str = "spikes"):
        self.kind = kind
        self._key: Path | None = None
        self._path: Path | None = None
        self._z = None

    def __call__(self, rec: Record):
        if self._key != rec.job_dir:
            self.close()
            path = rec.job_dir / rec.job.get("files", {}).get(self.kind, ARRAY_FILES[self.kind])
            try:
                self._z = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: cannot read it ({type(e).__name__}: {e}); re-run that job") from None
            self._key, self._path = rec.job_dir, path
        return self._z

    def get(self, rec: Record, name: str, empty: bool = False) -> np.ndarray:
        """The array `name`; with empty=True, a missing one is an empty int32 array."""
        z = self(rec)
        try:
            return z[name]
        except KeyError:
            if empty:
                return np.zeros(0, np.int32)
            raise ConfigError(f"{self._path}: no array '{name}'; re-run that job") from None

    def close(self) -> None:
        if self._z is not None:
            self._z.close()
        self._z, self._key = None, None

    def flat(self, rec: Record, pop: str) -> np.ndarray:
        """The flat spike indices of one population of a stimulus (none for a population of no
        afferents that the job folder predates)."""
        return self.get(rec, f"{rec.record['id']}/{pop}", empty=rec.job["counts"].get(pop) == 0)

    def raster(self, rec: Record, pop: str) -> np.ndarray:
        return decode(self.flat(rec, pop), rec.job["steps"], rec.job["counts"][pop])
