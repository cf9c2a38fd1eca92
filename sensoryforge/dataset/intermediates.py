"""A stimulus' intermediates (pipeline.save_intermediates) as the datasets give them.

A job keeps, per stimulus, `{pop}_drive` and `{pop}_voltage` [T, N] and the stimulus as its space
x time factors, `stimulus_spatial` [K, H, W] (kPa) and `stimulus_temporal` [T, K]: the pressure
is p[t] = sum_k stimulus_temporal[t, k] * stimulus_spatial[k] exactly, at every time step. The
datasets (results.pt entries, results.h5 groups) carry these and, under the names of the batch
documentation, the same arrays again without a copy (`{pop}_currents`, `{pop}_voltages`: one
tensor object in results.pt, HDF5 hard links in results.h5) and the pressure itself as frames:
`stimulus` [F, H, W] float32 every STIMULUS_FRAME_MS at `stimulus_times` [F] (ms). Frames of the
full [T, H, W] would be 100 MB for a default 1-s stimulus (4,000 steps of 80 x 80); these are
2.5 MB, collate in a DataLoader whatever the stimulus type, and the exact pressure at any step is
one product of the factors away.
"""

from __future__ import annotations

import numpy as np

STIMULUS_FRAME_MS = 10.0
ALIASES = {"_drive": "_currents", "_voltage": "_voltages"}  # stored suffix -> documented suffix


def frame_steps(steps: int, dt: float) -> np.ndarray:
    """The time steps of the stimulus frames: every STIMULUS_FRAME_MS (every step if dt is coarser)."""
    return np.arange(0, steps, max(1, round(STIMULUS_FRAME_MS / dt)))


def documented(arrays: dict[str, np.ndarray], dt: float) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(new arrays, aliases) for one stimulus' stored intermediates `arrays`: the stimulus frames
    and their times, and {documented name: stored name} of the arrays given twice."""
    aliases = {name[: -len(old)] + new: name for name in arrays for old, new in ALIASES.items()
               if name.endswith(old)}
    new = {}
    spatial, temporal = arrays.get("stimulus_spatial"), arrays.get("stimulus_temporal")
    if spatial is not None and temporal is not None:
        steps = frame_steps(temporal.shape[0], dt)
        k, h, w = spatial.shape
        frames = temporal[steps].astype(np.float32) @ spatial.reshape(k, h * w).astype(np.float32)
        new["stimulus"] = frames.reshape(len(steps), h, w)
        new["stimulus_times"] = (steps * dt).astype(np.float32)
    return new, aliases
