"""Bit-for-bit comparison of two aggregated datasets (results.h5), for launcher tests."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np


def _attrs(node) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in node.attrs.items()}


def read_dataset(path: Path) -> dict:
    """Everything in results.h5 that the same sweep must reproduce: grid, the result config,
    every stimulus's attributes and every response array (dtype, shape and bits)."""
    with h5py.File(path, "r") as f:
        meta = f["metadata"].attrs
        out = {
            "num_stimuli": int(meta["num_stimuli"]),
            "config": json.loads(meta["config"]),
            "failed_stimuli": json.loads(meta["failed_stimuli"]) if "failed_stimuli" in meta else {},
            "grid": _attrs(f["grid"]),
            "stimuli": {sid: _attrs(g) for sid, g in f["stimuli"].items()},
            "responses": {},
        }
        for sid, group in f["responses"].items():
            out["responses"][sid] = {name: ds[()] for name, ds in group.items()}
    return out


def assert_same_responses(a: dict, b: dict, ids=None) -> None:
    """The response arrays of `ids` (default: all of a's) are identical in a and b."""
    for sid in ids if ids is not None else sorted(a["responses"]):
        ra, rb = a["responses"][sid], b["responses"][sid]
        assert sorted(ra) == sorted(rb), sid
        for name, x in ra.items():
            y = rb[name]
            assert x.dtype == y.dtype and x.shape == y.shape, f"{sid}/{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
            assert np.array_equal(x, y), f"{sid}/{name}: {int((x != y).sum())} elements differ"


def _same_folder(attrs: dict) -> dict:
    """A stimulus' attributes with its `source` ("<folder>/<id>") reduced to the id, so datasets of
    two folders compare."""
    if isinstance(attrs.get("source"), str):
        return {**attrs, "source": attrs["source"].rsplit("/", 1)[-1]}
    return attrs


def assert_same_dataset(a_path: Path, b_path: Path) -> dict:
    """results.h5 in a and b hold the same stimuli with identical attributes and spikes."""
    a, b = read_dataset(a_path), read_dataset(b_path)
    assert a["num_stimuli"] == b["num_stimuli"]
    assert a["failed_stimuli"] == b["failed_stimuli"]
    assert a["config"] == b["config"]
    assert a["grid"] == b["grid"]
    assert sorted(a["stimuli"]) == sorted(b["stimuli"])
    for sid in a["stimuli"]:
        assert _same_folder(a["stimuli"][sid]) == _same_folder(b["stimuli"][sid]), sid
    assert sorted(a["responses"]) == sorted(b["responses"])
    assert_same_responses(a, b)
    assert sum(int(x.sum()) for r in a["responses"].values() for x in r.values()) > 0, "no spikes at all"
    return a
