"""PyTorch datasets over an aggregated sweep.

    from torch.utils.data import DataLoader
    from sensoryforge.dataset.torch_datasets import H5SpikeDataset, collate

    ds = H5SpikeDataset("multirun/.../results.h5", labels=["amplitude", "sigma"])
    for batch in DataLoader(ds, batch_size=16, num_workers=2, collate_fn=collate):
        batch["spikes"]["sa"]   # [B, T, N] bool
        batch["labels"]         # [B, 2] float32, columns ds.label_keys

`PtSpikeDataset` loads results.pt whole (sparse spikes; densified per item). `H5SpikeDataset`
reads results.h5 lazily, in either layout (groups or ragged, dataset/hdf5.py): the file is opened
in the process that reads an item (each DataLoader worker opens its own handle), never in
__init__, so it is safe with num_workers > 0.

An item is a dict:
  id        'stim_0007'
  spikes    {population: [T, N]} or, with concat=True, one [T, N_sa + N_ra + N_pc + N_sa2] tensor
            (populations in the order given; `ds.slices[pop]` says which columns are whose)
  labels    float32 [K]: the stimulus parameters named by `ds.label_keys` (NaN where a
            parameter does not exist for the item's type, e.g. in mixed batches)
  type      int64 scalar: index of the stimulus type in `ds.types`
  params    the full flat parameter dict (type, every parameter, seed, repetition, ...)
  intermediates  {name: tensor} (drive, voltage, stimulus factors) when asked and saved
`collate` stacks items into a batch (padding with False / 0 when T or N differ between items,
with `steps` [B] giving each item's own number of time steps).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sensoryforge.core.schema import POPULATIONS as POPS

_NOT_LABELS = {"seed", "repetition", "noise_seed", "stimulus", "type", "source", "stimulus_id"}


def _py(v: Any) -> Any:
    """An HDF5 attribute value as plain Python ('null' -> None)."""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str) and v == "null":
        return None
    return v


def _number(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return math.nan


def default_label_keys(params: Sequence[dict], swept: Sequence[str]) -> list[str]:
    """The swept parameters (as named in the parameter dicts) that are numeric."""
    keys = []
    for k in swept:
        name = k.split(".", 1)[1] if k.startswith("stimulus.") else k
        if name in _NOT_LABELS or name in keys:
            continue
        if any(isinstance(p.get(name), (int, float)) and not isinstance(p.get(name), bool) for p in params):
            keys.append(name)
    return keys


class _Base(Dataset):
    """What both datasets share: ids, parameter dicts, labels, output shape options."""

    def __init__(self, populations, concat, dtype, labels, intermediates):
        have = tuple(self.metadata.get("populations") or POPS)  # a dataset from before pc has no pc
        populations = have if populations is None else tuple(populations)
        bad = [p for p in populations if p not in have]
        if bad or not populations:
            raise ValueError(f"populations={list(populations)}: choose among {', '.join(have)}")
        self.populations = populations
        self.concat = bool(concat)
        self.dtype = dtype
        self.intermediates = bool(intermediates)
        self.types = sorted({p["type"] for p in self.params})
        if labels is None:
            self.label_keys = default_label_keys(self.params, self.metadata.get("swept", []))
        else:
            known = set().union(*(p.keys() for p in self.params)) if self.params else set()
            unknown = [k for k in labels if k not in known]
            if unknown:
                raise KeyError(f"labels {unknown}: not a parameter of this dataset; known: {', '.join(sorted(known))}")
            self.label_keys = list(labels)
        self._labels = torch.tensor(
            [[_number(p.get(k)) for k in self.label_keys] for p in self.params], dtype=torch.float32
        ).reshape(len(self.params), len(self.label_keys))
        counts = self.metadata.get("counts") or {}
        off, self.slices = 0, {}
        for pop in populations:
            n = int(counts.get(pop, 0))
            self.slices[pop] = slice(off, off + n)
            off += n

    def __len__(self) -> int:
        return len(self.ids)

    def _spikes(self, i: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _intermediates(self, i: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} stimuli")
        spikes = {pop: x.to(self.dtype) for pop, x in self._spikes(i).items()}
        item = {
            "id": self.ids[i],
            "spikes": torch.cat([spikes[p] for p in self.populations], dim=1) if self.concat else spikes,
            "labels": self._labels[i],
            "type": torch.tensor(self.types.index(self.params[i]["type"])),
            "params": self.params[i],
        }
        if self.intermediates:
            item["intermediates"] = self._intermediates(i)
        return item


class PtSpikeDataset(_Base):
    """results.pt in memory (sparse spikes, densified per item).

    populations: which to return (default: all the dataset has); concat: one [T, sum N] tensor
    instead of a dict; dtype: torch.bool (default) or a float type; labels: parameter names for
    `labels` (default: the swept numeric stimulus parameters); intermediates: include them if saved."""

    def __init__(self, path, populations=None, concat=False, dtype=torch.bool, labels=None,
                 intermediates=False):
        data = torch.load(Path(path), weights_only=True)  # plain tensors and containers only
        self.path = Path(path)
        self.metadata = data["metadata"]
        self._results = data["results"]
        self.ids = [r["stimulus_config"]["stimulus_id"] for r in self._results]
        self.params = [{k: v for k, v in r["stimulus_config"].items() if k != "stimulus_id"} for r in self._results]
        super().__init__(populations, concat, dtype, labels, intermediates)

    def _spikes(self, i):
        r = self._results[i]
        return {pop: r[f"{pop}_spikes"].to_dense() for pop in self.populations}

    def _intermediates(self, i):
        r = self._results[i]
        skip = {f"{p}_spikes" for p in POPS} | {"stimulus_config"}
        return {k: v for k, v in r.items() if k not in skip}


class H5SpikeDataset(_Base):
    """results.h5 read lazily, one stimulus per item; safe with DataLoader(num_workers > 0).

    Same options as PtSpikeDataset."""

    def __init__(self, path, populations=None, concat=False, dtype=torch.bool, labels=None,
                 intermediates=False):
        import h5py

        self.path = Path(path)
        self._file = None
        self._pid = None
        self._index: dict = {}
        with h5py.File(self.path, "r") as f:  # closed again: workers open their own handle
            m = f["metadata"].attrs
            self.metadata = {k: _py(m[k]) for k in m}
            for k in ("config", "failed_stimuli", "swept", "counts", "populations"):
                if isinstance(self.metadata.get(k), str):
                    self.metadata[k] = json.loads(self.metadata[k])
            from sensoryforge.dataset.hdf5 import read_stimuli_table

            self._ragged = None
            # the parameters: from stimuli_table when there is one (one read, not one per stimulus)
            table = ({r.pop("stimulus_id"): {k: _py(v) for k, v in r.items()}
                      for r in read_stimuli_table(f["stimuli_table"])} if "stimuli_table" in f else None)
            if "responses" in f:
                self.ids = sorted(f["responses"].keys())
                self.params = ([table[sid] for sid in self.ids] if table is not None else
                               [{k: _py(v) for k, v in f["stimuli"][sid].attrs.items()} for sid in self.ids])
            else:  # ragged: stimuli in stimuli_table's order, the offsets of each one's spikes
                self.ids, self.params = list(table), list(table.values())
                s = f["spikes"]
                self._ragged = {"steps": s["steps"][()], **{
                    p: (s[p]["offsets"][()], s[p]["afferents"][()]) for p in s if p != "steps"}}
        super().__init__(populations, concat, dtype, labels, intermediates)

    def _h5(self):
        import h5py

        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
            # ragged: the index datasets kept open, so their chunk cache serves the next items
            self._index = {p: self._file["spikes"][p]["index"] for p in self.populations} if self._ragged else {}
        return self._file

    def _spikes(self, i):
        if self._ragged is not None:
            from sensoryforge.core.response import decode

            self._h5()
            out = {}
            for pop in self.populations:
                offsets, afferents = self._ragged[pop]
                flat = self._index[pop][offsets[i] : offsets[i + 1]]
                out[pop] = torch.from_numpy(decode(flat, int(self._ragged["steps"][i]), int(afferents[i])))
            return out
        g = self._h5()["responses"][self.ids[i]]
        return {pop: torch.from_numpy(g[f"{pop}_spikes"][()]) for pop in self.populations}

    def _intermediates(self, i):
        f = self._h5()
        if self._ragged is not None:
            g = f["intermediates"].get(self.ids[i], {}) if "intermediates" in f else {}
            return {k: torch.from_numpy(g[k][()]) for k in g}
        g = f["responses"][self.ids[i]]
        return {k: torch.from_numpy(g[k][()]) for k in g if not k.endswith("_spikes")}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"], state["_pid"], state["_index"] = None, None, {}  # handles stay in their process
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def open_dataset(path, **kwargs) -> _Base:
    """results.h5 (lazy) or results.pt (in memory) by suffix; a folder opens its results.h5,
    else its results.pt."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.h5" if (p / "results.h5").exists() else p / "results.pt"
    if p.suffix in (".h5", ".hdf5"):
        return H5SpikeDataset(p, **kwargs)
    if p.suffix == ".pt":
        return PtSpikeDataset(p, **kwargs)
    raise ValueError(f"{path}: not a results.h5 / results.pt (or a folder holding one)")


