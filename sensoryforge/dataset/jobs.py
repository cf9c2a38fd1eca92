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

Reading a job folder checks it (one pass: job.json parsed and its shape checked, every npz it lists
opened and CRC-checked, the arrays of each ok stimulus looked up by name), so damage after the job
finished (a truncated, deleted or corrupt file) never raises: the stimuli it touches come back as
not ok, with status "damaged" and an error naming the file and what is wrong. A resume redoes them
and the aggregator lists them. Which stimuli a folder with an unreadable job.json held is taken from
the sweep's plan (sweep_plan.json: its chunk folder -> ids), else from the folder's name
(stim_0038-0056, stim_0005, with a .r2 suffix on a re-run) within the planned ids.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sensoryforge.core.params import ConfigError
from sensoryforge.core.response import decode
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.dataset.files import Npz, NpzError, write_json, write_npz

JOB_FILE = "job.json"
PLAN_FILE = "sweep_plan.json"  # the sweep's plan (sweep/plan.py writes it): its stimuli and chunks
PLAN_FORMAT = "sensoryforge-plan/2"  # 1: every stimulus listed in PLAN_FILE (still read)
PLAN_FINGERPRINTS = "sweep_plan.fingerprints"  # format 2: each stimulus' fingerprint, in id order
_FP_BYTES = 8  # per stimulus: the first 8 bytes of its sha1 (a fingerprint is their 16 hex digits)
FORMAT = "sensoryforge-job/1"
ARRAY_FILES = {"spikes": "spikes.npz", "series": "series.npz", "intermediates": "intermediates.npz"}
# (zlib level, smallest array deflated) per file (files.write_npz), by measurement on default
# sweeps: deflate costs ~25 us per array, a dozen arrays per stimulus; the float series gain 4x
# however short, spike indices 20% when a few hundred per stimulus, 45% from a thousand on
LEVELS = {"spikes": (1, 4096), "series": (1, 0), "intermediates": (1, 0)}


def write_arrays(out_dir: Path, arrays: dict[str, dict[str, np.ndarray] | None]) -> dict[str, str]:
    """The job's npz files (ARRAY_FILES kind -> {name: array}; None = not saved); returns
    job.json's `files` entry. Written before job.json."""
    files = {}
    for kind, named in arrays.items():
        if named is not None:
            write_npz(out_dir / ARRAY_FILES[kind], named, *LEVELS[kind])
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


class Damaged(Exception):
    """A file of a job folder that cannot be read as it was written; the message says why."""


def _load_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise Damaged(f"cannot read it ({e.strerror or e})") from None
    if not data.strip():
        raise Damaged("empty file")
    try:
        return json.loads(data)
    except json.JSONDecodeError as e:
        # the text ends where more was expected (or inside a string): most likely cut short
        cut = e.pos >= len(e.doc.rstrip()) or e.msg.startswith("Unterminated")
        raise Damaged("not valid JSON" + (" (truncated?)" if cut else "")) from None
    except (ValueError, RecursionError):  # not UTF-8 (binary), absurd nesting
        raise Damaged("not valid JSON") from None


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


def _is(v: Any, kind: type | tuple) -> bool:
    return isinstance(v, kind) and not isinstance(v, bool)


def check_job(job: Any) -> None:
    """Raises Damaged unless `job` has what the readers take from job.json."""
    if not isinstance(job, dict):
        raise Damaged(f"not a JSON object but {_JSON_TYPES.get(type(job), type(job).__name__)}")
    if "format" not in job:
        raise Damaged("no 'format': not a job record" + (" (an empty object)" if not job else ""))
    if job["format"] != FORMAT:
        raise Damaged(f"'format' is {job['format']!r}, not {FORMAT!r}")
    stimuli = job.get("stimuli")
    if not isinstance(stimuli, list):
        raise Damaged("no 'stimuli' list")
    for i, rec in enumerate(stimuli):
        if not (isinstance(rec, dict) and _is(rec.get("id"), str) and _is(rec.get("status"), str)):
            raise Damaged(f"stimuli[{i}] is not an object with an 'id' and a 'status'")
    if job.get("lost"):  # the sweeper's record of a job without results: nothing else in it
        if any(rec["status"] == "ok" for rec in stimuli):
            raise Damaged("a record of a lost job lists a stimulus as ok")
        return
    for key, kind, what in (("steps", int, "an integer"), ("dt", (int, float), "a number"),
                            ("counts", dict, "an object"), ("files", dict, "an object"),
                            ("config", dict, "an object")):
        if not _is(job.get(key), kind):
            raise Damaged(f"'{key}' is missing or not {what}")
    if not all(_is(n, int) and n >= 0 for n in job["counts"].values()):
        raise Damaged("'counts' holds something other than afferent counts")
    if not all(_is(f, str) and f == Path(f).name and f not in ("", ".", "..") for f in job["files"].values()):
        raise Damaged("'files' holds something other than file names in the folder")
    if "series" in job["files"]:
        outcome = job["config"].get("outcome")
        series = outcome.get("series") if isinstance(outcome, dict) else None
        if not (isinstance(series, list) and all(_is(x, str) for x in series)):
            raise Damaged("'config.outcome.series' is missing or not a list of names")


