"""Progress of a sweep: each finished job appends one fixed-size record to the sweep folder's
progress file and prints `[i/N] <chunk>: k stimuli in s | elapsed | ETA`. Appends of one small
record are atomic and the count is the file size, so a job learns how many have finished in O(1),
whichever process or node it runs on."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sensoryforge.core.text import clock

log = logging.getLogger("sensoryforge")

PROGRESS_FILE = ".progress"
_RECORD = 64  # bytes per finished-job record


def count_finished(sweep_dir: Path) -> int:
    """Append this job's record to the progress file; return how many jobs have finished."""
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
    """Log the progress line of a finished job of the plan (dataset/jobs.py: Plan)."""
    total = plan.n_chunks
    done = count_finished(sweep_dir)
    elapsed = time.time() - plan.started
    eta = elapsed / max(done, 1) * (total - done)
    failed = sum(s["status"] != "ok" for s in job["stimuli"])
    log.info(
        "[%d/%d] %s: %d stimuli in %.1f s%s | elapsed %s | ETA %s",
        done, total, chunk, len(job["stimuli"]), job["runtime_s"],
        f" ({failed} failed)" if failed else "", clock(elapsed), clock(eta),
    )
