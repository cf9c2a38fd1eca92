"""A Slurm request against what the cluster offers, without Slurm: `sinfo` is a fake executable on
PATH (a shell script in tmp_path) that prints what a real one prints. The real cluster's checks
are in tests/test_slurm.py."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sensoryforge.core.params import ConfigError
from sensoryforge.sweep import cluster
from sensoryforge.sweep.sweeper import failure_lines

from conftest import ROOT, cli_env

# scripts/slurm/cluster.py's single node on a 2-core machine with ~24 GB (RealMemory is 90% of it)
DEMO = "debug*|2|21694|infinite|up|(null)|1\n"
# a site: two node kinds in the default partition, a GPU partition, a short one, one that is down
SITE = """cpu*|64|257000|1-00:00:00|up|(null)|10
cpu*|128|515000|1-00:00:00|up|(null)|2
gpu|32|384000|2-00:00:00|up|gpu:a100:4(S:0-1)|4
short|16|64000|1:00:00|up|gpu:1,mps:100|3
long|16|64000|7-00:00:00|down|(null)|3
"""
PRESET = OmegaConf.load(ROOT / "conf" / "hydra" / "launcher" / "slurm.yaml")


def launcher(**kw):
    """The slurm preset's request (with submitit's defaults that matter here), changed by kw."""
    base = {k: v for k, v in OmegaConf.to_container(PRESET).items() if k != "defaults"}
    base.update(_target_="hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                nodes=1, tasks_per_node=1, gpus_per_node=None)
    base.update(kw)
    return OmegaConf.create(base)


def fake(tmp_path: Path, name: str, script: str) -> Path:
    """A directory holding an executable `name` that runs the shell `script`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def fake_sinfo(tmp_path: Path, output: str) -> Path:
    return fake(tmp_path, "sinfo", f"cat <<'EOF'\n{output}EOF\n")


@pytest.fixture
def on_path(monkeypatch):
    """Puts a fake bin folder first on PATH for this process (sinfo's answer is cached per process)."""
    def put(bin_dir: Path, alone: bool = False):
        monkeypatch.setenv("PATH", str(bin_dir) if alone else f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        cluster._partitions.cache_clear()
    yield put
    cluster._partitions.cache_clear()


# -- what sinfo says ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, minutes", [
    ("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30), ("1:00:00", 60), ("2:30:00", 150),
    ("1-00:00:00", 1440), ("7-00:00:00", 10080), ("1-12", 2160), ("0:30", 0.5),
])
def test_slurm_times(text, minutes):
    assert cluster.slurm_minutes(text) == minutes


@pytest.mark.parametrize("gres, gpus", [
    ("(null)", 0), ("gpu:4", 4), ("gpu:a100:4(S:0-1)", 4), ("gpu:1,mps:100", 1), ("mps:100", 0),
    ("gpu:a100:2,gpu:v100:2", 4), ("gpu", 1),
])
def test_gpus_of_gres(gres, gpus):
    assert cluster._gpus(gres) == gpus


def test_the_demo_cluster_as_sinfo_reports_it():
    (p,) = cluster.parse_sinfo(DEMO).values()
    assert (p.name, p.default, p.up, p.time_min, p.cpus, p.mem_mb, p.gpus, p.count) == (
        "debug", True, True, None, 2, 21694, 0, 1)


def test_a_site_with_several_partitions():
    parts = cluster.parse_sinfo(SITE + "\n" + "a line that is not sinfo's\n")
    assert list(parts) == ["cpu", "gpu", "short", "long"]
    cpu, gpu, short, long = parts.values()
    assert cpu.default and not gpu.default and not short.default
    assert (cpu.cpus, cpu.mem_mb, cpu.count, cpu.time_min, len(cpu.nodes)) == (128, 515000, 12, 1440, 2)
    assert (gpu.gpus, gpu.time_min, gpu.time_text) == (4, 2880, "2-00:00:00")
    assert (short.gpus, short.time_min) == (1, 60)
    assert not long.up and long.state == "down" and long.time_min == 7 * 1440


# -- the request against it -----------------------------------------------------------------------


