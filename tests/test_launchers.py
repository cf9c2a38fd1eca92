"""Launcher presets: hydra/launcher=parallel (joblib across cores) and the Slurm preset's chunking.

The real Slurm runs are in test_slurm.py."""

from __future__ import annotations

import json
import re

import joblib
import pytest
from dataset_equal import assert_same_dataset

from sensoryforge.sweep.launchers import available_cores, parallel_jobs, parallelism
from sensoryforge.sweep.plan import chunk_size

from conftest import TINY, run_cli

# 12 stimuli: 3 amplitudes x 2 widths x 2 repetitions
SWEEP = [*TINY, "stimulus.amplitude=10,20,30", "stimulus.sigma=0.5,1.0", "repetition=0,1"]
PROGRESS = re.compile(r"^simulate: +\d+% (\d+)/(\d+) \[", re.M)


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """The reference: the sweep with Hydra's basic launcher (one job at a time)."""
    root = tmp_path_factory.mktemp("basic")
    r = run_cli(["-m", *SWEEP, "hydra.sweep.dir=basic/sweep"], root)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "basic" / "sweep"


@pytest.mark.slow
def test_parallel_launcher_matches_basic_and_shows_progress(tmp_path, basic_sweep, monkeypatch):
    monkeypatch.setenv("SENSORYFORGE_PROGRESS_S", "0.2")
    # 4 chunks of 3 stimuli over the preset's workers: one per core (n_jobs=-1)
    r = run_cli(["-m", *SWEEP, "hydra/launcher=parallel", "hydra.sweeper.chunk_size=3",
                 "hydra.sweep.dir=par/sweep"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = tmp_path / "par" / "sweep"
    data = assert_same_dataset(basic_sweep / "results.h5", sweep / "results.h5")
    assert data["num_stimuli"] == 12

    # the stimuli the worker processes finish reach the submitting command's bar
    out = r.stdout + r.stderr
    done = [int(d) for d, n in PROGRESS.findall(out) if n == "12"]
    assert done and done == sorted(done) and done[-1] == 12, out[-3000:]

    # torch threads per job: the cores divided among the workers, so one each here
    jobs = [json.loads(p.read_text()) for p in sweep.glob("*/job.json")]
    assert len(jobs) == 4
    assert {j["threads"] for j in jobs} == {1}


@pytest.mark.slow
def test_parallel_launcher_threads_follow_n_jobs(tmp_path):
    r = run_cli(["-m", *TINY, "stimulus.amplitude=10,20", "hydra/launcher=parallel",
                 "hydra.launcher.n_jobs=1", "hydra.sweep.dir=sweep"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/job.json")]
    assert jobs and {j["threads"] for j in jobs} == {available_cores()}


def test_parallel_jobs_follows_joblib_n_jobs():
    assert parallel_jobs(-1, 8) == 8  # every core
    assert parallel_jobs(-2, 8) == 7  # all but one
    assert parallel_jobs(-8, 8) == 1  # all but seven: the last value that leaves a worker
    assert parallel_jobs(3, 8) == 3
    assert parallel_jobs(12, 8) == 12  # more than the cores: joblib runs them (oversubscribed)
    assert parallel_jobs(None, 8) == 1  # joblib's default: one at a time
    # the default core count is joblib's, and the cores this process may use: the lower of both
    cores = min(available_cores(), joblib.cpu_count())
    assert parallel_jobs(-1) == cores
    # joblib's own answer, where it has one (it says 1 for what is refused here)
    with joblib.parallel_config(backend="loky"):
        for n in (-1, -joblib.cpu_count(), 1, 3, 2 * joblib.cpu_count()):
            assert parallel_jobs(n, joblib.cpu_count()) == joblib.effective_n_jobs(n)


@pytest.mark.parametrize(
    "n_jobs, why",
    [
        (0, "0 is no worker"),
        (-9, "all 8 cores but 8 is no worker"),
        (-20, "all 8 cores but 19 is no worker"),
        (1.5, "not an integer"),
        ("4", "not an integer"),
        (True, "not an integer"),
    ],
)
def test_a_worker_count_below_one_is_refused_in_one_line(n_jobs, why):
    """joblib would quietly run one worker (or raise deep in a worker for 0): refused up front."""
    from omegaconf import OmegaConf

    from sensoryforge.core.params import ConfigError
    from sensoryforge.sweep.launchers import check_launcher

    line = (f"hydra.launcher.n_jobs={n_jobs}: must be 1, 2, ... (jobs at a time) or -1 .. -8 "
            f"(all 8 cores but |n| - 1: -1 every core, -2 all but one); {why}")
    with pytest.raises(ConfigError) as e:
        parallel_jobs(n_jobs, 8)
    assert str(e.value) == line and "\n" not in line
    launcher = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                                 "n_jobs": n_jobs})
    with pytest.raises(ConfigError, match=re.escape(line)):
        check_launcher(launcher, cores=8)
    check_launcher(OmegaConf.create({"n_jobs": -8}), cores=8)  # all but seven of 8: one worker, fine


@pytest.mark.slow
def test_n_jobs_is_refused_before_the_sweep_starts(tmp_path):
    cores = min(available_cores(), joblib.cpu_count())
    r = run_cli(["-m", *TINY, "stimulus.amplitude=10,20", "hydra/launcher=parallel",
                 f"hydra.launcher.n_jobs={-cores - 1}", "hydra.sweep.dir=sweep"], tmp_path)
    assert r.returncode != 0 and not (tmp_path / "sweep").exists()
    assert f"hydra.launcher.n_jobs={-cores - 1}: must be 1, 2, ... (jobs at a time) or -1 .. -{cores}" in r.stderr
    assert f"; all {cores} cores but {cores} is no worker" in r.stderr


def _hydra(*overrides):
    """The composed hydra node (launcher, sweeper) for these overrides."""
    from hydra import compose, initialize_config_dir

    from sensoryforge.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="run"):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra


@pytest.mark.parametrize(
    "overrides, n, size",
    [
        (["hydra/launcher=slurm"], 75, 38),  # 2 array tasks: at least 32 stimuli each
        (["hydra/launcher=slurm"], 20, 20),  # a small sweep is one task
        (["hydra/launcher=slurm"], 1_000, 33),  # 31 tasks
        (["hydra/launcher=slurm"], 10_000, 157),  # one wave of 64 array tasks
        (["hydra/launcher=slurm"], 100_000, 256),  # at most max_chunk_size
        (["hydra/launcher=submitit_slurm"], 10_000, 40),  # 256 array tasks at a time
        (["hydra/launcher=slurm", "hydra.sweeper.chunk_size=5"], 10_000, 5),  # explicit wins
        (["hydra/launcher=slurm", "hydra.launcher.array_parallelism=2"], 1_000, 256),  # max wins
        (["hydra/launcher=parallel", "hydra.launcher.n_jobs=2"], 75, 10),  # ~4 chunks per worker
        ([], 75, 19),  # basic: one job at a time, still ~4 chunks
    ],
)
def test_chunk_size_of_presets(overrides, n, size):
    hc = _hydra(*overrides)
    assert chunk_size(n, hc.sweeper, hc.launcher) == size


def test_slurm_preset_values():
    launcher = _hydra("hydra/launcher=slurm").launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition is None  # the cluster's default partition
    assert parallelism(launcher) == (64, True)
    par = _hydra("hydra/launcher=parallel").launcher
    assert par._target_.endswith("JoblibLauncher") and par.n_jobs == -1
    assert parallelism(par) == (min(available_cores(), joblib.cpu_count()), False)


@pytest.mark.slow
def test_slurm_preset_dry_run(tmp_path):
    """The command line shows the preset's chunking; a dry run needs no cluster and writes nothing."""
    r = run_cli(["-m", "experiment=quickstart", "dry_run=true", "hydra/launcher=slurm"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "jobs: 2 (up to 38 stimuli each), 64 at a time" in r.stdout, r.stdout
    assert not (tmp_path / "multirun").exists()
