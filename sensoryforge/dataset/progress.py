"""Progress of a sweep, counted in stimuli.

Each running job appends one line per simulated batch to its chunk folder's ledger
(`progress.jsonl`: `{"t", "ok": [ids], "failed": {id: error}, "host", "pid"}`); the job is its
only writer, so appends need no lock, and a reader on any node sees whole lines or a partial last
line it leaves for the next look. The submitting command's `Monitor` follows the ledgers of the
chunks it launched (whichever process, worker or array task runs them) and

- draws a progress bar over stimuli (tqdm) with rate and ETA on a terminal, or writes a plain
  line every `SENSORYFORGE_PROGRESS_S` seconds (default 10) when the output is a file (CI, Slurm),
- keeps `checkpoint.json` in the sweep folder up to date: completed and failed stimulus ids, the
  latter with their errors (at most once a second while stimuli finish; `write_checkpoint` at the
  end writes the dataset's account). `completed` are saved: their job has written its folder or
  a segment of it (dataset/partial.py), so a resume skips them; `unsaved` are computed by a job
  still running and not saved yet (a kill now loses them, and a resume computes them again).

A job also prints its own periodic line into its log when it runs under Slurm, and one line when
it ends (`report`) unless the submitting command draws the bar in the same terminal.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from sensoryforge.core.text import clock

log = logging.getLogger("sensoryforge")

LEDGER = "progress.jsonl"
CHECKPOINT = "checkpoint.json"
PROGRESS_FILE = ".progress"
_RECORD = 64  # bytes per finished-job record in PROGRESS_FILE
_BAR_ENV = "SENSORYFORGE_PROGRESS_BAR"  # set while a submitting command draws the bar


def interval_s() -> float:
    """Seconds between plain progress lines (SENSORYFORGE_PROGRESS_S, default 10)."""
    try:
        return max(0.05, float(os.environ.get("SENSORYFORGE_PROGRESS_S", "10")))
    except ValueError:
        return 10.0


def _in_slurm() -> bool:
    return "SLURM_JOB_ID" in os.environ


class Ledger:
    """A running job's ledger: one appended line per simulated batch."""

    def __init__(self, job_dir: Path, total: int):
        self.path, self.total, self.done = Path(job_dir) / LEDGER, total, 0
        self.t0 = self.last = time.time()
        self.tag = {"host": socket.gethostname(), "pid": os.getpid()}

    def add(self, ok: list[str], failed: dict[str, str], saved: bool = False) -> None:
        """A simulated batch (its ok and failed ids); saved=True: ids now saved to disk (a segment,
        dataset/partial.py), counted already unless restored from one."""
        entry = {"saved": ok} if saved else {"ok": ok, "failed": failed}
        line = json.dumps({"t": round(time.time(), 3), **entry, **self.tag}) + "\n"
        with open(self.path, "a") as f:  # one write of one line: whole or, if killed, a cut last line
            f.write(line)
        if saved:
            return
        self.done += len(ok) + len(failed)
        now = time.time()
        if _in_slurm() and now - self.last >= interval_s():  # an array task's log gets plain lines
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            log.info("%d/%d stimuli | %.1f/s | elapsed %s | ETA %s", self.done, self.total, rate,
                     clock(now - self.t0), clock((self.total - self.done) / max(rate, 1e-9)))


