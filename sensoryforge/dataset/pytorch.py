"""results.pt: the dataset for a plain `torch.load`: sparse COO bool spikes [T, N] per population
and the stimulus config per stimulus; with the intermediates (when saved and they fit) dense
bool spikes beside them, and the intermediates under both their names (dataset/intermediates.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sensoryforge.core.response import split
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.dataset.collection import Item, flat_params
from sensoryforge.dataset.files import atomic
from sensoryforge.dataset.intermediates import documented, frame_steps
from sensoryforge.dataset.jobs import NpzReader

# results.pt carries the intermediates (dense float tensors) only up to this total size: the
# batch documentation's 75-stimulus quick start with them is about 1 GB
PT_INTERMEDIATES_LIMIT_MB = 2048.0
PT_BYTES_PER_SPIKE = 17  # int64 (t, n) index pair + a bool value
PT_WARN_MB = 256.0  # say so when results.pt's spikes alone need more memory than this


def _intermediate_bytes(items: list[Item]) -> int:
    total = 0
    for it in items:
        if "intermediates" not in it.job.get("files", {}):
            continue
        counts, steps = it.job["counts"], it.job["steps"]
        g = it.job.get("grid", {}).get("size", 0)
        frames = len(frame_steps(steps, it.job.get("dt", 1.0)))
        total += 4 * (2 * steps * sum(counts.values()) + g * g + steps + frames * (g * g + 1))
    return total


def intermediates_note(items: list[Item], intermediates: bool,
                       limit_mb: float = PT_INTERMEDIATES_LIMIT_MB) -> dict:
    """Whether results.pt carries the intermediates, and why (batch_metadata's `intermediates`)."""
    if not any("intermediates" in it.job.get("files", {}) for it in items):
        return {"included": False, "reason": "not saved (pipeline.save_intermediates=false)"}
    size_mb = _intermediate_bytes(items) / 2**20
    if not intermediates:
        return {"included": False, "reason": "not asked for"}
    if size_mb > limit_mb:
        return {"included": False, "reason": f"{size_mb:.0f} MB > {limit_mb:.0f} MB: read them from results.h5"}
    return {"included": True, "size_mb": round(size_mb, 1)}


class PtWriter:
    """results.pt, fed job by job (`add`) and saved by `write`. The (time step, afferent) indices
    of a job's sparse tensors are views of one int64 tensor and their values of one shared
    tensor of ones, so torch.save writes a handful of storages instead of two per tensor (8,000
    zip records for 1,000 stimuli; 25% of the file's size and of its loading time)."""

    part = "pytorch"  # its name in batch_metadata's aggregation_timing_s

    def __init__(self, path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool = True,
                 intermediates_limit_mb: float = PT_INTERMEDIATES_LIMIT_MB):
        self.path, self.swept, self.meta = Path(path), swept, meta
        self.note = intermediates_note(items, intermediates, intermediates_limit_mb)
        self.results: list[dict] = []
        self._ones = None

    def _values(self, k: int):
        import torch

        if self._ones is None or self._ones.numel() < k:
            self._ones = torch.ones(max(k, 2**16), dtype=torch.bool)
        return self._ones[:k]

    def add(self, entries: list[tuple[Item, dict[str, np.ndarray]]], inter=None) -> None:
        import torch

        total = sum(f.size for _, flats in entries for f in flats.values())
        buf = np.empty(2 * total, np.int64)
        tbuf = torch.from_numpy(buf)
        at = 0
        for it, flats in entries:
            entry: dict[str, Any] = {}
            steps = it.job["steps"]
            # beside dense intermediates the rasters are dense too (1/32 of their size), so that
            # a DataLoader's default collate takes the entries as they are
            dense = inter is not None and self.note["included"] and "intermediates" in it.job["files"]
            for pop in POPULATIONS:
                n, flat = it.job["counts"][pop], flats[pop]
                k = flat.size
                split(flat, n, out=buf[at : at + 2 * k].reshape(2, k))  # (time step, afferent)
                index = tbuf[at : at + 2 * k].view(2, k)
                if dense:
                    raster = entry[f"{pop}_spikes"] = torch.zeros(steps, n, dtype=torch.bool)
                    raster[index[0], index[1]] = True
                else:
                    entry[f"{pop}_spikes"] = torch.sparse_coo_tensor(
                        index, self._values(k), (steps, n), is_coalesced=True, check_invariants=False,
                    )
                at += 2 * k
            if dense:
                prefix = f"{it.record['id']}/"
                stored = {key[len(prefix):]: inter[key] for key in inter.files if key.startswith(prefix)}
                made, aliases = documented(stored, it.job["dt"])
                entry.update({k: torch.from_numpy(v) for k, v in {**stored, **made}.items()})
                entry.update({alias: entry[name] for alias, name in aliases.items()})  # one tensor, saved once
            entry["stimulus_config"] = {"stimulus_id": it.id, **flat_params(it, self.swept)}
            self.results.append(entry)

    def write(self) -> dict:
        """Saves results.pt atomically; returns the note on the intermediates."""
        import torch

        with atomic(self.path) as tmp:
            torch.save({"metadata": {**self.meta, "intermediates": self.note}, "results": self.results}, tmp)
        self.results = []
        return self.note


def write_pytorch(
    path: Path, items: list[Item], swept: list[str], meta: dict, intermediates: bool = True,
    intermediates_limit_mb: float = PT_INTERMEDIATES_LIMIT_MB,
) -> dict:
    """results.pt on its own (aggregate.py feeds a PtWriter in its one pass): sparse COO bool
    spikes [T, N] per population and the stimulus config; with intermediates (when saved and under
    `intermediates_limit_mb` in all) their dense tensors and dense spikes. Returns the note on the
    intermediates."""
    w = PtWriter(path, items, swept, meta, intermediates, intermediates_limit_mb)
    spikes, inter = NpzReader("spikes"), NpzReader("intermediates")
    try:
        for it in items:
            z = inter(it) if w.note["included"] and "intermediates" in it.job["files"] else None
            w.add([(it, {p: spikes.flat(it, p) for p in POPULATIONS})], z)
    finally:
        spikes.close()
        inter.close()
    return w.write()