# what the readers take from an ok stimulus' record (collection.flat_params, tables.raw_table)
_RECORD_KEYS = {"type": str, "params": dict, "seed": int, "repetition": int, "noise_seed": int}
_RECORD_OPTIONAL = ("point", "measures", "spike_counts")


def _record_problem(rec: dict) -> str | None:
    for key, kind in _RECORD_KEYS.items():
        if not _is(rec.get(key), kind):
            return f"{rec['id']}: '{key}' is missing or of the wrong type"
    for key in _RECORD_OPTIONAL:
        if key in rec and not isinstance(rec[key], dict):
            return f"{rec['id']}: '{key}' is not an object"
    return None


def npz_names(path: Path) -> set[str]:
    """The array names of an intact npz file (every member read and its CRC checked, from one read
    of the file: files.Npz); Damaged if it is missing, not a zip file or corrupt."""
    try:
        z = Npz(path)
        z.check()
    except NpzError as e:
        raise Damaged(str(e)) from None
    names = set(z.files)
    z.close()
    return names


def _needed(kind: str, job: dict, sid: str) -> list[str]:
    """The arrays an ok stimulus must have in the job's npz file of `kind`."""
    if kind == "spikes":
        return [f"{sid}/{p}" for p in POPULATIONS if job["counts"].get(p, 0) > 0]
    if kind == "series":
        return ["times", *(f"{sid}/{s}" for s in job["config"]["outcome"]["series"])]
    return []  # intermediates: whole and intact is enough


def array_problems(job_dir: Path, job: dict) -> dict[str, str]:
    """Stimulus id -> what is wrong with its arrays or record, for the ok stimuli of a checked
    job.json (a bad npz touches all of them, a missing array one)."""
    ok = [r for r in job["stimuli"] if r["status"] == "ok"]
    problems: dict[str, str] = {}
    for rec in ok:
        p = _record_problem(rec)
        if p:
            problems[rec["id"]] = f"{job_dir.name}/{JOB_FILE}: {p}"
    if not ok:
        return problems
    files = {"spikes": ARRAY_FILES["spikes"], **job["files"]}  # the readers' default for spikes
    for kind, name in files.items():
        where = f"{job_dir.name}/{name}"
        try:
            names = npz_names(job_dir / name)
        except Damaged as e:
            for rec in ok:
                problems.setdefault(rec["id"], f"{where}: {e}")
            continue
        for rec in ok:
            lacking = next((n for n in _needed(kind, job, rec["id"]) if n not in names), None)
            if lacking is not None:
                problems.setdefault(rec["id"], f"{where}: no array {lacking}")
    return problems


def job_dirs(root: Path) -> list[Path]:
    """The finished job folders of a sweep folder (or the folder itself if it is a single run)."""
    if (root / JOB_FILE).exists():
        return [root]
    return sorted(p.parent for p in root.glob(f"*/{JOB_FILE}"))


