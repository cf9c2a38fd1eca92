"""What a sweep or a run would cost, without running it: the dry run's report and its estimates
of time, memory and disk, and the refusal, before anything runs, of a job the machine cannot hold
or an output folder that cannot be written."""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

from omegaconf import DictConfig

from sensoryforge.config import to_stimulus
from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.sizes import memory_needed, step_count
from sensoryforge.core.text import clock, written
from sensoryforge.dataset.files import existing_ancestor, free_bytes
from sensoryforge.sweep import cluster
from sensoryforge.sweep.launchers import machine_memory, parallelism
from sensoryforge.sweep.plan import Sweep, key_values, swept_keys

# Measured on the reference 2-core machine with the fused CPU kernel (benchmarks/RESULTS.md,
# 2026-12-03 evening): seconds per stimulus, step and afferent (drive, noise, spiking loop and
# encoding: 6.4-6.9 ms for a default 1-s stimulus of 4,000 steps x 357 afferents, 28-36 ms at
# 5 s), per Hydra job (its bookkeeping and the simulator's build), per stimulus to write the
# dataset (3.3-4.3 ms), and the fixed start-up (Python, torch, numba, Hydra, the plots). Bytes on
# disk per spike (job files, results.pt and results.h5 together) and per stimulus (records,
# attributes, index), at an assumed mean rate.
SEC_PER_ELEMENT_STEP = 4.5e-9
SEC_PER_JOB = 0.3
SEC_PER_STIMULUS_DATASET = 4e-3
SEC_STARTUP = 4.5
BASE_MEMORY_MB = 450  # python + torch + hydra
DISK_BYTES_PER_SPIKE, DISK_BYTES_PER_STIMULUS, ASSUMED_RATE_HZ = 25, 2048, 2.0


def _size(cfg: DictConfig) -> tuple[int, int]:
    """(steps, afferents) of a config."""
    steps = step_count(cfg.pipeline)
    return steps, sum(getattr(cfg.neurons, p).count for p in POPULATIONS)


def memory_mb(cfg: DictConfig, stimuli_per_job: int) -> tuple[float, str]:
    """Peak memory of one job in MB, and its largest part (e.g. 'receptor grid')."""
    parts = memory_needed(cfg.pipeline, cfg.neurons, stimuli_per_job)
    return BASE_MEMORY_MB + sum(parts.values()) / 2**20, max(parts, key=parts.get)


def disk_mb(cfg: DictConfig, n_stimuli: int) -> float:
    """Disk the job folders and the dataset take, at ASSUMED_RATE_HZ per afferent."""
    steps, n = _size(cfg)
    spikes = n_stimuli * n * ASSUMED_RATE_HZ * steps * cfg.pipeline.dt / 1000.0
    disk = spikes * DISK_BYTES_PER_SPIKE + n_stimuli * DISK_BYTES_PER_STIMULUS
    if cfg.pipeline.save_intermediates:  # drive and potential, float32, in the npz, .h5 and .pt
        disk += n_stimuli * steps * n * 8 * 3
    return disk / 2**20


def stimulus_seconds(cfg: DictConfig) -> float:
    """Seconds to simulate one stimulus (the kernel's cost does not depend on the batch)."""
    steps, n = _size(cfg)
    return SEC_PER_ELEMENT_STEP * steps * n


def task_seconds(cfg: DictConfig, n_stimuli: int) -> float:
    """Seconds one job (an array task) of `n_stimuli` takes, its start-up included."""
    return SEC_STARTUP + SEC_PER_JOB + n_stimuli * stimulus_seconds(cfg)


