"""sensoryforge.data on a real quick-start sweep (tiny config): lengths, shapes, labels, spikes
equal to the dataset files, the whole set through DataLoader(num_workers=2)."""

import json
import pickle

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sensoryforge.dataset.torch_datasets import (
    H5SpikeDataset,
    PtSpikeDataset,
    collate,
    open_dataset,
    stimulus_pressure,
)

from conftest import TINY, run_cli

COUNTS = {"sa": 16, "ra": 25, "pc": 4, "sa2": 4}
T = 200


@pytest.fixture(scope="module")
def qs(tmp_path_factory):
    """experiment=quickstart with the tiny config: 5 amplitudes x 5 widths x 3 repetitions."""
    root = tmp_path_factory.mktemp("data")
    r = run_cli(["-m", "experiment=quickstart", *TINY, "hydra.sweep.dir=qs", "dataset.format=both"], root)
    assert r.returncode == 0, r.stderr
    return root / "qs"


@pytest.mark.slow
@pytest.mark.parametrize("cls, name", [(H5SpikeDataset, "results.h5"), (PtSpikeDataset, "results.pt")])
def test_items_per_population_with_labels(qs, cls, name):
    ds = cls(qs / name)
    index = json.loads((qs / "stimulus_index.json").read_text())
    assert len(ds) == 75 and ds.ids == sorted(index)
    assert ds.label_keys == ["amplitude", "sigma"] and ds.types == ["gaussian"]
    item = ds[74]
    assert item["id"] == "stim_0074"
    assert {p: tuple(x.shape) for p, x in item["spikes"].items()} == {p: (T, n) for p, n in COUNTS.items()}
    assert all(x.dtype == torch.bool for x in item["spikes"].values())
    assert item["labels"].dtype == torch.float32 and item["labels"].tolist() == [50.0, 1.5]
    assert item["params"]["repetition"] == 2 and item["params"]["type"] == "gaussian" and int(item["type"]) == 0
    with h5py.File(qs / "results.h5") as f:
        for p in COUNTS:
            np.testing.assert_array_equal(item["spikes"][p].numpy(), f[f"responses/stim_0074/{p}_spikes"][()])
    assert ds[-1]["id"] == "stim_0074"
    with pytest.raises(IndexError):
        ds[75]


@pytest.mark.slow
def test_concatenated_float_items_and_chosen_labels(qs):
    ds = H5SpikeDataset(qs / "results.h5", concat=True, dtype=torch.float32, labels=["sigma", "repetition"],
                        populations=("ra", "sa"))
    x = ds[10]["spikes"]
    assert x.shape == (T, 25 + 16) and x.dtype == torch.float32
    assert ds.slices == {"ra": slice(0, 25), "sa": slice(25, 41)}
    sep = H5SpikeDataset(qs / "results.h5")[10]["spikes"]
    torch.testing.assert_close(x[:, ds.slices["sa"]], sep["sa"].float())
    torch.testing.assert_close(x[:, ds.slices["ra"]], sep["ra"].float())
    assert ds[10]["labels"].tolist() == [1.0, 1.0]  # stim_0010: amplitude 10, sigma 1.0, repetition 1
    with pytest.raises(KeyError, match="labels \\['nope'\\]: not a parameter"):
        H5SpikeDataset(qs / "results.h5", labels=["nope"])
    with pytest.raises(ValueError, match="populations="):
        H5SpikeDataset(qs / "results.h5", populations=("xx",))


@pytest.mark.slow
def test_h5_dataset_opens_nothing_until_read_and_pickles(qs):
    ds = H5SpikeDataset(qs / "results.h5")
    assert ds._file is None  # __init__ read the index and closed the file
    ds[0]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))  # as a spawned worker receives it
    assert clone._file is None and clone[3]["id"] == "stim_0003"
    ds.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["results.h5", "results.pt"])
def test_the_whole_set_through_a_dataloader_with_two_workers(qs, name):
    ds = open_dataset(qs / name)
    loader = DataLoader(ds, batch_size=8, shuffle=False, num_workers=2, collate_fn=collate)
    seen, spikes = [], 0
    for batch in loader:
        b = len(batch["id"])
        assert {p: tuple(x.shape) for p, x in batch["spikes"].items()} == {p: (b, T, n) for p, n in COUNTS.items()}
        assert batch["labels"].shape == (b, 2) and batch["type"].shape == (b,)
        assert batch["steps"].tolist() == [T] * b
        seen += batch["id"]
        spikes += int(sum(x.sum() for x in batch["spikes"].values()))
    assert seen == [f"stim_{i:04d}" for i in range(75)]
    meta = json.loads((qs / "batch_metadata.json").read_text())
    with h5py.File(qs / "results.h5") as f:
        total = sum(int(f["responses"][s][f"{p}_spikes"][()].sum()) for s in f["responses"] for p in COUNTS)
    assert spikes == total > 0 and meta["num_stimuli"] == 75


@pytest.mark.slow
def test_a_dataset_from_before_pc_gives_the_populations_it_has(qs, tmp_path):
    path = tmp_path / "old.h5"
    path.write_bytes((qs / "results.h5").read_bytes())
    with h5py.File(path, "r+") as f:  # the layout of a dataset written before the PC population
        for sid in f["responses"]:
            del f["responses"][sid]["pc_spikes"]
        m = f["metadata"].attrs
        m["counts"] = json.dumps({p: n for p, n in COUNTS.items() if p != "pc"})
        m["populations"] = json.dumps(["sa", "ra", "sa2"])
    ds = H5SpikeDataset(path)
    assert ds.populations == ("sa", "ra", "sa2")
    assert {p: tuple(x.shape) for p, x in ds[3]["spikes"].items()} == {"sa": (T, 16), "ra": (T, 25), "sa2": (T, 4)}
    assert H5SpikeDataset(path, concat=True)[3]["spikes"].shape == (T, 16 + 25 + 4)
    with pytest.raises(ValueError, match=r"populations=\['pc'\]: choose among sa, ra, sa2"):
        H5SpikeDataset(path, populations=("pc",))


def test_collate_pads_items_of_different_length():
    def item(t, n, label):
        return {"id": f"s{t}", "spikes": {"sa": torch.ones(t, n, dtype=torch.bool)},
                "labels": torch.tensor([label]), "type": torch.tensor(0), "params": {}}

    b = collate([item(3, 2, 1.0), item(5, 4, 2.0)])
    assert b["spikes"]["sa"].shape == (2, 5, 4) and b["steps"].tolist() == [3, 5]
    assert b["spikes"]["sa"][0].sum() == 6 and not b["spikes"]["sa"][0, 3:].any()
    assert b["labels"].tolist() == [[1.0], [2.0]]


def test_stimulus_pressure_from_factors():
    spatial = torch.rand(2, 3, 4)
    temporal = torch.rand(5, 2)
    p = stimulus_pressure(spatial, temporal)
    assert p.shape == (5, 3, 4)
    torch.testing.assert_close(p[1], temporal[1, 0] * spatial[0] + temporal[1, 1] * spatial[1])