class Plan:
    """The sweep's plan (sweep/plan.py writes it), read defensively: the planned ids in order, the
    latest run's chunk folder -> its ids, and for a job the entries of its chunk (id, per-stimulus
    values, sweep point, fingerprint). `ids` is None when there is no usable plan; `note` says why.

    Format 2 stores nothing per stimulus in PLAN_FILE: the sweep's blocks of axes (a key, its role
    and its values, in Hydra's order, the last axis varying fastest) number the stimuli, a chunk is
    ranges of those numbers, and the fingerprints are PLAN_FINGERPRINTS (_FP_BYTES per stimulus, in
    id order). So a job reads the header and its own slice, whatever the size of the sweep. Axis
    roles: "stimulus" (a per-stimulus value and part of the point), "job" (composed into the job's
    config; part of the point), "switch" (composed, no part of the point), "skip" (neither).
    Format 1 listed every stimulus."""

    def __init__(self, ids: list[str] | None, chunks: dict[str, list[str]] | None = None, note: str = "",
                 entries: dict[str, dict] | None = None):
        """A plan that lists its stimuli (format 1), or none (ids None, `note` says why)."""
        self._ids, self._chunks, self.note = ids, chunks or {}, note
        self._entries = entries or {}  # format 1: id -> its entry
        self._ranges: dict[str, list[list[int]]] | None = None  # format 2: chunk -> [start, stop)s
        self.header: dict = {}
        self.started = 0.0
        self.root: Path | None = None
        self._fingerprints: bytes | None = None

    @classmethod
    def numbered(cls, header: dict, root: Path | None = None, fingerprints: bytes | None = None) -> Plan:
        """A format-2 plan from its header (as in PLAN_FILE); the fingerprints from `fingerprints`,
        else from root's PLAN_FINGERPRINTS when a chunk's entries are asked for."""
        plan = cls(None)
        plan.header, plan.root, plan._fingerprints = header, root, fingerprints
        plan.started = header.get("started", 0.0)
        plan._n, plan._width = header["n_stimuli"], header["width"]
        plan._ranges = header.get("chunks") or {}
        plan._starts, start = [], 0
        for block in header.get("blocks") or []:
            plan._starts.append(start)
            start += math.prod(len(a["values"]) for a in block["axes"])
        return plan

    @property
    def _numbered(self) -> bool:
        return self._ranges is not None

    @property
    def ids(self) -> list[str] | None:
        if self._ids is None and self._numbered:
            self._ids = [self.id(i) for i in range(self._n)]
        return self._ids

    @property
    def chunks(self) -> dict[str, list[str]]:
        if self._numbered and not self._chunks:
            self._chunks = {name: [self.id(i) for lo, hi in rs for i in range(lo, hi)]
                            for name, rs in self._ranges.items()}
        return self._chunks

    @property
    def n_chunks(self) -> int:
        return len(self._ranges if self._numbered else self._chunks)

    def id(self, i: int) -> str:
        return f"stim_{i:0{self._width}d}"

    def _axes(self, i: int) -> list[tuple[dict, int]]:
        """(axis, index of its value) for stimulus number i of a format-2 plan."""
        from bisect import bisect_right

        b = bisect_right(self._starts, i) - 1
        rest, out = i - self._starts[b], []
        for axis in reversed(self.header["blocks"][b]["axes"]):
            rest, j = divmod(rest, len(axis["values"]))
            out.append((axis, j))
        return out[::-1]

    def point(self, i: int) -> dict[str, Any]:
        """Every swept or overridden key of stimulus number i -> its value (parsed)."""
        return {a["key"]: a["values"][j] for a, j in self._axes(i) if a["role"] in ("stimulus", "job")}

    def values(self, i: int) -> dict[str, Any]:
        """Its per-stimulus values (stimulus.*, seed, repetition), as parsed: the job types them."""
        return {a["key"]: a["values"][j] for a, j in self._axes(i) if a["role"] == "stimulus"}

    def fingerprints(self, start: int, stop: int) -> list[str]:
        """The fingerprints of stimuli start..stop-1 (format 2): one read of their slice."""
        size = (stop - start) * _FP_BYTES
        if self._fingerprints is not None:
            data = self._fingerprints[start * _FP_BYTES : stop * _FP_BYTES]
        elif self.root is None:
            raise Damaged(f"{PLAN_FINGERPRINTS}: not made yet")
        else:
            try:
                with open(Path(self.root) / PLAN_FINGERPRINTS, "rb") as f:
                    f.seek(start * _FP_BYTES)
                    data = f.read(size)
            except OSError as e:
                raise Damaged(f"{PLAN_FINGERPRINTS}: cannot read it ({e.strerror or e})") from None
        if len(data) != size:
            raise Damaged(f"{PLAN_FINGERPRINTS}: shorter than the plan's {self._n} stimuli (truncated?)")
        return [data[k : k + _FP_BYTES].hex() for k in range(0, size, _FP_BYTES)]

    def entries(self, chunk: str) -> list[dict]:
        """The entries of one chunk's stimuli, in order; Damaged if the plan cannot say."""
        if not self._numbered:  # format 1, or no usable plan
            if self._ids is None:
                raise Damaged(self.note)
            if chunk not in self._chunks:
                raise Damaged(f"{PLAN_FILE}: no chunk {chunk}")
            return [self._entries[sid] for sid in self._chunks[chunk]]
        if chunk not in self._ranges:
            raise Damaged(f"{PLAN_FILE}: no chunk {chunk}")
        if not self._starts:
            raise Damaged(f"{PLAN_FILE}: no valid 'blocks'")
        out = []
        for lo, hi in self._ranges[chunk]:
            for i, fp in zip(range(lo, hi), self.fingerprints(lo, hi)):
                out.append({"id": self.id(i), "values": self.values(i), "point": self.point(i), "fingerprint": fp})
        return out


