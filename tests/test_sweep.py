"""Sweeps through the real command line: presets, dry run, chunking, failures, resume after
kill -9, the older batch format."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import pytest
import yaml

from conftest import TINY, cli_env

pytestmark = pytest.mark.slow  # every test here runs real sweeps through the command line

GRID = ["stimulus.amplitude=20,40", "stimulus.sigma=0.5,1.0", "repetition=range(2)"]  # 8 stimuli


def dataset(folder):
    """Everything a dataset says about its stimuli, minus where it came from."""
    out = {}
    with h5py.File(folder / "results.h5") as f:
        for sid in f["responses"]:
            attrs = {k: v for k, v in f["stimuli"][sid].attrs.items() if k != "source"}
            arrays = {k: f["responses"][sid][k][()].tobytes() for k in f["responses"][sid]}
            out[sid] = (json.dumps(attrs, sort_keys=True, default=str), arrays)
    return out


def test_quickstart_dry_run_counts_75_and_creates_nothing(cli, tmp_path):
    r = cli("-m", "experiment=quickstart", "dry_run=true", "hydra.sweep.dir=qs")
    assert r.returncode == 0, r.stderr
    assert "stimuli: 75 (75 to run, 0 already finished)" in r.stdout
    assert "swept stimulus.amplitude: 10, 20, 30, 40, 50 (5 values)" in r.stdout
    assert "swept repetition: 0, 1, 2 (3 values)" in r.stdout
    assert "stim_0000: stimulus.amplitude=10 stimulus.sigma=0.3 repetition=0" in r.stdout
    assert "output folder: qs" in r.stdout and "estimate: ~" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_mixed_batch_runs_both_types_in_one_dataset(cli, tmp_path):
    r = cli("-m", "experiment=mixed", "hydra.sweep.dir=mixed", *TINY)
    assert r.returncode == 0, r.stderr
    index = json.loads((tmp_path / "mixed" / "stimulus_index.json").read_text())
    assert len(index) == 21
    types = [index[k]["type"] for k in sorted(index)]
    assert types == ["gaussian"] * 12 + ["gabor"] * 9
    assert index["stim_0000"]["sigma"] == 0.5 and "frequency" not in index["stim_0000"]
    assert index["stim_0012"]["frequency"] == 0.5 and index["stim_0020"]["orientation"] == 90.0
    assert index["stim_0001"]["repetition"] == 1 and index["stim_0012"]["repetition"] == 0


def test_sweep_ids_are_stable_and_chunking_does_not_change_results(cli, tmp_path):
    runs = {}
    for name, chunk in (("one_per_job", 1), ("auto", 0), ("all_in_one", 8)):
        r = cli("-m", *GRID, *TINY, f"hydra.sweep.dir={name}", f"hydra.sweeper.chunk_size={chunk}")
        assert r.returncode == 0, r.stderr
        runs[name] = dataset(tmp_path / name)
    assert len(list((tmp_path / "one_per_job").glob("stim_*/job.json"))) == 8
    assert len(list((tmp_path / "all_in_one").glob("stim_*/job.json"))) == 1
    assert runs["one_per_job"] == runs["auto"] == runs["all_in_one"]
    index = json.loads((tmp_path / "auto" / "stimulus_index.json").read_text())
    # Hydra's order: the last key varies fastest
    assert [(v["amplitude"], v["sigma"], v["repetition"]) for _, v in sorted(index.items())] == [
        (a, s, r) for a in (20.0, 40.0) for s in (0.5, 1.0) for r in (0, 1)
    ]


def test_a_failing_stimulus_does_not_stop_the_sweep(cli, tmp_path):
    r = cli("-m", *GRID, *TINY, "hydra.sweep.dir=f", "hydra.sweeper.chunk_size=4", "fail_stimuli=[stim_0002]")
    assert r.returncode == 1
    assert "1 of 8 stimuli not in the dataset" in r.stderr
    assert "  failed 1: stim_0002 (RuntimeError: stim_0002: failure injected on purpose (fail_stimuli))" in r.stderr
    meta = json.loads((tmp_path / "f" / "batch_metadata.json").read_text())
    assert meta["num_stimuli"] == 7
    assert meta["failed_stimuli"] == [
        {"stimulus_id": "stim_0002", "error": "RuntimeError: stim_0002: failure injected on purpose (fail_stimuli)",
         "reason": "failed"}
    ]
    with h5py.File(tmp_path / "f" / "results.h5") as f:
        assert sorted(f["responses"]) == [f"stim_{i:04d}" for i in range(8) if i != 2]
    log = (tmp_path / "f" / "stim_0000-0003" / "run.log").read_text()
    assert "stim_0002 failed: RuntimeError: stim_0002: failure injected on purpose" in log
    # the other stimuli of the failing chunk are exactly what a clean run gives
    assert cli("-m", *GRID, *TINY, "hydra.sweep.dir=clean").returncode == 0
    clean = dataset(tmp_path / "clean")
    assert all(clean[k] == v for k, v in dataset(tmp_path / "f").items())


def test_rerun_into_the_same_folder_skips_finished_work(cli, tmp_path):
    args = ["-m", *GRID, *TINY, "hydra.sweep.dir=s", "hydra.sweeper.chunk_size=2"]
    assert cli(*args).returncode == 0
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("stim_*/job.json")}
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "resume: 8 of 8 stimuli already finished" in r.stderr + r.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s").glob("stim_*/job.json")} == stamps
    # the same folder with another config is refused rather than mixed
    r = cli(*args[:-1], "hydra.sweeper.chunk_size=2", "neurons.sa.gain=0.5")
    assert r.returncode == 2
    assert "already holds stim_0000 made with another config" in r.stderr


def test_kill_9_mid_sweep_then_rerun_gives_the_uninterrupted_dataset(cli, tmp_path):
    grid = ["stimulus.amplitude=10,20,30,40,50,60", "repetition=range(2)"]  # 12 stimuli
    args = ["-m", *grid, *TINY, "hydra.sweeper.chunk_size=1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sensoryforge.run", *args, "hydra.sweep.dir=k"],
        cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while len(list((tmp_path / "k").glob("stim_*/job.json"))) < 4 and time.time() < deadline:
        time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p.parent.name for p in (tmp_path / "k").glob("stim_*/job.json"))
    assert 4 <= len(finished) < 12
    assert not (tmp_path / "k" / "results.h5").exists()
    stamps = {n: (tmp_path / "k" / n / "job.json").stat().st_mtime_ns for n in finished}

    r = cli(*args, "hydra.sweep.dir=k")
    assert r.returncode == 0, r.stderr
    assert f"resume: {len(finished)} of 12 stimuli already finished" in r.stderr + r.stdout
    assert {n: (tmp_path / "k" / n / "job.json").stat().st_mtime_ns for n in finished} == stamps
    assert cli(*args, "hydra.sweep.dir=ref").returncode == 0
    assert dataset(tmp_path / "k") == dataset(tmp_path / "ref")


OLD_BATCH = {
    "metadata": {"batch_name": "legacy_sweep", "version": "1.0", "description": "older format"},
    "base_config": {
        "pipeline": {"device": "cpu", "seed": 42, "grid_size": 40, "spacing": 0.3, "center": [0.0, 0.0]},
        "neurons": {"sa_neurons": 16, "ra_neurons": 25, "pc_neurons": 4, "sa2_neurons": 4, "dt": 1.0},
        "innervation": {"receptors_per_neuron": 28},
        "temporal": {"t_pre": 20, "t_ramp": 10, "t_plateau": 100, "t_post": 50, "dt": 1.0},
    },
    "batch": {
        "output_dir": "legacy_out",
        "save_format": "hdf5",
        "save_intermediates": False,
        "stimuli": [
            {"type": "gaussian_sweep", "base_seed": 42, "repetitions": 2,
             "parameters": {"amplitude": [10.0, 30.0], "sigma": [0.5], "center_x": [0.0], "center_y": [0.0]}},
            {"type": "gabor", "repetitions": 1, "parameters": {"frequency": [1.0, 2.0], "orientation": [0, 90]}},
        ],
    },
}


def test_older_batch_yaml_runs_unchanged(cli, tmp_path):
    (tmp_path / "batch.yml").write_text(yaml.safe_dump(OLD_BATCH))
    r = cli("-m", "batch_file=batch.yml")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "legacy_out"
    assert (out / "results.h5").exists() and not (out / "results.pt").exists()  # save_format: hdf5
    index = json.loads((out / "stimulus_index.json").read_text())
    assert len(index) == 2 * 1 * 2 + 2 * 2  # product of each sweep's lists x repetitions, summed
    assert index["stim_0000"]["seed"] == 42 and index["stim_0000"]["t_plateau"] == 100.0
    assert {v["type"] for v in index.values()} == {"gaussian", "gabor"}
    meta = json.loads((out / "batch_metadata.json").read_text())
    assert meta["batch_id"] == "legacy_sweep"
    assert meta["config"]["pipeline"]["duration"] == 190.0  # t_pre + 2 t_ramp + t_plateau + t_post
    assert {p: meta["config"]["neurons"][p]["count"] for p in ("sa", "ra", "pc", "sa2")} == {"sa": 16, "ra": 25, "pc": 4, "sa2": 4}
    assert "no equivalent for innervation" in r.stderr + r.stdout


def test_batch_file_dry_run_and_bad_type(cli, tmp_path):
    (tmp_path / "batch.yml").write_text(yaml.safe_dump(OLD_BATCH))
    r = cli("-m", "batch_file=batch.yml", "dry_run=true")
    assert r.returncode == 0 and "stimuli: 8 (8 to run" in r.stdout
    bad = dict(OLD_BATCH, batch=dict(OLD_BATCH["batch"], stimuli=[{"type": "spiral_sweep", "parameters": {}}]))
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
    r = cli("-m", "batch_file=bad.yml")
    assert r.returncode == 2
    assert "batch.stimuli[0].type=spiral_sweep: unknown stimulus type; allowed: gabor, gabor_sweep" in r.stderr
    assert not (tmp_path / "legacy_out").exists()


PLAIN_BAR = re.compile(r"^(simulate|aggregate): +(\d+)% (\d+)/(\d+) \[", re.M)


@pytest.mark.parametrize("extra", [[], ["hydra.sweeper.chunk_size=3"]])
def test_progress_counts_stimuli_off_a_terminal(cli, monkeypatch, extra):
    """Off a terminal the bar is plain lines (every SENSORYFORGE_PROGRESS_S seconds and at the
    end) counting stimuli, not jobs, over the simulation and then the aggregation."""
    monkeypatch.setenv("SENSORYFORGE_PROGRESS_S", "0.2")
    r = cli("-m", *GRID, *TINY, "hydra.sweep.dir=p", *extra)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert out.index("Starting batch execution: p\nTotal stimuli: 8\nOutput directory: p") >= 0
    bars = [(m[0], int(m[2]), int(m[3])) for m in PLAIN_BAR.findall(out)]
    sim = [done for stage, done, _ in bars if stage == "simulate"]
    assert sim and sim == sorted(sim) and sim[-1] == 8, out[-2000:]
    assert {total for _, _, total in bars} == {8}
    assert bars[-1] == ("aggregate", 8, 8)
    assert "ETA" not in out and "[1/" not in out  # no per-job lines beside the bar


def test_progress_is_a_live_bar_on_a_terminal(tmp_path):
    """On a terminal (here a pty of unknown size, as `script` or a CI runner gives) the bar is
    redrawn in place as stimuli finish, with rate and ETA."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *GRID, *TINY, "hydra.sweep.dir=p",
                          "hydra.sweeper.chunk_size=2"], cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL,
                         stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert p.wait(timeout=600) == 0
    text = out.decode(errors="replace")
    drawn = re.findall(r"\rsimulate: +(\d+)%\|.*?\| (\d+)/8 \[[\d:]+<[\d:?]+, +[\d.?]+(?:stim/s|s/stim)\]", text)
    counts = [int(n) for _, n in drawn]
    assert counts and counts == sorted(counts) and counts[-1] == 8 and len(set(counts)) >= 2, text[-2000:]
    assert re.search(r"\raggregate: 100%\|.*\| 8/8", text), text[-2000:]
