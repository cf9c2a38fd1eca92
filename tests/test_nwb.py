"""results.nwb (--format nwb, dataset.format=nwb): read back with pynwb from real sweeps (tiny
config), trials against the stimulus index, every unit's spike times against results.h5 and the
job folders, positions against the simulator's, nwbinspector without critical findings, units per
patch, atomic writing, the format's refusals and a start-up that does not load pynwb."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from sensoryforge.core.params import ConfigError
from sensoryforge.dataset.aggregate import aggregate
from sensoryforge.dataset.nwb import TRIAL_GAP_S

from conftest import TINY, cli_env, run_cli

COUNTS = {"sa": 16, "ra": 25, "pc": 4, "sa2": 4}
NOISY = [f"neurons.{p}.noise_std=0.4" for p in ("sa", "ra", "pc", "sa2")]
# 2 amplitudes x 2 SA gains (two job configs on the same skin) x 2 repetitions = 8 stimuli
GRID = ["stimulus.amplitude=20,40", "neurons.sa.gain=0.3,0.6", "repetition=range(2)"]


def read(path):
    """(trials dataframe, units dataframe, the NWBFile's metadata) of a results.nwb."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "r") as io:
        f = io.read()
        trials = f.trials.to_dataframe() if f.trials is not None else None
        units = f.units.to_dataframe() if f.units is not None else None
        meta = {"identifier": f.identifier, "session_id": f.session_id, "start": f.session_start_time,
                "notes": f.notes, "description": f.session_description, "subject": f.subject.subject_id,
                "resolution": f.units.resolution if f.units is not None else None,
                "descriptions": {c.name: c.description for c in f.units.columns} if f.units is not None else {}}
    return trials, units, meta


def expected_times(trials, rasters, dt):
    """(population, afferent) -> its spike times (s): each trial's start + the steps it spiked at x dt."""
    out = {}
    for (_, row), r in zip(trials.iterrows(), rasters):
        for pop, raster in r.items():
            steps, aff = np.nonzero(raster)
            for a in range(raster.shape[1]):
                out.setdefault((pop, a), []).append(row["start_time"] + steps[aff == a] * dt / 1000.0)
    return {k: np.concatenate(v) for k, v in out.items()}


def job_spikes(folder):
    """stimulus id -> population -> [T, N] bool, straight from the job folders."""
    from sensoryforge.core.response import decode

    out = {}
    for jf in sorted(folder.glob("*/job.json")):
        job = json.loads(jf.read_text())
        with np.load(jf.parent / "spikes.npz") as z:
            for s in job["stimuli"]:
                out[s["id"]] = {p: decode(z[f"{s['id']}/{p}"], job["steps"], n) for p, n in job["counts"].items()}
    return out


def positions(overrides):
    """population -> [n, 2] afferent positions (mm) of the simulator built from TINY + overrides."""
    from sensoryforge.config import load_config
    from sensoryforge.core.simulator import Simulator

    cfg = load_config([*TINY, *overrides])
    return {p.name: p.positions.numpy() for p in Simulator(cfg.pipeline, cfg.neurons).populations}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real multirun (results.h5 and results.pt, the default) aggregated again as NWB into nwb/."""
    root = tmp_path_factory.mktemp("nwb")
    r = run_cli(["-m", *TINY, *NOISY, *GRID, "hydra.sweep.dir=grid", "hydra.sweeper.chunk_size=3"], root)
    assert r.returncode == 0, r.stderr
    meta = aggregate([root / "grid"], root / "out", fmt="nwb", plots=False)
    return root / "grid", root / "out", meta


@pytest.mark.slow
def test_trials_are_the_stimuli_on_one_timeline(sweep):
    folder, out, meta = sweep
    assert not (folder / "results.nwb").exists()  # both = hdf5 + pytorch, not nwb
    assert (out / "results.nwb").exists() and not (out / "results.h5").exists() and not (out / "results.pt").exists()
    assert "results.nwb" in meta["files"] and "nwb" in meta["aggregation_timing_s"]
    assert not list(out.glob(".*tmp*"))  # nothing half-written left
    trials, _, _ = read(out / "results.nwb")
    index = json.loads((folder / "stimulus_index.json").read_text())
    assert len(trials) == len(index) == 8
    assert list(trials["stimulus_id"]) == sorted(index)
    # stop = start + T x dt (200 steps of 1 ms), the next start TRIAL_GAP_S later
    np.testing.assert_allclose(trials["stop_time"] - trials["start_time"], 0.2)
    assert trials["start_time"].iloc[0] == 0.0
    np.testing.assert_allclose(trials["start_time"].iloc[1:].to_numpy(), trials["stop_time"].iloc[:-1] + TRIAL_GAP_S)
    for _, row in trials.iterrows():
        want = index[row["stimulus_id"]]
        for k, v in want.items():  # type, every parameter, seed, repetition, noise_seed, swept keys, source
            assert row[k] == v, (row["stimulus_id"], k)
        assert row["patch"] == 0
    assert {"type", "amplitude", "sigma", "t_plateau", "seed", "repetition", "noise_seed", "neurons.sa.gain"} <= set(trials)
    assert sorted(set(trials["neurons.sa.gain"])) == [0.3, 0.6]


@pytest.mark.slow
def test_units_spike_times_equal_the_datasets_spikes(sweep):
    folder, out, _ = sweep
    trials, units, meta = read(out / "results.nwb")
    assert len(units) == sum(COUNTS.values())  # two job configs, one skin: one unit per afferent
    assert list(units["population"]) == [p for p, n in COUNTS.items() for _ in range(n)]
    assert list(units["afferent"]) == [a for n in COUNTS.values() for a in range(n)]
    assert set(units["patch"]) == {0}
    with h5py.File(folder / "results.h5") as f:
        dt = f["metadata"].attrs["dt"]
        rasters = [{p: f["responses"][sid][f"{p}_spikes"][()] for p in COUNTS} for sid in trials["stimulus_id"]]
    want = expected_times(trials, rasters, dt)
    total = 0
    for _, u in units.iterrows():
        got = np.asarray(u["spike_times"])
        np.testing.assert_allclose(got, want[u["population"], u["afferent"]], rtol=0, atol=1e-12)
        assert np.all(np.diff(got) > 0)
        total += got.size
    assert total == sum(r[p].sum() for r in rasters for p in r) > 0  # not a vacuous comparison
    assert meta["resolution"] == dt / 1000.0
    assert "(s" in meta["descriptions"]["spike_times"] and "(mm" in meta["descriptions"]["x"]


@pytest.mark.slow
def test_positions_are_the_simulators_and_rf_sigma_the_config(sweep):
    _, out, _ = sweep
    _, units, _ = read(out / "results.nwb")
    xy = units[["x", "y"]].to_numpy()
    assert np.isfinite(xy).all() and np.abs(xy).max() <= 40 * 0.3 / 2  # on the 12 mm tiny patch
    sim = positions([])
    for pop in COUNTS:
        mine = units[units["population"] == pop]
        np.testing.assert_array_equal(mine[["x", "y"]].to_numpy(), sim[pop])
    rf = dict(zip(units["population"], units["rf_sigma"]))
    assert rf == {"sa": 1.4, "ra": 1.4, "pc": 3.5, "sa2": 3.0}


@pytest.mark.slow
def test_metadata_and_nwbinspector_finds_nothing_critical(sweep):
    from nwbinspector import Importance, inspect_nwbfile

    folder, out, _ = sweep
    _, _, meta = read(out / "results.nwb")
    assert meta["identifier"] == meta["session_id"] == "grid"
    assert meta["start"].tzinfo is not None and meta["subject"] == "sensoryforge-model"
    notes = json.loads(meta["notes"])
    with h5py.File(folder / "results.h5") as f:
        assert notes["config"] == json.loads(f["metadata"].attrs["config"])
    assert notes["batch_id"] == "grid" and notes["trial_gap_s"] == TRIAL_GAP_S and len(notes["patches"]) == 1
    found = list(inspect_nwbfile(nwbfile_path=str(out / "results.nwb")))
    worst = [m for m in found if m.importance.value > Importance.BEST_PRACTICE_SUGGESTION.value]
    assert not worst, [(m.importance.name, m.check_function_name, m.message) for m in worst]
    # what remains is by choice: no experimenter or institution to name (a simulation), and a
    # repetition column of 0s and 1s that stays an integer (more repetitions are more values)
    assert {m.check_function_name for m in found} <= {
        "check_experimenter_exists", "check_institution", "check_column_binary_capability"}


@pytest.mark.slow
def test_a_failed_write_leaves_no_file(sweep, tmp_path, monkeypatch):
    import pynwb

    folder, _, _ = sweep

    def boom(self, *a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pynwb.NWBHDF5IO, "write", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        aggregate([folder], tmp_path, fmt="nwb", plots=False)
    assert not (tmp_path / "results.nwb").exists() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_sweep_with_dataset_format_nwb_and_units_per_patch(tmp_path):
    """Through the command line; the swept SA count makes two patches (two skins)."""
    r = run_cli(["-m", *TINY, *NOISY, "stimulus.amplitude=40", "neurons.sa.count=9,16", "dataset.format=nwb",
                 "hydra.sweep.dir=counts"], tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "counts"
    assert (folder / "results.nwb").exists() and not (folder / "results.h5").exists()
    trials, units, _ = read(folder / "results.nwb")
    assert len(trials) == 2 and list(trials["neurons.sa.count"]) == [9, 16] and list(trials["patch"]) == [0, 1]
    sizes = [{**COUNTS, "sa": 9}, COUNTS]
    assert len(units) == sum(sum(c.values()) for c in sizes)
    spikes = job_spikes(folder)
    want = expected_times(trials, [spikes[s] for s in trials["stimulus_id"]], 1.0)
    for k, counts in enumerate(sizes):
        mine = units[units["patch"] == k]
        assert list(mine["population"]) == [p for p, n in counts.items() for _ in range(n)]
        np.testing.assert_array_equal(mine[["x", "y"]].to_numpy(), np.concatenate(
            list(positions([f"neurons.sa.count={counts['sa']}"]).values())))
        start, stop = trials["start_time"].iloc[k], trials["stop_time"].iloc[k]
        for _, u in mine.iterrows():  # a unit spikes in the trials of its own patch only
            got = np.asarray(u["spike_times"])
            assert np.all((got >= start) & (got < stop))
            mask = want[u["population"], u["afferent"]]
            np.testing.assert_allclose(got, mask[(mask >= start) & (mask < stop)], rtol=0, atol=1e-12)


def test_a_bad_format_is_one_line_naming_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"^format=xml: must be one of hdf5, pytorch, both, nwb$"):
        aggregate([tmp_path], tmp_path, fmt="xml")
    r = run_cli([*TINY, "dataset.format=xml", "dry_run=true"], tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        "sensoryforge: error: dataset.format=xml: must be one of both, hdf5, pytorch, nwb")


def test_a_batch_files_save_format_nwb_is_dataset_format_nwb(tmp_path):
    from sensoryforge.sweep.batchfile import load_batch_file

    p = tmp_path / "b.yml"
    p.write_text("batch:\n  output_dir: out\n  save_format: nwb\n  stimuli:\n    - type: gaussian\n")
    assert load_batch_file(p).format == "nwb"


PROBE = """
import sys
sys.argv = [sys.argv[1], "--help"]
try:
    __import__(sys.argv[0]).__dict__  # noqa
    import runpy
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print("PYNWB", "pynwb" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("module", ["sensoryforge.run", "sensoryforge.cli.aggregate"])
def test_help_does_not_load_pynwb(tmp_path, module):
    r = subprocess.run([sys.executable, "-c", PROBE, module], cwd=tmp_path, env=cli_env(), capture_output=True,
                       text=True, timeout=300)
    assert "usage" in (r.stdout + r.stderr).lower() or "powered by hydra" in r.stdout.lower()
    assert r.stderr.strip().splitlines()[-1] == "PYNWB False"