def estimate(cfg: DictConfig, n_stimuli: int, n_jobs: int, parallel: int) -> str:
    per_job = max(1, math.ceil(n_stimuli / max(n_jobs, 1)))
    per_stim = stimulus_seconds(cfg)
    at_once = max(1, min(parallel, n_jobs))
    seconds = (
        SEC_STARTUP
        + (n_stimuli * per_stim + n_jobs * SEC_PER_JOB) / at_once
        + n_stimuli * SEC_PER_STIMULUS_DATASET
    )
    memory, _ = memory_mb(cfg, per_job)
    return (
        f"~{clock(seconds)} (~{per_stim * 1000:.0f} ms per stimulus, {at_once} job(s) at a time), "
        f"peak memory ~{memory:.0f} MB per job, disk ~{disk_mb(cfg, n_stimuli):.0f} MB "
        f"(at ~{ASSUMED_RATE_HZ:g} Hz per afferent)"
    )


# what a user changes to shrink each part of a job's memory
_SHRINK = {
    "receptor grid": "pipeline.grid_size",
    "receptive fields": "neurons.<population>.count or rf_sigma",
    "filters": "pipeline.duration or a larger pipeline.dt",
    "spiking loop": "pipeline.duration, a larger pipeline.dt, neurons.<population>.count or pipeline.batch_size",
    "saved intermediates": "pipeline.save_intermediates=false, or fewer stimuli per job (hydra.sweeper.chunk_size)",
}


def check_output_folder(key: str, path: Path) -> None:
    """The output folder can be made and written: one ConfigError line before anything runs."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path}: is a file, not a folder")
    base = existing_ancestor(path)
    if not base.is_dir():
        raise ConfigError(f"{key}={path}: cannot be made, {base} is a file")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: {base} is not writable (read-only, or no permission)")


def check_memory(cfg: DictConfig, stimuli_per_job: int, n_jobs: int, launcher: DictConfig | None = None) -> None:
    """A job that cannot fit is refused before it starts: its memory against the Slurm request, or
    against this machine times the jobs a local launcher runs at once."""
    need, part = memory_mb(cfg, stimuli_per_job)
    fix = f"reduce {_SHRINK[part]}"
    parallel, cluster = parallelism(launcher) if launcher is not None else (1, False)
    if cluster:
        mem_gb = launcher.get("mem_gb", None)
        if mem_gb and need > mem_gb * 1024:
            raise ConfigError(
                f"hydra.launcher.mem_gb={mem_gb}: a task needs ~{need:,.0f} MB (mostly its {part}); "
                f"ask for more, or {fix}"
            )
        return
    have = machine_memory() / 2**20
    at_once = max(1, min(parallel, n_jobs))
    if need * at_once > have:
        jobs = f" x {at_once} jobs at a time (hydra.launcher.n_jobs)" if at_once > 1 else ""
        raise ConfigError(
            f"a job needs ~{need:,.0f} MB{jobs} (mostly its {part}), more than this machine's {have:,.0f} MB; {fix}"
        )


def check_disk(need_mb: float, out: Path) -> None:
    """Outputs larger than the free disk are refused before anything runs."""
    free = free_bytes(out) / 2**20
    if need_mb > free:
        raise ConfigError(f"{out}: the results need ~{need_mb:,.0f} MB, only {free:,.0f} MB free there")


def check_resources(cfg: DictConfig, out: Path) -> None:
    """A single run's job: memory and disk."""
    check_memory(cfg, 1, 1)
    check_disk(disk_mb(cfg, 1), out)


def single_dry_run(cfg: DictConfig) -> None:
    stim = to_stimulus(cfg.stimulus)
    params = " ".join(f"{k}={v}" for k, v in stim.params().items())
    print("dry run: nothing simulated, nothing written")
    print(f"  1 stimulus: {stim.type_name} {params} seed={cfg.seed} repetition={cfg.repetition}")
    print(f"  estimate: {estimate(cfg, 1, 1, 1)}")


