"""The sweep, as SensoryForge's Hydra sweeper runs it (hydra_plugins/sensoryforge_sweeper):

plan (expand, check every point, skip what is finished, chunk, check each job's memory and the
disk) -> dry run, or, holding the folder's lock (lock.py): write the plan, launch the chunks as
Hydra jobs, record jobs that ended without results -> build the dataset (one call into
sensoryforge.dataset) -> report, and exit non-zero when anything failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sensoryforge.core.params import ConfigError
from sensoryforge.core.text import clock, closed_pipe_exit, compact_ids
from sensoryforge.dataset import partial, progress
from sensoryforge.dataset.files import DiskFull, remove_stale_temporaries
from sensoryforge.dataset.jobs import JOB_FILE, write_lost
from sensoryforge.sweep import attach, cluster, launchers, sensitivity
from sensoryforge.sweep.batchfile import load_batch_file
from sensoryforge.sweep.estimate import check_disk, check_memory, disk_mb, print_dry_run
from sensoryforge.sweep.lock import sweep_lock
from sensoryforge.sweep.plan import (
    Chunk,
    Sweep,
    check_sweep,
    chunk_size,
    expand,
    make_chunks,
    split_finished,
    write_plan,
)

log = logging.getLogger("sensoryforge")


def run_sweep(sweeper, arguments: list[str]) -> Any:
    """Body of the Hydra sweeper plugin: bad input is one line and exit 2, a fault during the run
    (a full disk, say) one line and exit 1; the sweep folder is held by this sweep alone."""
    config = sweeper.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    try:
        plan = prepare(sweeper, arguments)
        if config.get("dry_run"):
            return dry_run(sweeper, plan, sweep_dir)
        with sweep_lock(sweep_dir):
            sensitivity.keep_spec(sweep_dir, plan.get("sensitivity"))  # what finish() analyses
            return execute(sweeper, plan, sweep_dir)
    except ConfigError as e:
        print(f"sensoryforge: error: {e}", file=sys.stderr)
        sys.exit(2)
    except DiskFull as e:
        print(f"sensoryforge: error: {e}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:
        closed_pipe_exit()


def prepare(sweeper, arguments: list[str]) -> dict:
    """Expand the sweep and check every point (nothing is written)."""
    config, loader = sweeper.config, sweeper.hydra_context.config_loader
    blocks = list(sweeper.blocks or [])
    batch = None
    if config.get("batch_file"):
        batch = load_batch_file(Path(config.batch_file))
        blocks = batch.blocks
        if batch.ignored:
            log.warning("batch_file: no equivalent for %s; SensoryForge's defaults apply", ", ".join(batch.ignored))
    spec = None
    if config.get("sensitivity") is not None:  # experiment=sensitivity: its sample's points are the blocks
        spec, blocks = sensitivity.plan_blocks(config.sensitivity, blocks, dict(sweeper.params or {}), arguments,
                                               loader, lambda ov: loader.load_sweep_config(config, ov))
    sweep = expand(dict(sweeper.params or {}), blocks, arguments, loader)  # never empty: expand refuses empty sweeps
    check_sweep(sweep, lambda ov: loader.load_sweep_config(config, ov))
    check_fits(sweeper, sweep, Path(str(config.hydra.sweep.dir)))
    return {"sweep": sweep, "batch": batch, "t0": time.time(), "sensitivity": spec}


def check_fits(sweeper, sweep: Sweep, sweep_dir: Path) -> None:
    """Each distinct job config's memory against the machine or the Slurm request, and the whole
    sweep's outputs against the free disk (before anything is written; finished work counted as
    if it were to run, an upper bound)."""
    launcher = sweeper.config.hydra.launcher
    size = chunk_size(sweep.n, sweeper, launcher)
    disk = 0.0
    for cfg, n in zip(sweep.configs, sweep.job_sizes()):
        check_memory(cfg, min(size, n), math.ceil(n / size), launcher)
        disk += disk_mb(cfg, n)
    check_disk(disk, sweep_dir)
    if sweeper.config.get("detach") and not cluster.is_slurm(launcher):
        raise ConfigError("detach=true: needs a cluster launcher (hydra/launcher=slurm); the jobs of this "
                          "launcher run inside the command")
    for warning in cluster.check_cluster(launcher, dry_run=bool(sweeper.config.get("dry_run"))):
        log.warning(warning)  # a Slurm request no node can run is refused (ConfigError)


def _chunks(sweeper, sweep: Sweep, sweep_dir: Path):
    """(finished stimuli's numbers, chunks to run, chunk size, chunks in flight: chunk -> (Chunk,
    task id) of an earlier command's cluster tasks still alive, planned to no new job)."""
    done = split_finished(sweep, sweep_dir)
    launcher = sweeper.config.hydra.launcher
    flying = attach.in_flight(sweep, sweep_dir) if cluster.is_slurm(launcher) else OrderedDict()
    busy = sorted(set(done) | set(attach.numbers(flying)))
    size = chunk_size(sweep.n - len(busy), sweeper, launcher)
    return done, make_chunks(sweep, busy, size, sweep_dir), size, flying


