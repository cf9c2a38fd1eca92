"""results.pt: the dataset for a plain `torch.load`: sparse COO bool spikes [T, N] per population
and the stimulus config per stimulus, dense intermediates when they fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sensoryforge.core.response import split
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.dataset.collection import Item, flat_params
from sensoryforge.dataset.files import atomic
from sensoryforge.dataset.jobs import NpzReader

# results.pt carries the intermediates (dense float tensors) only up to this total size
PT_INTERMEDIATES_LIMIT_MB = 256.0
PT_BYTES_PER_SPIKE = 17  # int64 (t, n) index pair + a bool value
PT_WARN_MB = 256.0  # say so when results.pt's spikes alone need more memory than this


def _intermediate_bytes(items: list[Item]) -> int:
    total = 0
    for it in items:
        if "intermediates" not in it.job.get("files", {}):
            continue
        counts, steps = it.job["counts"], it.job["steps"]
        g = it.job.get("grid", {}).get("size", 0)
        total += 4 * (2 * steps * sum(counts.values()) + g * g + steps)
    return total


def write_pytorch(
    path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool = True,
    intermediates_limit_mb: float = PT_INTERMEDIATES_LIMIT_MB,
) -> dict:
    """results.pt: sparse COO bool spikes [T, N] per population and the stimulus config; with
    intermediates (when saved and under `intermediates_limit_mb` in all) their dense tensors.
    Returns a note on the intermediates for batch_metadata."""
    import torch

    has_inter = any("intermediates" in it.job.get("files", {}) for it in items)
    note = {"included": False, "reason": "not saved (pipeline.save_intermediates=false)"}
    if has_inter:
        size_mb = _intermediate_bytes(items) / 2**20
        if not intermediates:
            note = {"included": False, "reason": "not asked for"}
        elif size_mb > intermediates_limit_mb:
            note = {"included": False, "reason": f"{size_mb:.0f} MB > {intermediates_limit_mb:.0f} MB: read them from results.h5"}
        else:
            note = {"included": True, "size_mb": round(size_mb, 1)}
    spikes = NpzReader("spikes")
    inter = NpzReader("intermediates")
    results = []
    try:
        for it in items:
            entry: dict[str, Any] = {}
            for pop in POPULATIONS:
                n, steps = it.job["counts"][pop], it.job["steps"]
                idx = torch.from_numpy(split(spikes.flat(it, pop), n))  # (time step, afferent)
                entry[f"{pop}_spikes"] = torch.sparse_coo_tensor(
                    idx, torch.ones(idx.shape[1], dtype=torch.bool), (steps, n), is_coalesced=True,
                    check_invariants=False,
                )
            if note["included"] and "intermediates" in it.job["files"]:
                z = inter(it)
                prefix = f"{it.record['id']}/"
                for key in z.files:
                    if key.startswith(prefix):
                        entry[key[len(prefix):]] = torch.from_numpy(z[key])
            entry["stimulus_config"] = {"stimulus_id": it.id, **flat_params(it, swept)}
            results.append(entry)
    finally:
        spikes.close()
        inter.close()
    with atomic(path) as tmp:
        torch.save({"metadata": {**meta, "intermediates": note}, "results": results}, tmp)
    return note