@pytest.mark.parametrize("sinfo, request_, line", [
    (DEMO, {"cpus_per_task": 4}, "hydra.launcher.cpus_per_task=4: no node of partition debug has more than 2 CPUs"),
    (DEMO, {"cpus_per_task": 2, "tasks_per_node": 2},
     "hydra.launcher.cpus_per_task=2 x hydra.launcher.tasks_per_node=2 = 4 CPUs: no node of partition debug "
     "has more than 2 CPUs"),
    (DEMO, {"mem_gb": 64}, "hydra.launcher.mem_gb=64: no node of partition debug has more than 21.2 GB (21,694 MB)"),
    (DEMO, {"partition": "cpu"}, "hydra.launcher.partition=cpu: no such partition (available: debug)"),
    (DEMO, {"gpus_per_node": 1}, "hydra.launcher.gpus_per_node=1: no node of partition debug has a GPU"),
    (DEMO, {"nodes": 2}, "hydra.launcher.nodes=2: partition debug has 1 node that can run a task of this request"),
    (SITE, {"partition": "gpu", "gpus_per_node": 8},
     "hydra.launcher.gpus_per_node=8: no node of partition gpu has more than 4 GPUs"),
    (SITE, {"timeout_min": 2000}, "hydra.launcher.timeout_min=2000: partition cpu allows at most 1440 minutes "
     "per job (1-00:00:00)"),
    (SITE, {"partition": "short", "timeout_min": 120},
     "hydra.launcher.timeout_min=120: partition short allows at most 60 minutes per job (1:00:00)"),
    (SITE, {"cpus_per_task": 256}, "hydra.launcher.cpus_per_task=256: no node of partition cpu has more than "
     "128 CPUs"),
    (SITE, {"partition": "cpu,gpux"}, "hydra.launcher.partition=cpu,gpux: no such partition gpux "
     "(available: cpu, gpu, short, long)"),
    ("mix*|128|64000|infinite|up|(null)|2\nmix*|16|512000|infinite|up|(null)|1\n", {"cpus_per_task": 100, "mem_gb": 400},
     "hydra.launcher.cpus_per_task=100, mem_gb=400: no node of partition mix has all of it (its nodes: "
     "128 CPUs with 62.5 GB, 16 CPUs with 500.0 GB)"),
    (SITE, {"additional_parameters": {"partition": "gpu"}, "gres": "gpu:8"},
     "hydra.launcher.gres=gpu:8: no node of partition gpu has more than 4 GPUs"),
])
def test_a_request_no_node_can_run_is_one_line(sinfo, request_, line):
    with pytest.raises(ConfigError) as e:
        cluster.check_request(launcher(**request_), cluster.parse_sinfo(sinfo))
    assert str(e.value) == line


@pytest.mark.parametrize("sinfo, request_", [
    (DEMO, {}),  # the preset as it is, on the demo cluster
    (DEMO, {"partition": "debug", "cpus_per_task": 1, "mem_gb": 1}),
    (SITE, {"cpus_per_task": 100}),  # the 128-CPU nodes
    (SITE, {"partition": "gpu", "gpus_per_node": 4, "timeout_min": 2880}),
    (SITE, {"partition": "short,gpu", "gpus_per_node": 2}),  # sbatch takes the first that fits
    (SITE, {"partition": "short", "gres": "gpu:1", "timeout_min": 60}),
    (SITE, {"nodes": 12}),
])
def test_a_request_that_fits_passes(sinfo, request_):
    assert cluster.check_request(launcher(**request_), cluster.parse_sinfo(sinfo)) == []


def test_a_time_limit_within_submitits_signal_delay_is_refused(tmp_path, on_path):
    """submitit tells a task to stop signal_delay_s (120) before its limit: timeout_min=2 would stop
    every task as it starts (measured: the task ends within seconds, not requeued)."""
    on_path(fake_sinfo(tmp_path, DEMO))
    with pytest.raises(ConfigError) as e:
        cluster.check_cluster(launcher(timeout_min=2, signal_delay_s=120), dry_run=True)
    assert str(e.value) == ("hydra.launcher.timeout_min=2: submitit tells a task to stop hydra.launcher.signal_delay_s="
                            "120 s before its time limit, so every task would stop as it starts; ask for more than 2 "
                            "minutes (or a smaller signal_delay_s)")
    assert cluster.check_cluster(launcher(timeout_min=3, signal_delay_s=120)) == []
    assert cluster.check_cluster(launcher(timeout_min=1, signal_delay_s=30)) == []


