"""A real Slurm cluster: sweeps through hydra/launcher=submitit_slurm (and the `slurm` preset).

The session fixture starts a single-node cluster on this machine (scripts/slurm/cluster.py:
munged, MariaDB, slurmdbd, slurmctld, slurmd, all private to a temporary folder) and stops it by
PID at the end, whatever happened. Needs root and Debian's Slurm packages
(`bash scripts/slurm/install.sh`); without them the tests skip, saying so, unless
SENSORYFORGE_REQUIRE_SLURM=1 (CI), where they fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dataset_equal import assert_same_dataset, assert_same_responses, read_dataset

from conftest import ROOT, TINY, cli_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

REQUIRE = os.environ.get("SENSORYFORGE_REQUIRE_SLURM", "") not in ("", "0")

# 12 stimuli: 3 amplitudes x 2 widths x 2 repetitions; on Slurm 4 array tasks of 3 stimuli each
SWEEP = [*TINY, "stimulus.amplitude=10,20,30", "stimulus.sigma=0.5,1.0", "repetition=0,1"]
ON_SLURM = ["hydra.sweeper.chunk_size=3", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10"]


def _cluster_module():
    spec = importlib.util.spec_from_file_location("sensoryforge_slurm_cluster", ROOT / "scripts" / "slurm" / "cluster.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def slurm():
    """A running single-node cluster; its `env` points Slurm's clients at it."""
    cluster_mod = _cluster_module()
    reason = cluster_mod.missing()
    if reason:
        if REQUIRE:
            pytest.fail(f"SENSORYFORGE_REQUIRE_SLURM is set but {reason}", pytrace=False)
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="sensoryforge-slurm-"))
    cluster = cluster_mod.Cluster(root)
    t0 = time.monotonic()
    try:
        cluster.start()  # stops whatever it started if it fails
        print(f"\nslurm test cluster up in {time.monotonic() - t0:.1f} s ({root})")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def run_sweep(slurm, cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**cli_env(), "SLURM_CONF": slurm.env["SLURM_CONF"]}
    return subprocess.run([sys.executable, "-m", "sensoryforge.run", "-m", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def sweep_while(slurm, cwd: Path, args: list[str], env: dict, act) -> tuple[subprocess.CompletedProcess, object]:
    """The sweep `args` on the cluster, with `act(proc)` done to it while it runs; (its result,
    what `act` returned). The sweep is killed if anything goes wrong on the way."""
    env = {**cli_env(), "SLURM_CONF": slurm.env["SLURM_CONF"], **env}
    with subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *args], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL) as proc:
        try:
            value = act(proc)
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), value


def explain(r: subprocess.CompletedProcess, slurm) -> str:
    return f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n{slurm.log_tail('slurmctld')}"