def read_ledger(path: Path, offset: int = 0) -> tuple[list[dict], int]:
    """The whole lines of a ledger from byte `offset`, and the offset after the last of them (a
    line still being written is left for the next read)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    entries = []
    for line in data[:end].splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line cut by a kill, then appended to by a requeued job: skipped
            continue
    return entries, offset + end


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def write_checkpoint(sweep_dir: Path, batch_id: str, total: int, completed: list[str],
                     failed: dict[str, str] | list[dict], complete: bool = False,
                     unsaved: list[str] = ()) -> None:
    """checkpoint.json: the ids completed (saved), computed but not yet saved, and failed (with
    errors) so far, atomically."""
    from sensoryforge.dataset.files import write_json

    if isinstance(failed, dict):
        failed = [{"stimulus_id": k, "error": v} for k, v in failed.items()]
    write_json(Path(sweep_dir) / CHECKPOINT, {
        "batch_id": batch_id,
        "num_planned": total,
        "num_completed": len(completed),
        "num_failed": len(failed),
        "num_unsaved": len(unsaved),
        "complete": complete,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "output_dir": str(Path(sweep_dir).resolve()),
        "completed": completed,
        "unsaved": list(unsaved),
        "failed": failed,
    })


class Bar:
    """A tqdm bar on a terminal, plain periodic lines elsewhere; `update(n)` as stimuli finish."""

    def __init__(self, total: int, desc: str, unit: str = "stim", stream=None):
        self.total, self.desc, self.n = total, desc, 0
        self.stream = stream or sys.stderr
        self.t0 = self.last = time.time()
        self.tty = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self._bar = None
        if self.tty:
            from tqdm import tqdm

            try:  # a terminal of unknown size (a pty nobody sized) gets 80 x 24: tqdm draws nothing in 0 x 0
                sized = os.get_terminal_size(self.stream.fileno()).columns > 0
            except (OSError, ValueError):
                sized = False
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=sized,
                             ncols=None if sized else 80, nrows=None if sized else 24, mininterval=0.2,
                             smoothing=0.1)

    def update(self, n: int) -> None:
        if n <= 0:
            return
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.time() - self.last >= interval_s():
            self.line()

    def line(self) -> None:
        from tqdm import tqdm

        self.last = time.time()
        meter = tqdm.format_meter(self.n, self.total, self.last - self.t0, unit="stim", prefix=self.desc, ncols=0)
        print(meter, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.n or not self.total:
            self.line()


class Monitor:
    """Follows the ledgers of `chunks` (chunk name -> its stimulus ids) in `sweep_dir` from a
    thread while the launcher runs them: the bar, and checkpoint.json. `completed`: the ids
    finished by earlier runs (counted as completed, not by the bar)."""

    def __init__(self, sweep_dir: Path, chunks: dict[str, list[str]], batch_id: str, total: int,
                 completed: list[str], poll_s: float = 0.5, from_start: set[str] = frozenset()):
        self.sweep_dir, self.batch_id, self.total, self.poll_s = Path(sweep_dir), batch_id, total, poll_s
        self.chunks = chunks
        # what a ledger held before this run (an earlier run of the same chunk) is not this run's
        # (`from_start`: chunks of tasks this run attached to, whose whole ledger is theirs)
        self.offsets = {name: 0 if name in from_start else _size(self.sweep_dir / name / LEDGER) for name in chunks}
        self.ok: dict[str, None] = dict.fromkeys(completed)  # ordered sets
        self.chunk_of = {sid: name for name, ids in chunks.items() for sid in ids}
        self.saved: set[str] = set()  # chunks whose job has written its folder (job.json)
        self.saved_ids: set[str] = set()  # stimuli saved in a segment of a running job
        self.failed: dict[str, str] = {}
        self.todo = sum(len(v) for v in chunks.values())
        self.bar: Bar | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sensoryforge-progress", daemon=True)
        self._written = 0.0
        self._dirty = False

    def __enter__(self) -> Monitor:
        self.bar = Bar(self.todo, "simulate")
        os.environ[_BAR_ENV] = "1"  # jobs in this terminal (this process, joblib workers) stay quiet
        self.checkpoint()  # so that `batch --resume .../checkpoint.json` finds it after any kill
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        os.environ.pop(_BAR_ENV, None)
        self.poll()
        self.bar.close()
        self.checkpoint()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
                if self._dirty and time.time() - self._written >= 1.0:
                    self.checkpoint()
            except Exception as e:  # noqa: BLE001 - progress must never cost the sweep
                log.debug("progress: %s", e)

    def poll(self) -> None:
        from sensoryforge.dataset.jobs import JOB_FILE

        new = 0
        for name in self.chunks:
            if name not in self.saved and (self.sweep_dir / name / JOB_FILE).is_file():
                self.saved.add(name)
                self._dirty = True
            entries, self.offsets[name] = read_ledger(self.sweep_dir / name / LEDGER, self.offsets[name])
            for e in entries:
                if e.get("saved"):
                    self.saved_ids.update(e["saved"])
                    self._dirty = True
                for sid in e.get("ok", []):
                    if sid not in self.ok:
                        self.ok[sid] = None
                        self.failed.pop(sid, None)
                        new += 1
                for sid, error in e.get("failed", {}).items():
                    if sid not in self.failed and sid not in self.ok:
                        new += 1
                    self.failed[sid] = error
        if new:
            self._dirty = True
            self.bar.update(new)

    def checkpoint(self) -> None:
        saved, unsaved = [], []
        for sid in self.ok:
            chunk = self.chunk_of.get(sid)
            (saved if chunk is None or chunk in self.saved or sid in self.saved_ids else unsaved).append(sid)
        write_checkpoint(self.sweep_dir, self.batch_id, self.total, saved, self.failed, unsaved=unsaved)
        self._written, self._dirty = time.time(), False


def count_finished(sweep_dir: Path) -> int:
    """Append this job's record to the progress file; return how many jobs have finished. Appends
    of one small record are atomic and the count is the file size: O(1) on any node."""
    fd = os.open(sweep_dir / PROGRESS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time():.3f} {os.getpid()}".ljust(_RECORD - 1).encode() + b"\n")
        return os.fstat(fd).st_size // _RECORD
    finally:
        os.close(fd)


def reset(sweep_dir: Path) -> None:
    """A new run of the sweep counts its own jobs."""
    (sweep_dir / PROGRESS_FILE).unlink(missing_ok=True)


def report(sweep_dir: Path, plan, chunk: str, job: dict) -> None:
    """Log the line of a finished job of the plan (dataset/jobs.py: Plan): `[i/N] <chunk>: k
    stimuli in s | elapsed | ETA`, into the job's log; on the console only when no bar is drawn
    there (a job of this terminal while the submitting command's Monitor runs keeps quiet)."""
    total = plan.n_chunks
    done = count_finished(sweep_dir)
    if os.environ.get(_BAR_ENV) and not _in_slurm():
        return
    elapsed = time.time() - plan.started
    eta = elapsed / max(done, 1) * (total - done)
    failed = sum(s["status"] != "ok" for s in job["stimuli"])
    log.info(
        "[%d/%d] %s: %d stimuli in %.1f s%s | elapsed %s | ETA %s",
        done, total, chunk, len(job["stimuli"]), job["runtime_s"],
        f" ({failed} failed)" if failed else "", clock(elapsed), clock(eta),
    )