def print_dry_run(config, sweep: Sweep, done, chunks, size: int, sweep_dir: Path, parallel: int) -> None:
    todo = sum(c.size for c in chunks.values())
    print("dry run: nothing simulated, nothing written")
    print(f"  stimuli: {sweep.n} ({todo} to run, {len(done)} already finished)")
    print(f"  jobs: {len(chunks)} (up to {size} stimuli each), {parallel} at a time")
    swept, values = swept_keys(sweep), key_values(sweep)
    for k in swept:
        vals = list(OrderedDict.fromkeys(written(v) for v in values[k]))
        shown = ", ".join(vals[:8]) + (", ..." if len(vals) > 8 else "")
        print(f"  swept {k}: {shown} ({len(vals)} values)")
    print(f"  output folder: {sweep_dir}")
    print("  examples:")
    plan = sweep.reader()
    examples = list(range(min(3, sweep.n))) + ([sweep.n - 1] if sweep.n > 3 else [])
    shown = (swept or list(plan.point(0))) if sweep.n else []
    for i in examples:
        point = plan.point(i)
        print(f"    {sweep.id(i)}: " + " ".join(f"{k}={written(point[k])}" for k in shown if k in point))
    print(f"  estimate: {estimate(config, todo, max(len(chunks), 1), parallel)}")
    if cluster.is_slurm(config.hydra.launcher):
        for line in cluster_dry_run(config.hydra.launcher, sweep, chunks):
            print(f"  {line}")


def cluster_dry_run(launcher: DictConfig, sweep: Sweep, chunks) -> list[str]:
    """A Slurm sweep's dry run: the array's sbatch options, the partition it goes to (sinfo), and
    the longest task's estimated time against timeout_min (a warning when it would exceed it)."""
    n = len(chunks)
    sizes = [c.size for c in chunks.values()]
    parallel = int(launcher.get("array_parallelism", None) or 256)
    lo, hi = min(sizes, default=0), max(sizes, default=0)
    default = "" if cluster.requested_partition(launcher) else " (no --partition: the cluster's default)"
    lines = [f"Slurm array: {n} task{'s' if n != 1 else ''} of {lo if lo == hi else f'{lo}-{hi}'} stimuli, "
             f"up to {min(n, parallel)} at a time (hydra.launcher.array_parallelism={parallel})",
             "sbatch " + " ".join(cluster.sbatch_options(launcher, n)) + default]
    lines += cluster.cluster_lines(launcher)
    configs = sweep.configs or []
    if not chunks or not configs:
        return lines
    times = {name: task_seconds(configs[c.job], c.size) for name, c in chunks.items()}
    name = max(times, key=times.get)
    longest, c = times[name], chunks[name]
    per_stim = stimulus_seconds(configs[c.job])
    timeout = launcher.get("timeout_min", None)
    delay = launcher.get("signal_delay_s", None) or 0  # submitit tells a task to stop so long before its limit
    budget = timeout * 60 - delay if timeout else 0
    less = f" less signal_delay_s={delay} s" if delay else ""
    share = longest / budget if budget > 0 else 0
    against = (f" against hydra.launcher.timeout_min={timeout}{less} ({'<1%' if share < 0.01 else f'{share:.0%}'} "
               "of it)" if budget > 0 else "")
    lines.append(f"per task: up to ~{clock(longest)} ({name}: {c.size} stimuli x ~{per_stim * 1000:.0f} ms "
                 f"+ ~{SEC_STARTUP + SEC_PER_JOB:.0f} s start){against}")
    if budget > 0 and longest > budget:
        raise_to = math.ceil((longest * 1.5 + delay) / 60)
        fit = int((budget * 0.8 - SEC_STARTUP - SEC_PER_JOB) / per_stim)  # with a fifth to spare
        need = f"warning: a task would need ~{clock(longest)}, more than hydra.launcher.timeout_min={timeout}{less}"
        if fit < 1:
            lines.append(f"{need}, and one stimulus alone ~{clock(per_stim + SEC_STARTUP + SEC_PER_JOB)}: "
                         f"raise it to {raise_to} or more")
        else:
            lines.append(f"{need}: raise it to {raise_to} or more, or make tasks smaller "
                         f"(hydra.sweeper.chunk_size={fit})")
    return lines