def test_a_partition_that_is_down_is_a_warning():
    assert cluster.check_request(launcher(partition="long"), cluster.parse_sinfo(SITE)) == [
        "partition long is down: the array will wait until it is up"]


def test_no_default_partition_and_none_asked():
    with pytest.raises(ConfigError) as e:
        cluster.check_request(launcher(), cluster.parse_sinfo(SITE.replace("cpu*", "cpu")))
    assert str(e.value) == ("hydra.launcher.partition=null: this cluster has no default partition; choose one "
                            "(available: cpu, gpu, short, long)")


def test_sbatch_options_of_the_preset():
    assert cluster.sbatch_options(launcher(), 2) == [
        "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--mem=8GB", "--time=60", "--array=0-1%2"]
    assert cluster.sbatch_options(launcher(partition="gpu", mem_gb=1.5, gpus_per_node=2, array_parallelism=4,
                                           additional_parameters={"mail-type": "END", "requeue": True}), 10) == [
        "--partition=gpu", "--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--mem=1536MB", "--time=60",
        "--gpus-per-node=2", "--array=0-9%4", "--mail-type=END", "--requeue"]


def test_tasks_the_nodes_hold_at_once(tmp_path, on_path):
    on_path(fake_sinfo(tmp_path, SITE))
    assert cluster.capacity(launcher()) == 10 * min(64 // 2, 257000 // 8192) + 2 * min(64, 515000 // 8192)
    assert cluster.capacity(launcher(partition="gpu", gpus_per_node=2, cpus_per_task=8)) == 4 * 2
    on_path(fake_sinfo(tmp_path, DEMO))
    assert cluster.capacity(launcher()) == 1
    assert cluster.capacity(launcher(cpus_per_task=1, mem_gb=1)) == 2
    assert cluster.capacity(OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher"})) is None


# -- when no cluster answers ----------------------------------------------------------------------


def test_no_sinfo_is_a_warning_not_a_refusal(tmp_path, on_path):
    on_path(tmp_path, alone=True)  # nothing on PATH
    assert cluster.check_cluster(launcher(cpus_per_task=64)) == [
        "hydra/launcher=slurm: no Slurm cluster answers here (sinfo not found): the request is not checked "
        "against its nodes"]
    assert cluster.check_cluster(launcher(), dry_run=True) == []
    assert cluster.cluster_lines(launcher()) == [
        "cluster: none answers here (sinfo not found): the request is not checked against its nodes"]


def test_a_controller_that_does_not_answer_is_a_warning(tmp_path, on_path):
    on_path(fake(tmp_path, "sinfo", "echo 'sinfo: error: slurm_load_partitions: Unable to contact slurm "
                                    "controller (connect failure)' >&2\nexit 1\n"))
    assert cluster.check_cluster(launcher()) == [
        "hydra/launcher=slurm: no Slurm cluster answers here (sinfo: slurm_load_partitions: Unable to contact "
        "slurm controller (connect failure)): the request is not checked against its nodes"]


def test_a_client_without_configuration_is_not_waited_for(tmp_path, on_path):
    """Without slurm.conf a Slurm client retries for 60 s: stopped at its first complaint."""
    on_path(fake(tmp_path, "sinfo", "echo 'sinfo: error: s_p_parse_file: cannot stat file /etc/slurm/slurm.conf: "
                                    "No such file or directory, retrying in 1sec up to 60sec' >&2\nsleep 60\n"))
    t0 = time.monotonic()
    (line,) = cluster.check_cluster(launcher())
    assert time.monotonic() - t0 < 5
    assert "(sinfo: s_p_parse_file: cannot stat file /etc/slurm/slurm.conf: No such file or directory)" in line


def test_a_client_that_hangs_is_cut_short(tmp_path, on_path):
    on_path(fake(tmp_path, "sinfo", "sleep 60\n"))
    t0 = time.monotonic()
    with pytest.raises(cluster.Unreachable, match=r"^sinfo: no answer in 1 s$"):
        cluster.run(cluster.SINFO, timeout=1)
    assert time.monotonic() - t0 < 5


# -- what the user meets: the command line ------------------------------------------------------------


def sweep(tmp_path: Path, sinfo: str | None, *args: str) -> subprocess.CompletedProcess:
    """`sensoryforge -m ARGS` in an empty folder, with a fake sinfo printing `sinfo` first on PATH."""
    env = cli_env()
    env.pop("SLURM_CONF", None)
    if sinfo is not None:
        env["PATH"] = f"{fake_sinfo(tmp_path, sinfo)}{os.pathsep}{env['PATH']}"
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "sensoryforge.run", "-m", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("option, line", [
    ("hydra.launcher.cpus_per_task=64", "hydra.launcher.cpus_per_task=64: no node of partition debug has more "
     "than 2 CPUs"),
    ("hydra.launcher.partition=cpu", "hydra.launcher.partition=cpu: no such partition (available: debug)"),
    ("hydra.launcher.mem_gb=100", "hydra.launcher.mem_gb=100: no node of partition debug has more than 21.2 GB "
     "(21,694 MB)"),
    ("hydra.launcher.timeout_min=1", "hydra.launcher.timeout_min=1: submitit tells a task to stop "
     "hydra.launcher.signal_delay_s=120 s before its time limit, so every task would stop as it starts; ask for "
     "more than 2 minutes (or a smaller signal_delay_s)"),
])
@pytest.mark.parametrize("dry", [False, True])
def test_the_command_refuses_an_impossible_request_in_one_line(tmp_path, option, line, dry):
    r = sweep(tmp_path, DEMO, "experiment=quickstart", "hydra/launcher=slurm", option,
              *(["dry_run=true"] if dry else []))
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.splitlines() == [f"sensoryforge: error: {line}"]
    assert r.stdout == ""
    assert list((tmp_path / "work").iterdir()) == []  # nothing written


def readme_slurm_command() -> list[str]:
    """The Slurm example of the README, as written."""
    text = (ROOT / "README.md").read_text()
    (cmd,) = set(re.findall(r"`(sensoryforge -m [^`]*hydra/launcher=slurm[^`]*)`", text))
    return cmd.split()[2:]


def test_the_readme_example_plans_on_the_demo_cluster(tmp_path):
    r = sweep(tmp_path, DEMO, *readme_slurm_command(), "dry_run=true", "hydra.sweep.dir=sweep")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "warning" not in r.stdout + r.stderr
    lines = [line.strip() for line in r.stdout.splitlines()]
    assert "jobs: 2 (up to 38 stimuli each), 1 at a time" in lines  # one task of 2 CPUs fits the node
    start = lines.index("Slurm array: 2 tasks of 37-38 stimuli, up to 2 at a time "
                        "(hydra.launcher.array_parallelism=64)")
    assert lines[start + 1:start + 3] == [
        "sbatch --partition=debug --nodes=1 --ntasks-per-node=1 --cpus-per-task=2 --mem=8GB --time=60 "
        "--array=0-1%2",
        "cluster: partition debug (default), up: 1 node, up to 2 CPUs, 21.2 GB per node, no time limit: "
        "room for 1 task at a time (sinfo)"]
    assert re.fullmatch(r"per task: up to ~0:\d\d \(stim_0000-0037: 38 stimuli x ~\d+ ms \+ ~\d s start\) "
                        r"against hydra.launcher.timeout_min=60 less signal_delay_s=120 s \(<1% of it\)",
                        lines[start + 3]), lines[start + 3]
    assert lines[start + 4:] == []
    assert list((tmp_path / "work").iterdir()) == []


def test_the_dry_run_warns_when_a_task_would_outlive_its_time_limit(tmp_path):
    # 750 stimuli of 20 s in one task: ~0.13 s each, ~1:40 in all, against the 60 s that 3 minutes
    # less signal_delay_s (120 s) leave
    heavy = ["experiment=quickstart", "repetition=range(30)", "hydra/launcher=slurm", "pipeline.duration=20000",
             "hydra.launcher.timeout_min=3"]
    r = sweep(tmp_path, DEMO, *heavy, "hydra.sweeper.chunk_size=750", "dry_run=true")
    assert r.returncode == 0, r.stderr[-2000:]
    warnings = [line.strip() for line in r.stdout.splitlines() if "warning" in line]
    assert len(warnings) == 1, r.stdout
    m = re.fullmatch(r"warning: a task would need ~\d+:\d\d, more than hydra.launcher.timeout_min=3 less "
                     r"signal_delay_s=120 s: raise it to \d+ or more, or make tasks smaller "
                     r"\(hydra.sweeper.chunk_size=(\d+)\)", warnings[0])
    assert m, warnings[0]
    assert "(no --partition: the cluster's default)" in r.stdout
    # the suggested size fits
    r = sweep(tmp_path, DEMO, *heavy, f"hydra.sweeper.chunk_size={m[1]}", "dry_run=true")
    assert r.returncode == 0 and "warning" not in r.stdout, r.stdout
    assert re.search(r"per task: up to ~0:\d\d .* against hydra.launcher.timeout_min=3 less signal_delay_s=120 s "
                     r"\(\d+% of it\)", r.stdout)


def test_the_dry_run_without_a_cluster_says_so(tmp_path):
    r = sweep(tmp_path, None, "experiment=quickstart", "hydra/launcher=slurm", "dry_run=true")
    assert r.returncode == 0, r.stderr[-2000:]
    if "cluster: partition" in r.stdout:
        pytest.skip("a Slurm cluster answers on this machine")
    assert re.search(r"^  cluster: none answers here \(sinfo[^\n]*\): the request is not checked against its "
                     r"nodes$", r.stdout, re.M), r.stdout


# -- a lost task is one line --------------------------------------------------------------------------


def test_lost_tasks_are_one_line_each_and_counted_past_ten():
    failed = [{"stimulus_id": "stim_0000", "reason": "failed", "error": "ValueError: bad"}]
    for task in range(12):
        error = (f"Slurm job 7_{task} ended in state TIMEOUT without results (it reached its time limit, "
                 f"hydra.launcher.timeout_min); its log: /sweep/.submitit/7_{task}/7_{task}_0_log.err")
        failed += [{"stimulus_id": f"stim_{1 + task * 256 + i:04d}", "reason": "lost", "error": error}
                   for i in range(256)]
    failed.append({"stimulus_id": "stim_9999", "reason": "missing", "error": ""})
    lines = failure_lines(failed)
    assert lines[0] == "failed 1: stim_0000 (ValueError: bad)"
    assert lines[1] == ("lost 256: stim_0001..stim_0256 (Slurm job 7_0 ended in state TIMEOUT without results "
                        "(it reached its time limit, hydra.launcher.timeout_min); its log: "
                        "/sweep/.submitit/7_0/7_0_0_log.err)")
    assert all(line.startswith("lost 256: ") and f"7_{i}_0_log.err)" in line for i, line in enumerate(lines[1:11]))
    assert lines[11:] == ["lost 512 more, of 2 more jobs: each in batch_metadata.json (failed_stimuli)",
                          "missing 1: stim_9999"]


class FakeJob:
    """What launchers._job_return reads of a submitit job."""

    def __init__(self, result=None, raises=None, state="COMPLETED"):
        self.job_id, self.state, self._result, self._raises = "7_0", state, result, raises
        self.paths = type("Paths", (), {"stderr": Path("/sweep/.submitit/7_0/7_0_0_log.err")})()

    def results(self):
        if self._raises:
            raise self._raises
        return [self._result]


def test_a_task_stopped_by_submitit_or_killed_by_slurm_says_why():
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import UncompletedJobError

    from sensoryforge.sweep.launchers import TaskLost, _job_return

    params = {"timeout_min": 3, "mem_gb": 8}
    stopped = JobReturn(overrides=[], status=JobStatus.FAILED,
                        _return_value=UncompletedJobError("Job not requeued because: timed-out too many times."))
    got = _job_return(FakeJob(stopped), ["chunk=a"], "Slurm", params)._return_value
    assert isinstance(got, TaskLost) and str(got) == (
        "Slurm job 7_0 ended in state TIMEOUT without results (it reached its time limit, "
        "hydra.launcher.timeout_min=3; submitit: Job not requeued because: timed-out too many times.); "
        "its log: /sweep/.submitit/7_0/7_0_0_log.err")
    got = _job_return(FakeJob(raises=UncompletedJobError("no result"), state="OUT_OF_MEMORY"), [], "Slurm", params)
    assert got.status == JobStatus.FAILED and str(got._return_value) == (
        "Slurm job 7_0 ended in state OUT_OF_MEMORY without results (out of memory, hydra.launcher.mem_gb=8); "
        "its log: /sweep/.submitit/7_0/7_0_0_log.err")
    ok = JobReturn(overrides=[], status=JobStatus.COMPLETED, _return_value=None)
    assert _job_return(FakeJob(ok), [], "Slurm", params) is ok
