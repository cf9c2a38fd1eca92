"""Writing files so that a file that exists is whole: every file that marks work as finished (job
records, the plan, datasets, tables, plots) is written under a hidden temporary name, flushed to
disk and renamed into place (`atomic`). A write that fails leaves no temporary file, and a full
disk is reported as such (`DiskFull`), whichever library was writing (json, numpy, h5py, torch)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def tmp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (hidden, per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def existing_ancestor(path: Path) -> Path:
    """`path` itself if it exists, else its nearest existing parent."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Free bytes on the device that holds `path` (or its nearest existing folder)."""
    return shutil.disk_usage(existing_ancestor(path)).free


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 else f"{n / 1024:,.0f} KB"


class DiskFull(OSError):
    """The device filled up while `path` was written (nothing of it was kept)."""

    def __init__(self, path: Path, need: int | None = None):
        self.path = Path(path)
        free = free_bytes(self.path)
        needs = f"; writing it needs up to {_mb(need)} more" if need and need > free else ""
        super().__init__(
            errno.ENOSPC,
            f"no space left on the device of {self.path} ({_mb(free)} free{needs}); "
            "free some space and run the same command again: finished work is kept",
        )

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(e: BaseException, path: Path) -> bool:
    """Whether a failed write failed for space. Libraries say so differently (h5py and torch's zip
    writer often without errno), so an error while the device has under 1 MB left counts too."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    try:
        return free_bytes(path) < 2**20
    except OSError:
        return False


@contextlib.contextmanager
def atomic(path: Path, need: int | None = None) -> Iterator[Path]:
    """Yields a temporary path to write `path` through; on success it is synced and renamed into
    place, on failure removed (an earlier `path` stays as it was). `need`: the bytes the write
    needs, if known, for the message of a full disk."""
    path = Path(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except DiskFull:
        raise
    except Exception as e:
        if is_disk_full(e, path):
            raise DiskFull(path, need) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files that a killed writer left in `folder` and its sub-folders (the
    caller knows no writer is running there). Returns how many were removed."""
    n = 0
    for pattern in (".*.tmp[0-9]*", "*/.*.tmp[0-9]*"):
        for f in Path(folder).glob(pattern):
            f.unlink(missing_ok=True)
            n += 1
    return n


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1, default=_json_default)
    with atomic(path, need=len(text)) as tmp:
        tmp.write_text(text)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic(path, need=sum(a.nbytes for a in arrays.values())) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