_AXIS_ROLES = ("stimulus", "job", "switch", "skip")


def _numbered_header(plan: dict) -> str | None:
    """What is wrong with a format-2 header, or None. Blocks that do not add up to n_stimuli are
    dropped (the ids are still good: aggregation needs no more)."""
    n, width = plan.get("n_stimuli"), plan.get("width")
    if not (_is(n, int) and n >= 0 and _is(width, int) and width >= 1):
        return f"{PLAN_FILE}: no valid 'n_stimuli' and 'width'"
    blocks = plan.get("blocks")
    good = isinstance(blocks, list) and all(
        isinstance(b, dict) and isinstance(b.get("axes"), list) and all(
            isinstance(a, dict) and _is(a.get("key"), str) and a.get("role") in _AXIS_ROLES
            and isinstance(a.get("values"), list) and a["values"] for a in b["axes"])
        for b in blocks)
    if not good or sum(math.prod(len(a["values"]) for a in b["axes"]) for b in blocks) != n:
        plan["blocks"] = []
    chunks = plan.get("chunks")
    if not (isinstance(chunks, dict) and all(
            isinstance(rs, list) and all(isinstance(r, list) and len(r) == 2 and all(_is(x, int) for x in r)
                                         and 0 <= r[0] < r[1] <= n for r in rs)
            for rs in chunks.values())):
        plan["chunks"] = {}  # the ids are still good; damaged folders fall back on their names
    return None


def read_plan(root: Path) -> Plan:
    """The sweep folder's plan, of either format; never raises (see Plan.note)."""
    try:
        plan = _load_json(root / PLAN_FILE)
    except Damaged as e:
        missing = not (root / PLAN_FILE).exists()
        return Plan(None, {}, f"no {PLAN_FILE}" if missing else f"{PLAN_FILE}: {e}")
    if isinstance(plan, dict) and plan.get("format") == PLAN_FORMAT:
        problem = _numbered_header(plan)
        return Plan(None, {}, problem) if problem else Plan.numbered(plan, root)
    stimuli = plan.get("stimuli") if isinstance(plan, dict) else None
    if not (isinstance(stimuli, list) and all(isinstance(s, dict) and _is(s.get("id"), str) for s in stimuli)):
        return Plan(None, {}, f"{PLAN_FILE}: no valid 'stimuli' list")
    chunks = plan.get("chunks")
    if not (isinstance(chunks, dict)
            and all(isinstance(v, list) and all(_is(i, str) for i in v) for v in chunks.values())):
        chunks = {}  # the ids are still good; damaged folders fall back on their names
    result = Plan([s["id"] for s in stimuli], chunks, entries={s["id"]: s for s in stimuli})
    result.started = plan.get("started", 0.0) if _is(plan.get("started"), (int, float)) else 0.0
    return result


_CHUNK_NAME = re.compile(r"stim_(\d+)(?:-(\d+))?(?:\.r\d+)?")
_MAX_GUESS = 100_000  # a folder name's range is believed up to this many ids


def folder_ids(name: str, plan: Plan) -> list[str] | None:
    """The stimuli a job folder was made for, from the plan or its name (None: unknown)."""
    if name in plan.chunks:
        return plan.chunks[name]
    m = _CHUNK_NAME.fullmatch(name)
    if m is None:
        return None
    lo, hi = int(m[1]), int(m[2] or m[1])
    if plan.ids is not None:
        return [i for i in plan.ids if i.startswith("stim_") and i[5:].isdigit() and lo <= int(i[5:]) <= hi]
    if not 0 <= hi - lo < _MAX_GUESS:
        return None
    return [f"stim_{n:0{len(m[1])}d}" for n in range(lo, hi + 1)]


