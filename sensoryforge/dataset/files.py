"""Writing files so that a file that exists is whole: every file that marks work as finished (job
records, the plan, datasets, tables, plots) is written under a hidden temporary name, flushed to
disk and renamed into place (`atomic`)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def tmp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (hidden, per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write `path` through; on success it is synced and renamed into
    place, on failure removed (an earlier `path` stays as it was)."""
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
    finally:
        tmp.unlink(missing_ok=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: Path, obj: Any) -> None:
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_json_default))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
