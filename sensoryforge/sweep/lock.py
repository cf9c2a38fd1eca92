"""One sweep per folder at a time: the sweeper holds an exclusive lock on `<sweep dir>/.lock` from
planning to the dataset. The kernel releases the lock when its holder dies however it dies (kill
-9 included), so a stale lock never blocks a re-run; the file only says who holds it (host, PID,
start time) for the message a second sweep gets."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from sensoryforge.core.params import ConfigError

log = logging.getLogger("sensoryforge")

LOCK_FILE = ".lock"


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep folder's lock, or raise ConfigError naming its holder."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(sweep_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir}: another sweep is running in this folder ({holder}); "
                "wait for it to finish, or use another hydra.sweep.dir"
            ) from None
        except OSError as e:  # a file system without locks (e.g. Lustre mounted noflock)
            log.warning("%s: cannot lock this folder (%s); make sure no other sweep runs in it", sweep_dir, e.strerror)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host {socket.gethostname()}, pid {os.getpid()}, started {started}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