def dry_run(sweeper, plan: dict, sweep_dir: Path) -> list:
    done, chunks, size, flying = _chunks(sweeper, plan["sweep"], sweep_dir)
    if flying:
        print(f"attached: {len(flying)} cluster tasks of an earlier command still run "
              f"({len(attach.numbers(flying))} stimuli); they are waited for, not submitted again")
    parallel, _ = launchers.parallelism(sweeper.config.hydra.launcher)
    room = cluster.capacity(sweeper.config.hydra.launcher)  # a Slurm cluster's nodes run so many at once
    parallel = min(parallel, room) if room else parallel
    print_dry_run(sweeper.config, plan["sweep"], done, chunks, size, sweep_dir, parallel)
    if plan.get("sensitivity") is not None:
        print("  " + sensitivity.describe_points(plan["sensitivity"], plan["sweep"].n))
    return []


def execute(sweeper, plan: dict, sweep_dir: Path) -> Any:
    """Under the folder's lock: skip what is finished, launch the rest, build the dataset."""
    from hydra.core.plugins import Plugins

    config, ctx, sweep = sweeper.config, sweeper.hydra_context, plan["sweep"]
    stale = remove_stale_temporaries(sweep_dir)  # no writer is left: the lock is ours
    if stale:
        log.info("removed %d temporary files left by an interrupted run", stale)
    kept = partial.salvage(sweep_dir)  # jobs cut short: what they saved is finished work
    if kept:
        log.info("kept %d stimuli saved by jobs that were cut short", kept)
    done, chunks, size, flying = _chunks(sweeper, sweep, sweep_dir)
    batch = plan["batch"]
    fmt = batch.format if batch and batch.format else config.dataset.format
    name = batch.name if batch and batch.name else config.dataset.name
    batch_id = name or sweep_dir.resolve().name  # as the dataset's metadata names it
    print(f"Starting batch execution: {batch_id}\nTotal stimuli: {sweep.n}\nOutput directory: {sweep_dir}",
          flush=True)
    if done:
        log.info(
            "resume: %d of %d stimuli already finished in %s, skipped: %s",
            len(done), sweep.n, sweep_dir, compact_ids([sweep.id(i) for i in done]),
        )
    detach = bool(config.get("detach"))
    attached = {name: task for name, (_, task) in flying.items()}
    if flying:
        log.info("attached to %d tasks of an earlier command still on the cluster (%d stimuli): waited for, "
                 "not submitted again", len(flying), len(attach.numbers(flying)))
    everything = OrderedDict([*chunks.items(), *((n, c) for n, (c, _) in flying.items())])
    if everything:
        write_plan(sweep_dir, sweep, everything)
        progress.reset(sweep_dir)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=ctx, task_function=sweeper.task_function, config=config
        )
        todo = sum(c.size for c in chunks.values())
        log.info("%d stimuli to run in %d jobs of up to %d (%s)", todo, len(chunks), size, sweep_dir)
        overrides = [[*sweep.jobs[c.job], f"chunk={name}", f"hydra.sweep.subdir={name}"] for name, c in chunks.items()]
        ids = {name: [sweep.id(i) for lo, hi in c.ranges for i in range(lo, hi)] for name, c in everything.items()}
        returns, failure = [], None
        with progress.Monitor(sweep_dir, ids, batch_id, sweep.n, [sweep.id(i) for i in done],
                              from_start=set(attached)), quiet_launcher():
            try:
                returns = launchers.launch(launcher, overrides, initial_job_idx=0, composed=sweep.composed,
                                           attach=attached, detach=detach)
            except Exception as e:  # noqa: BLE001 - e.g. a cluster job that died; recorded below
                log.error("launcher: %s", e)
                failure = e
        if returns is None:  # detached: the tasks run on; this command is done
            print(f"detached: {todo} stimuli in {len(chunks)} cluster tasks (launch.json in {sweep_dir}); "
                  f"where they stand: sensoryforge-status {sweep_dir}; the same command again waits for them "
                  f"and builds the dataset (or sensoryforge-aggregate {sweep_dir} once they have finished)",
                  flush=True)
            return []
        record_lost_jobs(sweep, everything, returns, sweep_dir, failure)
    return finish(sweep_dir, sweep.n, plan["t0"], fmt, batch_id)


