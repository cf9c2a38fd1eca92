"""Where the Hydra config groups are, found without importing Hydra (`sensoryforge --help` reads
them directly: cli/help.py)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def _conf_dir() -> Path:
    """The config groups: the package data `sensoryforge.conf` of an installed copy (the
    repository's conf/, mapped there by pyproject.toml), or conf/ beside the package in a source
    tree that is on sys.path without being installed."""
    try:
        return Path(str(importlib.resources.files("sensoryforge.conf")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = _conf_dir()
