"""Sweeps that outlive their command: the tasks of an earlier command (detached, or whose submitter
was killed) that are still alive on the cluster are attached to, never submitted again.

launch.json (sweep/launchers.py) records which cluster task runs each chunk. Before planning, a
sweep command asks the cluster (squeue, then sacct) for those tasks: a chunk whose task is still
pending or running and whose folder has no job.json is in flight. Its stimuli are planned to no
new job, its entry stays in the rewritten plan (a pending task reads it when it starts), and the
command waits for its task beside the jobs it submits itself. So no stimulus is ever computed by
two live tasks, and the dataset is built by whichever command sees the last task finish (or by
`sensoryforge-aggregate DIR`).
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path

from sensoryforge.core.params import ConfigError
from sensoryforge.dataset.jobs import JOB_FILE, read_plan
from sensoryforge.sweep import cluster
from sensoryforge.sweep.launchers import read_launch
from sensoryforge.sweep.plan import Chunk, Sweep

log = logging.getLogger("sensoryforge")

# Slurm job states of a task that may still write its results
ALIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
         "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD"}


def alive_tasks(sweep_dir: Path) -> dict[str, dict]:
    """chunk -> {task, state, reason} of the recorded cluster tasks still alive whose chunk is not
    finished. {} without a record or a cluster that answers (then nothing can be attached to)."""
    rec = read_launch(sweep_dir)
    waiting = {c: t for c, t in rec.get("tasks", {}).items() if not (sweep_dir / c / JOB_FILE).exists()}
    if not waiting or rec.get("launcher") != "Slurm":
        return {}
    states: dict[str, dict] = {}
    try:
        for array in sorted({str(t).split("_")[0] for t in waiting.values()}):
            states.update(cluster.task_states(array))
    except cluster.Unreachable as e:
        log.warning("launch.json records %d unfinished tasks, but no Slurm cluster answers here (%s): "
                    "they are treated as ended", len(waiting), e)
        return {}
    out = {}
    for chunk, task in waiting.items():
        st = states.get(str(task))
        if st and st["state"].split(" ")[0] in ALIVE:
            out[chunk] = {"task": str(task), "state": st["state"], "reason": st.get("reason", "")}
    return out


def in_flight(sweep: Sweep, sweep_dir: Path) -> OrderedDict[str, tuple[Chunk, str]]:
    """chunk -> (its Chunk in the plan that launched it, its task id) of the live tasks; a folder
    whose live tasks run another sweep is refused (one line)."""
    alive = alive_tasks(sweep_dir)
    if not alive:
        return OrderedDict()
    header = read_plan(sweep_dir).header  # {} for no plan, a damaged one or the old format
    if header.get("n_stimuli") != sweep.n or _points(header.get("blocks")) != _points(sweep.header()["blocks"]):
        some = next(iter(alive.values()))["task"]
        raise ConfigError(f"hydra.sweep.dir={sweep_dir}: {len(alive)} cluster tasks of another sweep still run "
                          f"in this folder (Slurm job {some.split('_')[0]}); wait for them, scancel them, or use "
                          "another hydra.sweep.dir")
    out: OrderedDict[str, tuple[Chunk, str]] = OrderedDict()
    for chunk, st in alive.items():
        ranges = header.get("chunks", {}).get(chunk)
        if not ranges:
            continue
        job = next(g for lo, hi, g in sweep.runs if lo <= ranges[0][0] < hi)
        out[chunk] = (Chunk(job, [list(r) for r in ranges]), st["task"])
    return out


def _points(blocks) -> str:
    """What numbers the stimuli of a plan's blocks: the axes that make points (switches such as
    detach=true and skipped keys aside), as the plan file holds them."""
    try:
        return json.dumps([[a for a in b["axes"] if a.get("role") in ("stimulus", "job")] for b in blocks])
    except (TypeError, KeyError):
        return ""


def numbers(chunks: OrderedDict[str, tuple[Chunk, str]]) -> list[int]:
    """The stimulus numbers of in-flight chunks."""
    return [i for c, _ in chunks.values() for lo, hi in c.ranges for i in range(lo, hi)]