def _pad_stack(xs: list[torch.Tensor]) -> torch.Tensor:
    shape = [max(x.shape[d] for x in xs) for d in range(xs[0].dim())]
    if all(list(x.shape) == shape for x in xs):
        return torch.stack(xs)
    out = torch.zeros([len(xs), *shape], dtype=xs[0].dtype)
    for b, x in enumerate(xs):
        out[(b, *[slice(0, s) for s in x.shape])] = x
    return out


def collate(items: list[dict]) -> dict:
    """Batch items: spikes [B, T, N] (per population, or concatenated), labels [B, K],
    type [B], steps [B] (each item's T; shorter items are padded with False / 0), ids and
    params as lists."""
    first = items[0]
    if isinstance(first["spikes"], dict):
        spikes = {pop: _pad_stack([it["spikes"][pop] for it in items]) for pop in first["spikes"]}
        steps = [next(iter(it["spikes"].values())).shape[0] for it in items]
    else:
        spikes = _pad_stack([it["spikes"] for it in items])
        steps = [it["spikes"].shape[0] for it in items]
    batch = {
        "id": [it["id"] for it in items],
        "spikes": spikes,
        "labels": torch.stack([it["labels"] for it in items]),
        "type": torch.stack([it["type"] for it in items]),
        "steps": torch.tensor(steps),
        "params": [it["params"] for it in items],
    }
    if "intermediates" in first:
        names = set.intersection(*(set(it["intermediates"]) for it in items))
        batch["intermediates"] = {k: _pad_stack([it["intermediates"][k] for it in items]) for k in sorted(names)}
    return batch


def stimulus_pressure(spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
    """Skin pressure [T, H, W] (kPa) from the saved factors spatial [K, H, W], temporal [T, K]
    (large: T x H x W floats)."""
    return torch.einsum("tk,khw->thw", temporal, spatial)
