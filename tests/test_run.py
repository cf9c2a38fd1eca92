"""`sensoryforge` single runs through the real command line: files written, summary, determinism."""

import json

import numpy as np
import pytest

from conftest import TINY


def run_dir(tmp_path, name):
    return tmp_path / name


def test_a_run_writes_its_job_folder_and_prints_a_summary(cli, tmp_path):
    r = cli(*TINY, "hydra.run.dir=one")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "one"
    for line in ("gaussian:", "SA ", "RA ", "PC ", "SA2 ", "sa_rate_mean =", f"output: {out}"):
        assert line in r.stdout
    job = json.loads((out / "job.json").read_text())
    assert job["format"] == "sensoryforge-job/1"
    assert job["counts"] == {"sa": 16, "ra": 25, "pc": 4, "sa2": 4}
    assert job["steps"] == 200 and job["dt"] == 1.0
    (s,) = job["stimuli"]
    assert s["id"] == "stim_0000" and s["status"] == "ok" and s["type"] == "gaussian"
    assert s["params"]["amplitude"] == 30.0 and s["seed"] == 0 and s["repetition"] == 0
    assert set(s["measures"]) >= {"sa_rate_mean", "ra_count_final", "pc_rate_peak", "sa2_rate_time_to_10"}
    with np.load(out / "spikes.npz") as z:
        assert sorted(z.files) == ["stim_0000/pc", "stim_0000/ra", "stim_0000/sa", "stim_0000/sa2"]
        for pop, n in job["counts"].items():
            flat = z[f"stim_0000/{pop}"]
            assert flat.size == s["spike_counts"][pop]
            assert np.all(np.diff(flat) > 0) and (flat.size == 0 or flat.max() < 200 * n)
            if pop == "sa":
                # count_final is the total spike count of the population
                assert s["measures"]["sa_count_final"] == flat.size
    with np.load(out / "series.npz") as z:
        assert z["times"][-1] == 200.0 and len(z["times"]) == 20
        assert z["stim_0000/sa_rate"].shape == (20,)
    # the marker is the last file written: nothing temporary is left behind
    assert not list(out.glob(".*tmp*"))


@pytest.mark.slow
def test_same_command_twice_is_byte_identical_another_seed_differs(cli, tmp_path):
    for name, extra in (("a", []), ("b", []), ("c", ["seed=1"])):
        assert cli(*TINY, f"hydra.run.dir={name}", *extra).returncode == 0

    def spikes(name):
        with np.load(tmp_path / name / "spikes.npz") as z:
            return {k: z[k].tobytes() for k in z.files}

    assert spikes("a") == spikes("b")
    assert spikes("a") != spikes("c")


@pytest.mark.slow
def test_intermediates_are_saved_when_asked(cli, tmp_path):
    r = cli(*TINY, "hydra.run.dir=i", "pipeline.save_intermediates=true")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "i" / "intermediates.npz") as z:
        assert z["stim_0000/sa_drive"].shape == (200, 16)
        assert z["stim_0000/ra_voltage"].shape == (200, 25)
        assert z["stim_0000/stimulus_spatial"].shape == (1, 40, 40)
        assert z["stim_0000/stimulus_temporal"].shape == (200, 1)


def test_single_run_dry_run_writes_nothing(cli, tmp_path):
    r = cli(*TINY, "dry_run=true")
    assert r.returncode == 0, r.stderr
    assert "dry run: nothing simulated, nothing written" in r.stdout
    assert "1 stimulus: gaussian" in r.stdout and "estimate:" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_injected_failure_of_a_single_run_exits_non_zero(cli, tmp_path):
    r = cli(*TINY, "hydra.run.dir=f", "fail_stimuli=[stim_0000]")
    assert r.returncode != 0
    job = json.loads((tmp_path / "f" / "job.json").read_text())
    assert job["stimuli"][0]["status"] == "failed"
    assert "failure injected on purpose" in job["stimuli"][0]["error"]
