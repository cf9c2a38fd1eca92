"""How the sweeper hands its Hydra jobs to Hydra's launcher.

Every launcher goes through `launch`. For Hydra's submitit launchers (`submitit_slurm`,
`submitit_local`, and the `slurm` preset over the first) it does what their own `launch` does,
with two differences:

- it waits for every job. Hydra's submitit launcher collects results in submission order and
  raises at the first job that died (scancel, time or memory limit, node failure) while later
  array tasks may still be running; the sweeper would then record them as lost and build the
  dataset while they still write. Here a job that died becomes a failed `JobReturn` whose error
  says which cluster job it was, its state and where its log is, and the others are waited for;
- it logs one line per finished job on the submitting terminal: `[i/N] chunk: ...`, the elapsed
  time and an ETA (the jobs' own progress lines go to their logs on the cluster).

Other launchers (basic, the `parallel` preset over joblib) are called as they are.

Also here: how many jobs a launcher runs at a time, and how many torch threads each job takes so
that parallel jobs do not oversubscribe the cores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig

from sensoryforge.core.text import clock

log = logging.getLogger("sensoryforge")

POLL_S = 0.5  # how often finished jobs are looked for (a file check each)
# Jobs that died leave no result file; only the cluster's accounting tells. Submitit asks it at
# growing intervals (up to 10 minutes apart); here it is asked at least this often (one sacct
# call for the whole array).
STATE_POLL_S = 30.0


def available_cores() -> int:
    """Cores this process may use: those Slurm gave the job when inside one, else the CPU
    affinity (which cgroups and task pinning narrow), else all."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs(n_jobs, cores: int | None = None) -> int:
    """Jobs at a time for the joblib launcher's n_jobs, by joblib's own rule (its loky backend's
    `effective_n_jobs`): n >= 1 is n, negative is all cores but |n| - 1 (-1 every core), None is
    one (joblib's default). Where joblib would quietly run one worker for a value that means none
    (0, or -5 on 2 cores), this refuses it in one line.

    `cores` defaults to the cores both counts allow: joblib's (`joblib.cpu_count()`, which Hydra's
    joblib launcher resolves n_jobs against: the CPU affinity, a cgroup CPU quota such as docker's
    --cpus, LOKY_MAX_CPU_COUNT) and `available_cores()` (Slurm's allocation, the affinity). They
    agree but for a container's CPU quota, which only joblib sees (joblib starts that many
    workers: the lower count is the true one), and a Slurm job whose CPUs are not pinned, where
    joblib sees the whole node (it then starts more workers than this counts)."""
    from sensoryforge.core.params import ConfigError

    if n_jobs is None:
        return 1
    if cores is None:
        import joblib

        cores = min(available_cores(), joblib.cpu_count())
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int):
        why = "not an integer"
    elif n_jobs == 0:
        why = "0 is no worker"
    elif n_jobs < 0 and cores + 1 + n_jobs < 1:
        why = f"all {cores} cores but {-n_jobs - 1} is no worker"
    else:
        return n_jobs if n_jobs > 0 else cores + 1 + n_jobs
    raise ConfigError(
        f"hydra.launcher.n_jobs={n_jobs}: must be 1, 2, ... (jobs at a time) or -1 .. -{cores} "
        f"(all {cores} cores but |n| - 1: -1 every core, -2 all but one); {why}"
    )


def parallelism(launcher: DictConfig) -> tuple[int, bool]:
    """(jobs at a time, is a cluster launcher)."""
    target = str(launcher.get("_target_", ""))
    if "submitit" in target and "Local" not in target:
        return int(launcher.get("array_parallelism", 256) or 256), True
    jobs = launcher.get("n_jobs", None)
    if jobs is not None:
        return parallel_jobs(jobs), False
    return 1, False