def accounted(slurm, job_id: str, n: int, timeout: float = 30) -> dict[str, str]:
    """task -> state of an array job in Slurm's accounting, once it lists `n` tasks (slurmctld
    reports to slurmdbd asynchronously)."""
    end = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job_id],
                             env=slurm.env, capture_output=True, text=True, check=True).stdout
        states = dict(line.split("|", 1) for line in out.split())
        if len(states) >= n or time.monotonic() > end:
            return states
        time.sleep(0.2)


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory):
    """The reference: the same sweep with Hydra's basic launcher, in a folder of the same name."""
    root = tmp_path_factory.mktemp("basic")
    env = cli_env()
    r = subprocess.run([sys.executable, "-m", "sensoryforge.run", "-m", *SWEEP, "hydra.sweep.dir=basic/sweep"],
                       cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return root / "basic" / "sweep"


def test_sweep_on_slurm_matches_basic_launcher(slurm, tmp_path, basic_sweep):
    r = run_sweep(slurm, tmp_path, *SWEEP, "hydra/launcher=submitit_slurm", *ON_SLURM,
                  "hydra.sweep.dir=slurm/sweep")
    assert r.returncode == 0, explain(r, slurm)
    sweep = tmp_path / "slurm" / "sweep"
    data = assert_same_dataset(basic_sweep / "results.h5", sweep / "results.h5")
    assert data["num_stimuli"] == 12

    # it really ran as a 4-task Slurm array, 3 stimuli per task, and the terminal saw each end
    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/job.json")}
    assert sorted(jobs) == ["stim_0000-0002", "stim_0003-0005", "stim_0006-0008", "stim_0009-0011"]
    assert all(len(j["stimuli"]) == 3 for j in jobs.values())
    assert {j["threads"] for j in jobs.values()} == {1}  # cpus_per_task
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(tasks) == 4 and len({t.split("_")[0] for t in tasks}) == 1, tasks
    assert accounted(slurm, tasks[0].split("_")[0], 4) == {t: "COMPLETED" for t in tasks}
    progress = [line for line in r.stdout.splitlines() if "finished (Slurm job" in line]
    assert len(progress) == 4 and any("[4/4]" in line for line in progress), r.stdout[-3000:]


def _kill_first_task_once_running(slurm, proc: subprocess.Popen, timeout: float = 120) -> str:
    """Waits until the sweep's first array task runs, then cancels it with SIGKILL to all its
    processes (a plain scancel sends SIGTERM first, which submitit's job ignores, so a short
    task may still finish within KillWait). squeue says RUNNING once the controller has
    allocated the task, which can be before slurmd has started its batch step; a signal sent
    then reaches no process and is lost, so it is sent again until the task has left RUNNING.
    Returns the task's Slurm id."""
    def state(task: str = "") -> list[str]:
        return subprocess.run(["squeue", "-h", "-o", "%i %T", *(["-j", task] if task else [])],
                              env=slurm.env, capture_output=True, text=True).stdout.splitlines()

    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        for line in state():
            task, status = line.split()
            if task.endswith("_0") and status == "RUNNING":
                while time.monotonic() < end and any(s.split()[1:] == ["RUNNING"] for s in state(task)):
                    subprocess.run(["scancel", "--full", "--signal=KILL", task], env=slurm.env)
                    time.sleep(0.25)
                return task
        time.sleep(0.05)
    raise AssertionError("the sweep's first array task was never seen running")


def test_job_killed_on_slurm_is_recorded_then_redone(slurm, tmp_path, basic_sweep):
    """An array task that dies (killed by scancel while it runs) does not stop the sweep: the other tasks
    are waited for and their stimuli are in the dataset, the lost ones are in failed_stimuli with
    Slurm's reason, the exit code is non-zero. Running the command again redoes only them, and
    the dataset is then the basic launcher's, bit for bit."""
    args = [*SWEEP, "hydra/launcher=slurm", *ON_SLURM, "hydra.sweeper.chunk_size=6", "hydra.launcher.mem_gb=1",
            "hydra.launcher.array_parallelism=1",  # one task at a time: task 0 dies while task 1 waits
            "hydra.sweep.dir=slurm/sweep"]
    r, task = sweep_while(slurm, tmp_path, args, {}, lambda proc: _kill_first_task_once_running(slurm, proc))
    assert r.returncode == 1, explain(r, slurm)
    lost = [f"stim_{i:04d}" for i in range(6)]
    # one line for the lost task: its stimuli, the Slurm job, its state, why, its log
    (line,) = [line for line in r.stderr.splitlines() if line.startswith("  lost ")]
    m = re.fullmatch(rf"  lost 6: stim_0000..stim_0005 \(Slurm job {task} ended in state CANCELLED( by \d+)? "
                     r"without results \(cancelled: scancel or an administrator\); its log: (\S+)\)", line)
    assert m and Path(m[2]).is_file(), line

    sweep = tmp_path / "slurm" / "sweep"
    failed = json.loads((sweep / "batch_metadata.json").read_text())["failed_stimuli"]
    if isinstance(failed, list):  # [{stimulus_id, error}, ...]
        failed = {f["stimulus_id"]: f["error"] for f in failed}
    assert sorted(failed) == lost
    for sid in lost:
        error = failed[sid]
        assert f"Slurm job {task}" in error and "CANCELLED" in error, error
    data = read_dataset(sweep / "results.h5")
    reference = read_dataset(basic_sweep / "results.h5")
    kept = [f"stim_{i:04d}" for i in range(6, 12)]
    assert sorted(data["responses"]) == kept and data["num_stimuli"] == 6
    assert_same_responses(data, reference, kept)

    # the same command again: only the lost chunk runs, and nothing is missing any more
    rerun = run_sweep(slurm, tmp_path, *args)
    assert rerun.returncode == 0, explain(rerun, slurm)
    assert "skipped: stim_0006..stim_0011" in rerun.stdout + rerun.stderr, rerun.stdout[-3000:]
    assert_same_dataset(basic_sweep / "results.h5", sweep / "results.h5")


def test_an_impossible_request_is_refused_in_one_line(slurm, tmp_path):
    """More CPUs than the node has: sbatch would accept the array and it would pend for ever
    (PartitionConfig); the sweep refuses it before anything is written, naming the option and
    the most the cluster has."""
    cpus = os.cpu_count()
    t0 = time.monotonic()
    r = run_sweep(slurm, tmp_path, *SWEEP, "hydra/launcher=slurm", f"hydra.launcher.cpus_per_task={cpus + 1}")
    took = time.monotonic() - t0
    assert r.returncode == 2, explain(r, slurm)
    assert r.stderr.splitlines() == [f"sensoryforge: error: hydra.launcher.cpus_per_task={cpus + 1}: no node of "
                                     f"partition debug has more than {cpus} CPU{'s' if cpus != 1 else ''}"]
    assert list(tmp_path.iterdir()) == []
    queue = subprocess.run(["squeue", "-h"], env=slurm.env, capture_output=True, text=True, check=True).stdout
    assert queue.strip() == "", queue
    print(f"\nrefused in {took:.1f} s")


def test_the_readme_example_runs_as_written(slurm, tmp_path):
    """The README's Slurm command, copied as written (the preset's defaults), plans, then runs to a
    complete dataset on the demo cluster."""
    text = (ROOT / "README.md").read_text()
    (cmd,) = set(re.findall(r"`(sensoryforge -m [^`]*hydra/launcher=slurm[^`]*)`", text))
    args = cmd.split()[2:]
    dry = run_sweep(slurm, tmp_path, *args, "dry_run=true")
    assert dry.returncode == 0 and "warning" not in dry.stdout + dry.stderr, explain(dry, slurm)
    assert "  cluster: partition debug (default), up: 1 node" in dry.stdout, dry.stdout
    assert list(tmp_path.iterdir()) == []
    t0 = time.monotonic()
    r = run_sweep(slurm, tmp_path, *args)
    assert r.returncode == 0, explain(r, slurm)
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    meta = json.loads((sweep / "batch_metadata.json").read_text())
    assert meta["num_stimuli"] == 75 and not meta["failed_stimuli"]
    print(f"\nREADME example: 75 stimuli in {time.monotonic() - t0:.1f} s")


def test_a_preempted_task_is_requeued_and_goes_on_from_its_next_stimulus(slurm, tmp_path):
    """A preemption (scancel --signal=USR2, what Slurm sends before it preempts or at the time
    limit) in the middle of a task: submitit requeues it, the requeued task restores the segments
    it saved and simulates only the rest, and the dataset is the basic launcher's bit for bit."""
    grid = [*TINY, "stimulus.amplitude=10,20,30", "repetition=range(60)", "pipeline.batch_size=2",
            "hydra.sweeper.chunk_size=180"]  # one task of 180 stimuli, a segment after every batch
    args = [*grid, "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            "hydra.launcher.timeout_min=10", "hydra.sweep.dir=slurm/sweep"]
    part = tmp_path / "slurm" / "sweep" / "stim_0000-0179" / "partial"

    def preempt_after_five_segments(proc):
        end = time.monotonic() + 180
        while time.monotonic() < end and proc.poll() is None and len(list(part.glob("seg_*/job.json"))) < 5:
            time.sleep(0.05)
        (task,) = subprocess.run(["squeue", "-h", "-o", "%i"], env=slurm.env, capture_output=True, text=True,
                                 check=True).stdout.split()
        subprocess.run(["scancel", "--signal=USR2", task], env=slurm.env, check=True)
        # Slurm holds a requeued job for a while before it may start (pending reason BeginTime,
        # about two minutes); what is tested is the requeued task's work, not the hold: lift it
        end = time.monotonic() + 120
        while time.monotonic() < end and proc.poll() is None:
            reasons = subprocess.run(["squeue", "-h", "-o", "%i %r"], env=slurm.env, capture_output=True,
                                     text=True).stdout.split()
            if "BeginTime" in reasons:
                subprocess.run(["scontrol", "update", f"JobId={reasons[0]}", "StartTime=now"], env=slurm.env)
                break
            time.sleep(0.1)

    r, _ = sweep_while(slurm, tmp_path, args, {"SENSORYFORGE_SEGMENT_S": "0"}, preempt_after_five_segments)
    assert r.returncode == 0, explain(r, slurm)
    job = json.loads((part.parent / "job.json").read_text())
    assert 10 <= job.get("restored", 0) < 180, job.get("restored")
    sweep = tmp_path / "slurm" / "sweep"
    logs = "".join(p.read_text() for p in [*(sweep / ".submitit").rglob("*.err"), *(sweep / ".submitit").rglob("*.out"),
                                           part.parent / "run.log"])
    assert "Caught signal SIGUSR2" in logs and f"{job['restored']} of 180 stimuli restored" in logs
    ref = tmp_path / "basic"
    b = subprocess.run([sys.executable, "-m", "sensoryforge.run", "-m", *grid, f"hydra.sweep.dir={ref}"], cwd=tmp_path,
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr[-2000:]
    assert_same_dataset(ref / "results.h5", tmp_path / "slurm" / "sweep" / "results.h5")


def _ledger_owners(sweep: Path) -> dict[str, set]:
    """stimulus id -> the (host, pid) of every task that reported it computed (progress ledgers)."""
    owners: dict[str, set] = {}
    for ledger in sweep.glob("*/progress.jsonl"):
        for line in ledger.read_text().splitlines():
            e = json.loads(line)
            for sid in e.get("ok", []):
                owners.setdefault(sid, set()).add((e["host"], e["pid"]))
    return owners


def test_detach_status_attach_and_a_killed_attacher(slurm, tmp_path, basic_sweep):
    """detach=true submits and returns; sensoryforge-status reports the tasks; the same command
    attaches (submits nothing again) and, killed -9 and run once more, attaches again; the dataset
    is the basic launcher's bit for bit and no stimulus was computed by two tasks."""
    env = {**cli_env(), "SLURM_CONF": slurm.env["SLURM_CONF"]}
    args = [*SWEEP, "hydra/launcher=slurm", *ON_SLURM, "hydra.launcher.array_parallelism=1", "hydra.sweep.dir=slurm/sweep"]
    sweep = tmp_path / "slurm" / "sweep"
    t0 = time.monotonic()
    r = run_sweep(slurm, tmp_path, *args, "detach=true")
    submit_s = time.monotonic() - t0
    assert r.returncode == 0, explain(r, slurm)
    assert "detached: 12 stimuli in 4 cluster tasks" in r.stdout, explain(r, slurm)
    launch = json.loads((sweep / "launch.json").read_text())
    assert sorted(launch["tasks"]) == ["stim_0000-0002", "stim_0003-0005", "stim_0006-0008", "stim_0009-0011"]
    st = subprocess.run([sys.executable, "-m", "sensoryforge.cli.status", str(sweep), "--jobs"], env=env,
                        capture_output=True, text=True, timeout=120)
    assert st.returncode in (0, 3), st.stdout + st.stderr
    assert st.returncode == 0 or "Slurm task " in st.stdout, st.stdout
    # the same command, attached: killed -9 once it waits, then run again
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *args], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    time.sleep(3)
    os.killpg(p.pid, 9)
    first, _ = p.communicate()
    r = run_sweep(slurm, tmp_path, *args)
    assert r.returncode == 0, explain(r, slurm) + first
    out = r.stdout + r.stderr
    # nothing was submitted twice: each chunk ran in the task the detached command submitted
    assert "submitting" not in out and "attached to " in out, out[-3000:]
    assert json.loads((sweep / "launch.json").read_text())["tasks"] == launch["tasks"]
    owners = _ledger_owners(sweep)
    assert sorted(owners) == [f"stim_{i:04d}" for i in range(12)]
    assert [sid for sid, who in owners.items() if len(who) > 1] == []  # none computed twice
    assert_same_dataset(basic_sweep / "results.h5", sweep / "results.h5")
    st = subprocess.run([sys.executable, "-m", "sensoryforge.cli.status", str(sweep)], env=env,
                        capture_output=True, text=True, timeout=120)
    assert st.returncode == 0 and st.stdout.startswith(f"sweep {sweep}: 12 of 12 stimuli done, complete"), st.stdout
    print(f"\ndetach: submitted and returned in {submit_s:.1f} s")