@dataclass
class Record:
    """One stimulus as a finished job folder recorded it."""

    record: dict  # the stimulus' entry in job.json (status "damaged" when its files are)
    job_dir: Path
    job: dict  # the whole job.json ({} when it is unreadable)

    @property
    def ok(self) -> bool:
        return self.record["status"] == "ok"

    @property
    def reason(self) -> str:
        """Why it is not ok: damaged, lost (the sweeper's record of a job without results), failed."""
        if self.record["status"] == "damaged":
            return "damaged"
        return "lost" if self.job.get("lost") or self.record.get("lost") else "failed"

    @property
    def rank(self) -> int:
        """Which of two records of a stimulus is kept: ok, else a real record, else a guess."""
        return 0 if self.ok else 1 if self.job else 2


def read_folder(job_dir: Path, plan: Plan) -> list[Record]:
    """The records of one finished job folder, checked: damage makes records "damaged"."""
    try:
        job = _load_json(job_dir / JOB_FILE)
        check_job(job)
    except Damaged as e:
        error = f"damaged: {job_dir.name}/{JOB_FILE}: {e}"
        ids = folder_ids(job_dir.name, plan)
        if ids is None:  # neither the plan nor the name says: the folder stands for its stimuli
            return [Record({"id": job_dir.name, "status": "damaged", "error": f"{error}; its stimuli are unknown"},
                           job_dir, {})]
        return [Record({"id": sid, "status": "damaged", "error": error}, job_dir, {}) for sid in ids]
    if "counts" in job:  # a folder from before a population existed had none of it
        job["counts"] = {**{p: 0 for p in POPULATIONS}, **job["counts"]}
    problems = {} if job.get("lost") else array_problems(job_dir, job)
    out = []
    for rec in job["stimuli"]:
        if rec["id"] in problems:
            rec = {**rec, "status": "damaged", "error": f"damaged: {problems[rec['id']]}"}
        out.append(Record(rec, job_dir, job))
    return out


def read_records(root: Path, plan: Plan | None = None) -> dict[str, Record]:
    """stimulus id -> its record in the finished job folders of `root`, in id order. A stimulus
    recorded more than once (a resumed or repaired sweep) gives its first successful record in
    folder order, else its first failed (or damaged) one. Damage never raises: see read_folder."""
    plan = plan if plan is not None else read_plan(root)
    best: dict[str, Record] = {}
    for jd in job_dirs(root):
        for rec in read_folder(jd, plan):
            prev = best.get(rec.record["id"])
            if prev is None or rec.rank < prev.rank:
                best[rec.record["id"]] = rec
    return dict(sorted(best.items()))


class NpzReader:
    """Reads the job folders' npz files of one kind (ARRAY_FILES), keeping one open at a time
    (records come job by job). Arrays from `get` are read-only views of the file's bytes."""

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
                self._z = Npz(path)
            except NpzError as e:
                raise ConfigError(f"{path}: cannot read it ({e}); re-run that job") from None
            self._key, self._path = rec.job_dir, path
        return self._z

    def get(self, rec: Record, name: str, empty: bool = False) -> np.ndarray:
        """The array `name`; with empty=True, a missing one is an empty int32 array."""
        z = self(rec)
        try:
            return z.view(name)
        except KeyError:
            if empty:
                return np.zeros(0, np.int32)
            raise ConfigError(f"{self._path}: no array '{name}'; re-run that job") from None
        except Exception as e:  # noqa: BLE001 - changed on disk since it was checked (read_folder)
            raise ConfigError(f"{self._path}: cannot read '{name}' ({type(e).__name__}: {e}); re-run that job") from None

    def close(self) -> None:
        if self._z is not None:
            self._z.close()
        self._z, self._key = None, None

    def flat(self, rec: Record, pop: str) -> np.ndarray:
        """The flat spike indices of one population of a stimulus (none for a population of no
        afferents that the job folder predates)."""
        flat = self.get(rec, f"{rec.record['id']}/{pop}", empty=rec.job["counts"].get(pop) == 0)
        if flat.size and (flat.dtype.kind not in "iu" or flat.min() < 0
                          or flat.max() >= rec.job["steps"] * rec.job["counts"].get(pop, 0)):
            # intact file (CRC-checked) but at odds with job.json's steps x counts: edited by hand?
            raise ConfigError(f"{self._path}: {rec.record['id']}/{pop} does not fit job.json's steps and "
                              "counts; re-run that job")
        return flat

    def raster(self, rec: Record, pop: str) -> np.ndarray:
        return decode(self.flat(rec, pop), rec.job["steps"], rec.job["counts"][pop])
