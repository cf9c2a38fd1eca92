"""Nothing silent: every value a user sets is checked (type, finiteness, range, the memory and disk
it implies, the output folder) before anything runs, with one line and exit 2 and nothing written;
one sweep per folder at a time; testing switches never become results; faults while running (a
full disk, Ctrl-C) are one line, leave no temporary files, and a re-run resumes to the same data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dataset_equal import assert_same_dataset

from sensoryforge.cli.preflight import preflight
from sensoryforge.core.params import ConfigError
from sensoryforge.dataset.files import atomic, is_disk_full
from sensoryforge.dataset.jobs import read_plan
from sensoryforge.sweep.lock import LOCK_FILE

from conftest import ROOT, TINY, cli_env, run_cli

# One rule per value, shown on a sample of keys: (override, what the one line must say).
SINGLE = [
    ("stimulus.sigma=inf", "stimulus.sigma=inf: must be a finite number > 0 mm"),
    ("stimulus.amplitude=inf", "stimulus.amplitude=inf: must be a finite number >= 0 kPa"),
    ("stimulus.amplitude=1e300", "stimulus.amplitude=1e+300: must be a finite number"),
    ("stimulus.center_x=nan", "stimulus.center_x=nan: must be a finite number"),
    ("stimulus.t_plateau=inf", "stimulus.t_plateau=inf: must be a finite number >= 0 ms"),
    ("pipeline.duration=inf", "pipeline.duration=inf: must be a finite number > 0 ms"),
    ("pipeline.duration=1e12", "pipeline.duration=1000000000000.0: must be a finite number"),
    ("pipeline.spacing=-inf", "pipeline.spacing=-inf: must be a finite number > 0 mm"),
    ("neurons.ra.gain=nan", "neurons.ra.gain=nan: must be a finite number >= 0"),
    ("neurons.sa.bias=-inf", "neurons.sa.bias=-inf: must be a finite number"),
    ("neurons.pc.izhikevich.c=inf", "neurons.pc.izhikevich.c=inf: must be a finite number"),
    ("outcome.bin=inf", "outcome.bin=inf: must be a finite number > 0 ms"),
    ("seed=-1", "seed=-1: must be >= 0"),
    ("pipeline.seed=-5", "pipeline.seed=-5: must be >= 0"),
    ("pipeline.grid_size=100000", "MB (mostly its receptor grid), more than this machine's"),
    ("pipeline.dt=1e-6", "MB (mostly its spiking loop), more than this machine's"),
    ("neurons.sa.count=100000000", "MB (mostly its receptive fields), more than this machine's"),
    ("pipeline.save_intermediates=true pipeline.duration=900000 pipeline.dt=0.001", "more than this machine's"),
    ("stimulus.amplitude=range(0)", "stimulus.amplitude=range(0): a sweep; add -m to run it"),
    ("stimulus.amplitude=1,2", "stimulus.amplitude=1,2: a sweep; add -m to run it"),
]


@pytest.mark.parametrize("override, message", SINGLE, ids=[s[0] for s in SINGLE])
def test_every_bad_value_is_one_line_before_anything_runs(override, message, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as e:
        preflight([*TINY, *override.split(), f"hydra.run.dir={out}"])
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()


def test_a_too_large_job_is_refused_by_the_command_too(cli, tmp_path):
    r = cli(*TINY, "pipeline.grid_size=100000", "hydra.run.dir=out")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("sensoryforge: error: a job needs ~") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folders_are_refused(tmp_path):
    (tmp_path / "a_file").write_text("x")
    for key, path, message in [
        ("hydra.run.dir", tmp_path / "a_file", "is a file, not a folder"),
        ("hydra.run.dir", tmp_path / "a_file" / "below", "cannot be made"),
        ("hydra.sweep.dir", tmp_path / "a_file", "is a file, not a folder"),
    ]:
        multirun = ["-m"] if key == "hydra.sweep.dir" else []
        with pytest.raises(ConfigError, match=message):
            preflight([*multirun, *TINY, f"{key}={path}"])


def test_a_read_only_mount_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            preflight([*TINY, f"hydra.run.dir={ro}/x"])
        with pytest.raises(ConfigError, match="is not writable"):
            preflight(["-m", *TINY, f"hydra.sweep.dir={ro}/x"])
    finally:
        subprocess.run(["umount", str(ro)])


# Sweeps: refused by the preflight or by the sweeper (every point, every distinct job config)
SWEEPS = [
    (["stimulus.amplitude=range(0)"], "stimulus.amplitude=range(0): an empty sweep"),
    (["stimulus.amplitude=range(5,1)"], "stimulus.amplitude=range(5,1): an empty sweep"),
    (["stimulus.amplitude=1,2", "hydra/launcher=parallel", "hydra.launcher.n_jobs=0"], "hydra.launcher.n_jobs=0: must be"),
    (["stimulus.amplitude=1,2", "hydra.sweeper.chunk_size=-1"], "hydra.sweeper.chunk_size=-1: must be 0 (automatic)"),
    (["stimulus.amplitude=1,2", "hydra.sweeper.min_chunk_size=9", "hydra.sweeper.max_chunk_size=3"],
     "hydra.sweeper.min_chunk_size=9: must be <= hydra.sweeper.max_chunk_size=3"),
    (["stimulus.amplitude=1,2", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=0"],
     "hydra.launcher.cpus_per_task=0: must be an integer >= 1"),
    (["stimulus.sigma=1,inf"], "stim_0001: stimulus.sigma=inf: must be a finite number > 0 mm"),
    (["seed=0,-1"], "seed=-1: must be >= 0"),
    (["pipeline.grid_size=80,100000"], "(mostly its receptor grid), more than this machine's"),
    (["stimulus.amplitude=1,2", "hydra/launcher=slurm", "hydra.launcher.mem_gb=1", "pipeline.dt=0.0001"],
     "hydra.launcher.mem_gb=1: a task needs ~"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", SWEEPS, ids=[" ".join(a) for a, _ in SWEEPS])
def test_bad_sweeps_are_one_line_and_write_nothing(cli, tmp_path, args, message):
    r = cli("-m", *TINY, *args, "hydra.sweep.dir=sw")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and message in r.stderr
    assert [line for line in r.stderr.splitlines() if not line.startswith("[")] == [r.stderr.strip().splitlines()[-1]]
    assert not (tmp_path / "sw").exists()


@pytest.mark.slow
def test_batch_file_without_m_runs_the_sweep(cli, tmp_path):
    (tmp_path / "b.yml").write_text(
        "batch:\n  output_dir: from_file\n  stimuli:\n    - type: gaussian\n      parameters: {amplitude: [10, 20]}\n"
    )
    r = cli("batch_file=b.yml", *TINY)
    assert r.returncode == 0, r.stderr
    assert "runs a sweep" in r.stderr
    meta = json.loads((tmp_path / "from_file" / "batch_metadata.json").read_text())
    assert meta["num_stimuli"] == 2 and not (tmp_path / "outputs").exists()


# -- one sweep per folder ------------------------------------------------------------------------


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sensoryforge.run", *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_sweeps_started_together_one_runs_the_other_is_refused(tmp_path):
    args = ["-m", *TINY, "stimulus.amplitude=10,20,30", "repetition=range(30)", "hydra.sweep.dir=sw"]
    procs = [_start(args, tmp_path) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert "another sweep is running in this folder (host " in refused and "pid " in refused
    assert "Traceback" not in refused and len(refused.strip().splitlines()) == 1
    meta = json.loads((tmp_path / "sw" / "batch_metadata.json").read_text())
    assert meta["num_stimuli"] == 90 and meta["num_failed"] == 0


@pytest.mark.slow
def test_a_stale_lock_of_a_dead_process_is_taken_over(cli, tmp_path):
    sw = tmp_path / "sw"
    sw.mkdir()
    (sw / LOCK_FILE).write_text("host elsewhere, pid 999999, started long ago\n")  # nobody holds it
    (sw / ".results.h5.tmp4242").write_text("half")  # what a killed writer leaves
    r = cli("-m", *TINY, "stimulus.amplitude=10,20", "hydra.sweep.dir=sw")
    assert r.returncode == 0, r.stderr
    assert not list(sw.glob(".*.tmp*")) and (sw / "results.h5").exists()


# -- testing switches are not results --------------------------------------------------------------


@pytest.mark.slow
def test_fail_stimuli_never_enters_the_plan_points_or_tables(cli, tmp_path):
    grid = [*TINY, "stimulus.amplitude=10,20", "repetition=range(2)"]
    r = cli("-m", *grid, "fail_stimuli=[stim_0001]", "hydra.sweep.dir=sw")
    assert r.returncode == 1 and "stim_0001" in r.stderr
    plan = read_plan(tmp_path / "sw")
    assert plan.header["swept"] == ["stimulus.amplitude", "repetition"]
    assert all("fail_stimuli" not in plan.point(i) for i in range(len(plan.ids)))
    assert cli("-m", *grid, "hydra.sweep.dir=sw").returncode == 0
    assert cli("-m", *grid, "hydra.sweep.dir=clean").returncode == 0
    assert_same_dataset(tmp_path / "sw" / "results.h5", tmp_path / "clean" / "results.h5")
    for name in ("summary.csv", "raw.csv", "stimulus_index.json", "batch_metadata.json"):
        assert "fail_stimuli" not in (tmp_path / "sw" / name).read_text(), name
    summary = (tmp_path / "sw" / "summary.csv").read_text().splitlines()
    assert len(summary) == 3  # header + one row per amplitude, each of n = 2


def test_a_single_run_that_fails_is_one_line_and_exit_1(cli, tmp_path):
    r = cli(*TINY, "fail_stimuli=[stim_0000]", "hydra.run.dir=out")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"sensoryforge: error: stim_0000 failed: RuntimeError: stim_0000: failure injected on purpose "
        f"(fail_stimuli) (traceback in {tmp_path / 'out' / 'job.json'})"
    ]
    rec = json.loads((tmp_path / "out" / "job.json").read_text())["stimuli"][0]
    assert rec["status"] == "failed" and "Traceback" in rec["traceback"]
    assert "fail_stimuli" not in rec["point"]


# -- faults ----------------------------------------------------------------------------------------


def test_a_failed_write_leaves_nothing_and_a_full_disk_is_named(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(ZeroDivisionError), atomic(target) as tmp:
        tmp.write_text("partial")
        raise ZeroDivisionError("a writer failed")
    assert list(tmp_path.iterdir()) == []
    full = OSError(28, "No space left on device")
    assert is_disk_full(full, target) and not is_disk_full(ValueError("bad"), target)
    wrapped = RuntimeError("[enforce fail at inline_container.cc] unexpected pos 166336 vs 166229")
    wrapped.__cause__ = full
    assert is_disk_full(wrapped, target)


@pytest.mark.slow
def test_disk_full_is_one_line_and_the_resume_is_identical(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    grid = [*TINY, "stimulus.amplitude=10,20,30", "repetition=range(25)"]
    try:
        r = run_cli(["-m", *grid, f"hydra.sweep.dir={small}/sw"], tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f"sensoryforge: error: no space left on the device of {small}/sw/")
        assert "free some space and run the same command again" in last
        assert not list(small.rglob(".*.tmp*"))
        moved = tmp_path / "big"
        subprocess.run(["cp", "-a", str(small / "sw"), str(moved)], check=True)
    finally:
        subprocess.run(["umount", str(small)])
    assert run_cli(["-m", *grid, f"hydra.sweep.dir={moved}"], tmp_path).returncode == 0
    assert run_cli(["-m", *grid, "hydra.sweep.dir=clean"], tmp_path).returncode == 0
    assert_same_dataset(moved / "results.h5", tmp_path / "clean" / "results.h5")


@pytest.mark.slow
def test_ctrl_c_is_one_line_leaves_no_temporaries_and_resumes_identically(tmp_path):
    grid = [*TINY, "stimulus.amplitude=10,20,30", "repetition=range(100)", "hydra.sweeper.chunk_size=30"]
    # a terminal's Ctrl-C: SIGINT to the whole process group, with SIGINT's default handling
    # (a background shell would ignore it)
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *grid, "hydra.sweep.dir=sw"], cwd=tmp_path,
                         env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not list((tmp_path / "sw").glob("*/job.json")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "sensoryforge: error: interrupted; finished stimuli are kept: run the same command again to resume"
    )
    assert not list((tmp_path / "sw").rglob(".*.tmp*"))
    assert run_cli(["-m", *grid, "hydra.sweep.dir=sw"], tmp_path).returncode == 0
    assert run_cli(["-m", *grid, "hydra.sweep.dir=clean"], tmp_path).returncode == 0
    assert_same_dataset(tmp_path / "sw" / "results.h5", tmp_path / "clean" / "results.h5")


def test_every_torch_load_passes_weights_only():
    for path in (ROOT / "sensoryforge").rglob("*.py"):
        for line in path.read_text().splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"