def machine_memory() -> int:
    """Bytes of memory this process may use: the physical memory, or a cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


# launcher settings that must be positive integers (a joblib n_jobs may also be negative: all
# cores but |n| - 1), and the sweeper's chunk sizes
_POSITIVE = ("cpus_per_task", "array_parallelism", "timeout_min", "nodes", "tasks_per_node", "gpus_per_node")


def check_launcher(launcher: DictConfig, cores: int | None = None) -> None:
    """Launcher values no launcher can run with, as one ConfigError line each."""
    from sensoryforge.core.params import ConfigError

    for key in _POSITIVE:
        v = launcher.get(key, None)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ConfigError(f"hydra.launcher.{key}={v}: must be an integer >= 1")
    mem = launcher.get("mem_gb", None)
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float)) or not 0 < mem < 1e6):
        raise ConfigError(f"hydra.launcher.mem_gb={mem}: must be a number > 0 (GB per task)")
    if "n_jobs" in launcher:  # the joblib launcher: a worker count that is not >= 1 is refused
        parallel_jobs(launcher.get("n_jobs"), cores)


def configure_threads(threads: int) -> None:
    """Give this job its share of the cores so parallel jobs do not oversubscribe the CPU:
    `threads` (pipeline.threads) if set, else the launcher's cpus_per_task, else the cores divided
    by the launcher's n_jobs (joblib workers run one job each)."""
    import torch

    n = int(threads)
    if n <= 0:
        from hydra.core.hydra_config import HydraConfig

        cores = available_cores()
        parallel = 1
        if HydraConfig.initialized():
            launcher = HydraConfig.get().launcher
            jobs = launcher.get("n_jobs", None)
            if jobs is not None:
                parallel = parallel_jobs(jobs, cores)
            cpus = launcher.get("cpus_per_task", None)
            if cpus:
                n = int(cpus)
        if n <= 0:
            n = max(1, cores // parallel)
    torch.set_num_threads(n)
    # the fused kernel's threads too (numba's pool is sized once, at its first parallel call:
    # never ask for more than it has)
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


# the overrides that set a job's chunk: all a chunk's config has that its job config has not
CHUNK_OVERRIDES = ("chunk=", "hydra.sweep.subdir=")


class ComposedOnce:
    """A config loader for Hydra's basic launcher that composes each distinct job config once:
    a chunk's config is a copy of its job config (composed when the sweep was checked) with the
    chunk's overrides set as composition sets them (`chunk`, `hydra.sweep.subdir`, the recorded
    overrides and the override_dirname made of them), a deep copy instead of a composition (a
    tenth of its time). Anything else goes to Hydra's loader."""

    def __init__(self, loader, composed: dict[tuple[str, ...], DictConfig]):
        self._loader, self._composed = loader, composed

    def __getattr__(self, name: str):
        return getattr(self._loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        import copy

        from hydra._internal.config_loader_impl import get_overrides_dirname
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        job = tuple(o for o in sweep_overrides if not o.startswith(CHUNK_OVERRIDES))
        extra = [o for o in sweep_overrides if o.startswith(CHUNK_OVERRIDES)]
        base = self._composed.get(job)
        if base is None or list(sweep_overrides) != [*job, *extra]:
            return self._loader.load_sweep_config(master_config, sweep_overrides)
        cfg = copy.deepcopy(base)
        hc = cfg.hydra
        for line in extra:
            key, value = line.split("=", 1)
            OmegaConf.update(cfg, key, value)
            (hc.overrides.hydra if key.startswith("hydra.") else hc.overrides.task).append(line)
        dirname = hc.job.config.override_dirname
        hc.job.override_dirname = get_overrides_dirname(
            overrides=OverridesParser.create().parse_overrides(list(hc.overrides.task)),
            kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys,
        )
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0,
           composed: dict[tuple[str, ...], DictConfig] | None = None, attach: dict[str, str] | None = None,
           detach: bool = False) -> list[JobReturn] | None:
    """Run the jobs with `launcher`; one JobReturn per job, in order. `composed`: job config
    overrides -> its composed config, which Hydra's basic launcher (in this process) reuses for
    every chunk of that job config (ComposedOnce). A cluster launcher also waits for the tasks of
    `attach` (chunk -> task id, submitted by an earlier command; their returns follow the new
    jobs'), and with `detach` submits, records and returns None without waiting."""
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra.types import HydraContext

    try:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
    except ImportError:  # the submitit plugin is a dependency, but stay usable without it
        BaseSubmititLauncher = ()  # noqa: N806
    if BaseSubmititLauncher and isinstance(launcher, BaseSubmititLauncher):
        return launch_submitit(launcher, job_overrides, initial_job_idx, attach or {}, detach)
    if composed and type(launcher) is BasicLauncher:
        ctx = launcher.hydra_context
        launcher.hydra_context = HydraContext(ComposedOnce(ctx.config_loader, composed), ctx.callbacks)
    return list(launcher.launch(job_overrides, initial_job_idx=initial_job_idx))


def _executor(launcher):
    """The submitit executor that Hydra's submitit launcher would build from its parameters."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    kind = launcher._EXECUTOR
    params = dict(launcher.params)
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:  # a parameter of the executor itself, not of the jobs
        init[f"{kind}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=kind, **init)
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in shared else f"{kind}_{k}": v for k, v in params.items()})
    return executor


LAUNCH_FILE = "launch.json"  # in the sweep folder: the cluster tasks submitted for it, by chunk


def read_launch(sweep_dir: Path) -> dict:
    """The sweep folder's launch record ({} when there is none or it is unreadable)."""
    import json

    try:
        rec = json.loads((Path(sweep_dir) / LAUNCH_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) and isinstance(rec.get("tasks"), dict) else {}


def record_launch(sweep_dir: Path, kind: str, folder: str, tasks: dict[str, str]) -> None:
    """launch.json: which task runs each chunk (the tasks of earlier commands kept), the launcher,
    submitit's folder and who submitted; written atomically before anyone waits for the tasks."""
    import socket

    from sensoryforge.dataset.files import write_json

    old = read_launch(sweep_dir)
    write_json(Path(sweep_dir) / LAUNCH_FILE, {
        "launcher": kind, "folder": folder, "tasks": {**old.get("tasks", {}), **tasks},
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"), "submitter": {"host": socket.gethostname(), "pid": os.getpid()},
    })


def launch_submitit(launcher, job_overrides, initial_job_idx: int = 0, attach: dict[str, str] | None = None,
                    detach: bool = False) -> list[JobReturn] | None:
    from hydra.core.singleton import Singleton
    from hydra.core.utils import filter_overrides

    config = launcher.config
    executor = _executor(launcher)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, int(str(config.hydra.sweep.mode), 8))
    kind = "Slurm" if launcher._EXECUTOR == "slurm" else launcher._EXECUTOR
    if job_overrides:
        log.info("submitting %d jobs to %s (output %s)", len(job_overrides), kind, sweep_dir)
    state = Singleton.get_state()
    args = []
    for i, overrides in enumerate(job_overrides):
        log.debug("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))
        args.append((list(overrides), "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{i}", state))
    # the launcher itself is the submitted callable, as in Hydra's plugin (it composes the job's
    # config on the node and runs the task)
    jobs = executor.map_array(launcher, *zip(*args)) if args else []
    if jobs and kind == "Slurm":
        log.info("Slurm array job %s: %d tasks", jobs[0].job_id.split("_")[0], len(jobs))
    names = [_chunk_name(o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
    folder = str(launcher.params["submitit_folder"])
    record_launch(sweep_dir, kind, folder, {n: j.job_id for n, j in zip(names, jobs)})
    if detach:
        return None
    for name, job_id in (attach or {}).items():  # tasks an earlier command submitted: waited for as ours
        jobs.append(type(executor._executor).job_class(folder=folder, job_id=job_id))
        job_overrides = [*job_overrides, [f"chunk={name}"]]

    t0 = time.time()
    results: list[JobReturn | None] = [None] * len(jobs)
    pending = list(range(len(jobs)))
    finished = 0
    last_check = time.time()
    while pending:
        if launcher._EXECUTOR == "slurm" and time.time() - last_check > STATE_POLL_S:
            jobs[0].watcher.update()  # shared by all jobs of the executor: one call for all
            last_check = time.time()
        still = []
        for i in pending:
            job = jobs[i]
            if not job.done():
                still.append(i)
                continue
            results[i] = _job_return(job, job_overrides[i], kind, dict(launcher.params))
            finished += 1
            elapsed = time.time() - t0
            eta = elapsed / finished * (len(jobs) - finished)
            ok = results[i].status == JobStatus.COMPLETED
            log.info(
                "[%d/%d] %s: %s (%s job %s) | elapsed %s | ETA %s",
                finished, len(jobs), _chunk_name(job_overrides[i], initial_job_idx + i),
                "finished" if ok else "FAILED", kind, job.job_id, clock(elapsed), clock(eta),
            )
        pending = still
        if pending:
            time.sleep(POLL_S)
    return results  # type: ignore[return-value]


class TaskLost(RuntimeError):
    """A cluster job that ended without results; its message is the whole story (one line: the
    job, its state, why, its log)."""


# what a final state means (Slurm's job states), for the one line of a lost task
_WHY = {"CANCELLED": "cancelled: scancel or an administrator",
        "TIMEOUT": "it reached its time limit, hydra.launcher.timeout_min={timeout_min}",
        "OUT_OF_MEMORY": "out of memory, hydra.launcher.mem_gb={mem_gb}",
        "NODE_FAIL": "its node failed", "PREEMPTED": "preempted", "BOOT_FAIL": "its node did not boot",
        "DEADLINE": "it reached its deadline", "FAILED": "the task's command failed; see its log"}


def _job_return(job, overrides, kind: str, params: dict | None = None) -> JobReturn:
    """The job's own JobReturn (a task that raised is a failed one already), or a failed one that
    says why the job produced nothing."""
    from submitit.core.utils import UncompletedJobError

    def lost(state: str, note: str = "") -> TaskLost:
        why = _WHY.get(str(state).split(" ")[0], "killed, cancelled or out of time or memory")
        why = why.format(**{"timeout_min": "?", "mem_gb": "?", **(params or {})})
        return TaskLost(f"{kind} job {job.job_id} ended in state {state} without results ({why}{note}); "
                        f"its log: {job.paths.stderr}")

    try:
        ret = job.results()[0]
        error = getattr(ret, "_return_value", None)
        if ret.status == JobStatus.FAILED and isinstance(error, UncompletedJobError):
            # submitit's signal handler stopped the task at its time limit (or a preemption) and
            # did not requeue it; Slurm's accounting may call that COMPLETED: submitit's word it is
            state = "TIMEOUT" if "timed-out" in str(error) else "PREEMPTED"
            ret._return_value = lost(state, f"; submitit: {error}")
        return ret
    except Exception as e:  # noqa: BLE001 - the job died; its reason is recorded, never dropped
        if isinstance(e, UncompletedJobError):
            try:
                state = job.state
            except Exception:  # noqa: BLE001
                state = "UNKNOWN"
            error = lost(state)
        else:
            first = str(e).strip().splitlines()
            error = TaskLost(f"{kind} job {job.job_id}: {first[0] if first else type(e).__name__}; "
                             f"its log: {job.paths.stderr}")
        return JobReturn(overrides=list(overrides), status=JobStatus.FAILED, _return_value=error)


def _chunk_name(overrides, idx: int) -> str:
    for o in overrides:
        if o.startswith("chunk="):
            return o.split("=", 1)[1]
    return f"job #{idx}"