@contextlib.contextmanager
def quiet_launcher():
    """Hydra's basic launcher logs one line per job it starts: the progress bar says it instead."""
    names = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher._core")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def record_lost_jobs(sweep: Sweep, chunks: dict[str, Chunk], returns: list, sweep_dir: Path,
                     failure: BaseException | None = None) -> None:
    """A job that ended without its job.json (crash, kill, cluster failure) gets one that lists
    its stimuli as failed, with the reason, so the dataset and the exit code account for them.
    `failure`: the launcher's own error (sbatch refused the array, say), the reason of the jobs
    it returned nothing for."""
    reader = sweep.reader(chunks)
    lost = n_stimuli = 0
    unlaunched = "the job ended without writing its results"
    if failure is not None:  # its last line: sbatch's `fatal: ...` after its retries
        said = [s.strip() for s in str(failure).strip().splitlines() if s.strip()]
        unlaunched = f"the launcher failed: {said[-1] if said else type(failure).__name__}"
    for i, name in enumerate(chunks):
        job_dir = sweep_dir / name
        if (job_dir / JOB_FILE).exists():
            continue
        reason = "the job ended without writing its results" if i < len(returns) else unlaunched
        error = getattr(returns[i], "_return_value", None) if i < len(returns) else None
        if isinstance(error, launchers.TaskLost):  # a cluster task: its job, state, why and log
            reason = str(error)
        elif isinstance(error, BaseException):  # the job's exception (JobReturn.return_value re-raises it)
            reason = f"{type(error).__name__}: {error}"
        stimuli = [{k: e[k] for k in ("id", "point", "fingerprint")} for e in reader.entries(name)]
        write_lost(job_dir, stimuli, reason)
        lost, n_stimuli = lost + 1, n_stimuli + len(stimuli)
    if lost:  # each is one line of the report at the end (failure_lines)
        log.error("%d of %d jobs ended without results (%d stimuli, recorded as lost)", lost, len(chunks), n_stimuli)


TASK_LINES = 10  # lost jobs listed one per line at the end; the others are counted (all in batch_metadata)


def failure_lines(failed: list[dict]) -> list[str]:
    """The aggregator's lines per reason (problem_lines), with the lost stimuli as one line per
    lost job (its error names the job, its state, why and its log; no detail cut off), at most
    TASK_LINES of them and a count of the rest: `lost 40: stim_0000..stim_0039 (Slurm job 3_0
    ended in state CANCELLED by 0 without results (...); its log: ...)`."""
    from sensoryforge.dataset.aggregate import problem_lines

    jobs: dict[str, list[str]] = {}
    for f in failed:
        if f.get("reason") == "lost":
            error = str(f.get("error") or "").strip()
            jobs.setdefault(error.splitlines()[0] if error else "lost", []).append(f["stimulus_id"])
    lost = [f"lost {len(ids)}: {compact_ids(ids)} ({error})" for error, ids in jobs.items()]
    if len(lost) > TASK_LINES:
        rest = list(jobs.values())[TASK_LINES:]
        lost = lost[:TASK_LINES] + [f"lost {sum(map(len, rest))} more, of {len(rest)} more jobs: each in "
                                    "batch_metadata.json (failed_stimuli)"]
    lines = []
    for line in problem_lines(failed):
        lines += lost if line.startswith("lost ") else [line]
    return lines


def finish(sweep_dir: Path, n: int, t0: float, fmt: str, name: str | None) -> dict:
    """Build the dataset (which accounts for every planned stimulus: in it, or listed in
    failed_stimuli with its reason), report, exit non-zero when any stimulus is not in it."""
    from sensoryforge.dataset.aggregate import aggregate  # h5py, torch: only now

    partial.salvage(sweep_dir)  # a lost task's saved segments are in the dataset, not lost
    report = aggregate([sweep_dir], sweep_dir, fmt=fmt, name=name, progress=True)
    failed = report["failed_stimuli"]
    with open(sweep_dir / "stimulus_index.json") as f:  # the dataset's stimuli, as written
        completed = list(json.load(f))
    progress.write_checkpoint(sweep_dir, report["batch_id"], n, completed, failed, complete=not failed)
    log.info(
        "sweep finished in %s: %d of %d stimuli ok, %d not; dataset in %s",
        clock(time.time() - t0), report["num_stimuli"], n, len(failed), sweep_dir,
    )
    analysed = sensitivity.finish(sweep_dir)  # experiment=sensitivity: sensitivity.csv / .png
    if failed:
        print(f"{len(failed)} of {n} stimuli not in the dataset (batch_metadata.json: failed_stimuli):",
              file=sys.stderr)
        for line in failure_lines(failed):
            print(f"  {line}", file=sys.stderr)
    if failed or not analysed:
        sys.exit(1)
    return report
