"""The sweep, as SensoryForge's Hydra sweeper runs it (hydra_plugins/sensoryforge_sweeper):

plan (expand, check every point, skip what is finished, chunk) -> dry run, or: write the plan,
launch the chunks as Hydra jobs, record jobs that ended without results -> build the dataset (one
call into sensoryforge.dataset) -> report, and exit non-zero when anything failed.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from sensoryforge.core.params import ConfigError
from sensoryforge.core.text import clock
from sensoryforge.dataset.aggregate import aggregate
from sensoryforge.dataset.jobs import JOB_FILE, read_records, write_lost
from sensoryforge.sweep import launchers, progress
from sensoryforge.sweep.batchfile import load_batch_file
from sensoryforge.sweep.estimate import print_dry_run
from sensoryforge.sweep.plan import (
    Point,
    check_points,
    chunk_size,
    compact_ids,
    expand,
    make_chunks,
    split_finished,
    write_plan,
)

log = logging.getLogger("sensoryforge")


def run_sweep(sweeper, arguments: list[str]) -> Any:
    """Body of the Hydra sweeper plugin."""
    from hydra.core.plugins import Plugins

    config, ctx = sweeper.config, sweeper.hydra_context
    loader = ctx.config_loader
    t0 = time.time()
    sweep_dir = Path(str(config.hydra.sweep.dir))
    blocks = list(sweeper.blocks or [])
    batch = None
    try:
        if config.get("batch_file"):
            batch = load_batch_file(Path(config.batch_file))
            blocks = batch.blocks
            if batch.ignored:
                log.warning("batch_file: no equivalent for %s; SensoryForge's defaults apply", ", ".join(batch.ignored))
        points = expand(dict(sweeper.params or {}), blocks, arguments, loader)
        check_points(points, lambda ov: loader.load_sweep_config(config, ov))
        done, todo = split_finished(points, sweep_dir)
    except ConfigError as e:
        print(f"sensoryforge: error: {e}", file=sys.stderr)
        sys.exit(2)
    size = chunk_size(len(todo), sweeper, config.hydra.launcher)
    chunks = make_chunks(todo, size, sweep_dir)
    parallel, _ = launchers.parallelism(config.hydra.launcher)
    if config.get("dry_run"):
        print_dry_run(config, points, done, chunks, size, sweep_dir, parallel)
        return []
    if done:
        log.info(
            "resume: %d of %d stimuli already finished in %s, skipped: %s",
            len(done), len(points), sweep_dir, compact_ids([p.id for p in done]),
        )
    if chunks:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_plan(sweep_dir, points, chunks)
        progress.reset(sweep_dir)
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=ctx, task_function=sweeper.task_function, config=config
        )
        log.info("%d stimuli to run in %d jobs of up to %d (%s)", len(todo), len(chunks), size, sweep_dir)
        overrides = [[*pts[0].job, f"chunk={name}", f"hydra.sweep.subdir={name}"] for name, pts in chunks.items()]
        returns = []
        try:
            returns = launchers.launch(launcher, overrides, initial_job_idx=0)
        except Exception as e:  # noqa: BLE001 - e.g. a cluster job that died; recorded below
            log.error("launcher: %s", e)
        record_lost_jobs(chunks, returns, sweep_dir)
    fmt = batch.format if batch and batch.format else config.dataset.format
    name = batch.name if batch and batch.name else config.dataset.name
    return finish(sweep_dir, points, t0, fmt, name)


def record_lost_jobs(chunks: dict[str, list[Point]], returns: list, sweep_dir: Path) -> None:
    """A job that ended without its job.json (crash, kill, cluster failure) gets one that lists
    its stimuli as failed, with the reason, so the dataset and the exit code account for them."""
    for i, (name, pts) in enumerate(chunks.items()):
        job_dir = sweep_dir / name
        if (job_dir / JOB_FILE).exists():
            continue
        reason = "the job ended without writing its results"
        if i < len(returns) and getattr(returns[i], "status", None) is not None:
            try:
                _ = returns[i].return_value  # re-raises the job's exception, if it had one
            except Exception as e:  # noqa: BLE001
                reason = f"{type(e).__name__}: {e}"
        write_lost(job_dir, [{"id": p.id, "point": p.point, "fingerprint": p.fingerprint} for p in pts], reason)
        log.error("%s: %s", name, reason)


def finish(sweep_dir: Path, points: list[Point], t0: float, fmt: str, name: str | None) -> dict:
    """Collect failures, build the dataset from the successes, report, exit non-zero on failure."""
    records = read_records(sweep_dir)
    failed = {}
    for p in points:
        rec = records.get(p.id)
        if rec is None or not rec.ok:
            failed[p.id] = rec.record.get("error", "failed") if rec else "did not run"
    report = aggregate([sweep_dir], sweep_dir, fmt=fmt, name=name)
    log.info(
        "sweep finished in %s: %d of %d stimuli ok, %d failed; dataset in %s",
        clock(time.time() - t0), len(points) - len(failed), len(points), len(failed), sweep_dir,
    )
    if failed:
        print(f"{len(failed)} failed stimuli:", file=sys.stderr)
        for sid, err in failed.items():
            print(f"  {sid}: {err}", file=sys.stderr)
        sys.exit(1)
    return report
