"""Sweeps: from Hydra overrides to a plan of stimuli, chunked into Hydra jobs.

The plan (`sweep_plan.json` in the sweep folder) lists every stimulus of the sweep in a stable
order (stim_0000, stim_0001, ... as Hydra's basic sweeper orders the Cartesian product, blocks one
after another), with its sweep point, its per-stimulus values and a fingerprint of everything that
determines its result. Points that differ only in `stimulus.*`, `seed` and `repetition` share a
config and are chunked into one Hydra job that simulates them along the batch axis.

Resume: a stimulus whose finished record (job.json) carries the same fingerprint is skipped; the
rest (unfinished or failed) is chunked anew. Failures are collected from the jobs' records, the
dataset is built from the successes, and the sweep exits non-zero when anything failed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sensoryforge.config import POPULATIONS, SEED_KEYS, Config, check, to_stimulus
from sensoryforge.jobs import (
    JOB_FILE,
    StimSpec,
    atomic_write_json,
    available_cores,
    build_stimulus,
    parallel_jobs,
    read_job,
    result_config,
)
from sensoryforge.params import ConfigError, check_fields, check_value

log = logging.getLogger("sensoryforge")

PLAN_FILE = "sweep_plan.json"
NOT_A_POINT = ("dry_run", "batch_file")  # command-line switches, not part of any stimulus


def is_stimulus_key(key: str) -> bool:
    """Keys that vary within one job (along the batch axis)."""
    return key.startswith("stimulus.") or key in SEED_KEYS


@dataclass
class Point:
    id: str
    job: tuple[str, ...]  # overrides composed by the launcher (group choices, other values)
    values: dict[str, Any]  # per-stimulus values (typed)
    point: dict[str, str]  # every swept or overridden key of this point -> value as written
    fingerprint: str = ""


# -- expanding the sweep ---------------------------------------------------------------------


def _key_values(overrides, loader) -> OrderedDict[str, tuple[str, bool, list[str]]]:
    """key -> (key as written, is_group, [value strings]); later overrides replace earlier ones."""
    out: OrderedDict = OrderedDict()
    for o in overrides:
        key = o.key_or_group
        if o.is_sweep_override():
            if not o.is_discrete_sweep():
                raise ConfigError(f"{o.input_line}: interval sweeps need a sweeper such as optuna")
            vals = list(o.sweep_string_iterator())
        else:
            vals = [o.get_value_element_as_str()]
        group = "/" in key or ("." not in key and bool(loader.get_group_options(key)))
        out[key] = (o.get_key_element(), group, vals)
    return out


def expand(params: dict, blocks: list[dict], arguments: list[str], loader) -> list[Point]:
    """All points of the sweep, numbered in order."""
    parser = OverridesParser.create(config_loader=loader)

    def parse(lines: list[str]):
        try:
            return parser.parse_overrides(lines)
        except HydraException as e:
            raise ConfigError(str(e).strip().splitlines()[0]) from None

    common = parse([f"{k}={v}" for k, v in (params or {}).items()] + list(arguments))
    raw: list[list[tuple[str, bool, str]]] = []
    for block in blocks or [{}]:
        kv = _key_values(parse([f"{k}={v}" for k, v in block.items()]), loader)
        kv.update(_key_values(common, loader))
        axes = [[(written, group, v) for v in vals] for written, group, vals in kv.values()]
        raw.extend(list(p) for p in itertools.product(*axes))
    width = max(4, len(str(max(len(raw) - 1, 0))))
    typed: dict[str, Any] = {}  # "key=value" -> parsed value, parsed once per distinct value

    def value(key: str, text: str) -> Any:
        line = f"{key}={text}"
        if line not in typed:
            typed[line] = parse([line])[0].value()
        return typed[line]

    points = []
    for i, p in enumerate(raw):
        job, values, point = [], {}, {}
        for written, group, v in p:
            key = written.lstrip("+~")
            if key in NOT_A_POINT:
                continue
            point[key] = v
            if not group and written == key and is_stimulus_key(key):
                values[key] = value(key, v)
            else:
                job.append(f"{written}={v}")
        points.append(Point(f"stim_{i:0{width}d}", tuple(job), values, point))
    return points


# -- checking every point before anything runs --------------------------------------------------


def _fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def validate(points: list[Point], compose) -> None:
    """Composes each distinct job config once, checks every point's values, sets fingerprints.

    `compose(job_overrides)` returns the job's config (the launcher's composition)."""
    by_job: OrderedDict[tuple, list[Point]] = OrderedDict()
    for p in points:
        by_job.setdefault(p.job, []).append(p)
    for job, pts in by_job.items():
        try:
            cfg = compose(list(job))
        except (HydraException, OmegaConfBaseException) as e:
            from sensoryforge.preflight import compose_error

            raise compose_error(e) from None
        with open_dict(cfg):
            cfg.pop("hydra", None)  # as the task sees it
        check(cfg)
        base = result_config(cfg)
        base.pop("stimulus")
        stim_node = cfg.stimulus
        base_stim = to_stimulus(stim_node)
        converted: dict[tuple[str, str], Any] = {}
        for p in pts:
            own = {}
            for key, v in p.values.items():
                text = p.point[key]
                if (key, text) not in converted:
                    converted[(key, text)] = _convert(stim_node, key, v, text)
                own[key] = converted[(key, text)]
            p.values = own
            fields = {k.split(".", 1)[1]: v for k, v in own.items() if k.startswith("stimulus.")}
            stim = dataclasses.replace(base_stim, **fields)
            try:
                check_fields(stim, "stimulus")
                stim.check(cfg.pipeline.dt, cfg.pipeline.duration)
            except ConfigError as e:
                raise ConfigError(f"{p.id}: {e}") from None
            seed = own.get("seed", cfg.seed)
            rep = own.get("repetition", cfg.repetition)
            p.fingerprint = _fingerprint(
                [base, stim.type_name, stim.params(), seed, rep]
            )


def _convert(stim_node: DictConfig, key: str, value: Any, text: str) -> Any:
    """The value as the schema types it (e.g. 10 -> 10.0 for a float field), or a ConfigError."""
    if key in SEED_KEYS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}={text}: must be an integer")
        check_value(Config, key, value, key)
        return value
    name = key.split(".", 1)[1]
    if name not in stim_node:
        from sensoryforge.params import unknown_key

        raise unknown_key("stimulus", name, [str(k) for k in stim_node.keys()])
    try:
        merged = OmegaConf.merge(stim_node, {name: value})
    except OmegaConfBaseException as e:
        raise ConfigError(f"{key}={text}: {str(e).strip().splitlines()[0]}") from None
    return OmegaConf.to_container(merged)[name]


# -- chunks, resume, progress -----------------------------------------------------------------


def parallelism(launcher: DictConfig) -> tuple[int, bool]:
    """(jobs at a time, is a cluster launcher)."""
    target = str(launcher.get("_target_", ""))
    if "submitit" in target and "Local" not in target:
        return int(launcher.get("array_parallelism", 256) or 256), True
    jobs = launcher.get("n_jobs", None)
    if jobs is not None:
        return parallel_jobs(jobs, available_cores()), False
    return 1, False


# An array task on a cluster pays its start (queue, interpreter, torch, Hydra: ~4.5 s on the
# reference machine, ~60 ms per default stimulus) before its first stimulus: a sweep gets at most
# one wave of array tasks with at least this many stimuli each (hydra.sweeper.chunk_size sets the
# size outright).
CLUSTER_MIN_CHUNK = 32


def chunk_size(n: int, sweeper, launcher: DictConfig) -> int:
    """sweeper.chunk_size if set; else local launchers get ~4 chunks per worker (load balance and
    resume points) and cluster launchers one wave of equal array tasks (at most array_parallelism
    of them, each with at least CLUSTER_MIN_CHUNK stimuli), within [min, max]_chunk_size."""
    if sweeper.chunk_size > 0:
        return int(sweeper.chunk_size)
    parallel, cluster = parallelism(launcher)
    if cluster:
        size = math.ceil(n / max(1, min(parallel, n // CLUSTER_MIN_CHUNK)))
    else:
        size = math.ceil(n / (4 * parallel))
    return max(int(sweeper.min_chunk_size), min(int(sweeper.max_chunk_size), max(size, 1)))


def make_chunks(points: list[Point], size: int, sweep_dir: Path) -> OrderedDict[str, list[Point]]:
    """Consecutive points of the same job config, `size` at a time. A chunk folder is named after
    its first and last stimulus; a name whose folder holds a finished record gets a suffix."""
    chunks: OrderedDict[str, list[Point]] = OrderedDict()
    for _, grp in itertools.groupby(points, key=lambda p: p.job):
        grp = list(grp)
        for i in range(0, len(grp), size):
            part = grp[i : i + size]
            name = part[0].id if len(part) == 1 else f"{part[0].id}-{part[-1].id.split('_')[-1]}"
            unique, k = name, 1
            while (sweep_dir / unique / JOB_FILE).exists() or unique in chunks:
                k += 1
                unique = f"{name}.r{k}"
            chunks[unique] = part
    return chunks


def finished_records(sweep_dir: Path) -> dict[str, list[dict]]:
    """stimulus id -> records from every finished job folder (ok ones first)."""
    out: dict[str, list[dict]] = {}
    if not sweep_dir.is_dir():
        return out
    for job_file in sorted(sweep_dir.glob(f"*/{JOB_FILE}")):
        job = read_job(job_file.parent)
        if job is None:
            continue
        for rec in job.get("stimuli", []):
            rec = dict(rec, _dir=job_file.parent.name)
            out.setdefault(rec["id"], []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: r["status"] != "ok")
    return out


def split_finished(points: list[Point], sweep_dir: Path) -> tuple[list[Point], list[Point]]:
    """(finished, to do). A finished stimulus made with another config stops the sweep."""
    records = finished_records(sweep_dir)
    done, todo = [], []
    for p in points:
        recs = [r for r in records.get(p.id, []) if r["status"] == "ok"]
        if not recs:
            todo.append(p)
        elif recs[0].get("fingerprint") == p.fingerprint:
            done.append(p)
        else:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir}: already holds {p.id} made with another config or sweep; "
                "use a new hydra.sweep.dir (or delete that folder) to run this sweep"
            )
    return done, todo


def compact_ids(ids: list[str]) -> str:
    """stim_0000..stim_0003, stim_0007 style listing."""
    if not ids:
        return "none"
    nums = sorted(int(i.rsplit("_", 1)[1]) for i in ids)
    width = len(ids[0].rsplit("_", 1)[1])
    runs, start, prev = [], nums[0], nums[0]
    for n in nums[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        runs.append(f"stim_{start:0{width}d}" + (f"..stim_{prev:0{width}d}" if prev > start else ""))
        if n is not None:
            start = prev = n
    return ", ".join(runs if len(runs) <= 6 else runs[:3] + ["..."] + runs[-2:])


def load_plan(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / PLAN_FILE).read_text())


def chunk_specs(cfg: DictConfig, sweep_dir: Path):
    """The specs of this job's chunk, and a function that prints the sweep's progress line."""
    plan = load_plan(sweep_dir)
    entries = {s["id"]: s for s in plan["stimuli"]}
    specs = []
    for sid in plan["chunks"][cfg.chunk]:
        e = entries[sid]
        v = e["values"]
        specs.append(
            StimSpec(
                sid,
                build_stimulus(cfg.stimulus, v),
                int(v.get("seed", cfg.seed)),
                int(v.get("repetition", cfg.repetition)),
                e["point"],
                e["fingerprint"],
            )
        )

    def progress(job: dict) -> None:
        total = len(plan["chunks"])
        done = count_finished(sweep_dir)
        elapsed = time.time() - plan["started"]
        eta = elapsed / max(done, 1) * (total - done)
        failed = sum(s["status"] != "ok" for s in job["stimuli"])
        log.info(
            "[%d/%d] %s: %d stimuli in %.1f s%s | elapsed %s | ETA %s",
            done, total, cfg.chunk, len(specs), job["runtime_s"],
            f" ({failed} failed)" if failed else "", clock(elapsed), clock(eta),
        )

    return specs, progress


PROGRESS_FILE = ".progress"
_RECORD = 64  # bytes per finished-job record


def count_finished(sweep_dir: Path) -> int:
    """Append this job's record to the run's progress file; return how many jobs have finished.
    Appends of one small record are atomic, and the count is the file size: O(1) per job."""
    fd = os.open(sweep_dir / PROGRESS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{time.time():.3f} {os.getpid()}".ljust(_RECORD - 1).encode() + b"\n")
        return os.fstat(fd).st_size // _RECORD
    finally:
        os.close(fd)


def clock(seconds: float) -> str:
    """m:ss or h:mm:ss."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def point_of(task_overrides) -> dict[str, str]:
    """A single run's overrides as a point: key -> value as written."""
    out = {}
    for line in task_overrides:
        key, _, value = str(line).partition("=")
        key = key.lstrip("+~")
        if not key.startswith("hydra"):
            out[key] = value
    return out


# -- estimates (dry run) ------------------------------------------------------------------------

# Measured on the reference 2-core machine (benchmarks/RESULTS.md, W1-W4): seconds per stimulus,
# step and afferent (drive, noise, spiking loop, outcomes), per step of a batch (Python and
# dispatch overhead of the spiking loop), per Hydra job, per stimulus to write the dataset, and the
# fixed start-up (Python, torch, Hydra). Bytes on disk per spike (job files, results.pt and
# results.h5 together) and per stimulus (records, attributes, index), at an assumed mean rate.
SEC_PER_ELEMENT_STEP = 1.5e-8
SEC_PER_BATCH_STEP = 1.2e-4
SEC_PER_JOB = 0.5
SEC_PER_STIMULUS_DATASET = 5e-3
SEC_STARTUP = 3.5
BASE_MEMORY_MB = 450  # python + torch + hydra
DISK_BYTES_PER_SPIKE, DISK_BYTES_PER_STIMULUS, ASSUMED_RATE_HZ = 25, 2048, 2.0


def estimate(cfg: DictConfig, n_stimuli: int, n_jobs: int, parallel: int) -> str:
    from sensoryforge.pipeline import BYTES_PER_ELEMENT, auto_batch

    steps = max(1, round(cfg.pipeline.duration / cfg.pipeline.dt))
    n = sum(getattr(cfg.neurons, p).count for p in POPULATIONS)
    batch = cfg.pipeline.batch_size or auto_batch(steps, n)
    batch = min(batch, max(1, math.ceil(n_stimuli / max(n_jobs, 1))))
    per_stim = SEC_PER_ELEMENT_STEP * steps * n + SEC_PER_BATCH_STEP * steps / batch
    at_once = max(1, min(parallel, n_jobs))
    seconds = (
        SEC_STARTUP
        + (n_stimuli * per_stim + n_jobs * SEC_PER_JOB) / at_once
        + n_stimuli * SEC_PER_STIMULUS_DATASET
    )
    memory = BASE_MEMORY_MB + batch * steps * max(n, 1) * BYTES_PER_ELEMENT / 2**20
    spikes = n_stimuli * n * ASSUMED_RATE_HZ * steps * cfg.pipeline.dt / 1000.0
    disk = (spikes * DISK_BYTES_PER_SPIKE + n_stimuli * DISK_BYTES_PER_STIMULUS) / 2**20
    return (
        f"~{clock(seconds)} (~{per_stim * 1000:.0f} ms per stimulus, {at_once} job(s) at a time), "
        f"peak memory ~{memory:.0f} MB per job, disk ~{disk:.0f} MB (at ~{ASSUMED_RATE_HZ:g} Hz per afferent)"
    )


def single_dry_run(cfg: DictConfig) -> None:
    stim = to_stimulus(cfg.stimulus)
    params = " ".join(f"{k}={v}" for k, v in stim.params().items())
    print("dry run: nothing simulated, nothing written")
    print(f"  1 stimulus: {stim.type_name} {params} seed={cfg.seed} repetition={cfg.repetition}")
    print(f"  estimate: {estimate(cfg, 1, 1, 1)}")


# -- the sweep ------------------------------------------------------------------------------------


def run_sweep(sweeper, arguments: list[str]) -> Any:
    """Body of the Hydra sweeper plugin (hydra_plugins/sensoryforge_sweeper)."""
    from hydra.core.plugins import Plugins

    from sensoryforge import launchers

    config, ctx = sweeper.config, sweeper.hydra_context
    loader = ctx.config_loader
    t0 = time.time()
    sweep_dir = Path(str(config.hydra.sweep.dir))
    blocks = list(sweeper.blocks or [])
    batch = None
    try:
        if config.get("batch_file"):
            from sensoryforge.batchfile import load_batch_file

            batch = load_batch_file(Path(config.batch_file))
            blocks = batch.blocks
        points = expand(dict(sweeper.params or {}), blocks, arguments, loader)
        validate(points, lambda ov: loader.load_sweep_config(config, ov))
        done, todo = split_finished(points, sweep_dir)
    except ConfigError as e:
        print(f"sensoryforge: error: {e}", file=sys.stderr)
        sys.exit(2)
    size = chunk_size(len(todo), sweeper, config.hydra.launcher)
    chunks = make_chunks(todo, size, sweep_dir)
    parallel, _ = parallelism(config.hydra.launcher)
    if config.get("dry_run"):
        print_dry_run(config, points, done, chunks, size, sweep_dir, parallel)
        return []
    if done:
        log.info(
            "resume: %d of %d stimuli already finished in %s, skipped: %s",
            len(done), len(points), sweep_dir, compact_ids([p.id for p in done]),
        )
    returns = []
    if chunks:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        plan = {
            "format": "sensoryforge-plan/1",
            "started": time.time(),
            "n_stimuli": len(points),
            "swept": swept_keys(points),
            "stimuli": [dataclasses.asdict(p) for p in points],
            "chunks": {name: [p.id for p in pts] for name, pts in chunks.items()},
        }
        atomic_write_json(sweep_dir / PLAN_FILE, plan)
        (sweep_dir / PROGRESS_FILE).unlink(missing_ok=True)  # progress counts this run's jobs
        OmegaConf.save(config, sweep_dir / "multirun.yaml")
        launcher = Plugins.instance().instantiate_launcher(
            hydra_context=ctx, task_function=sweeper.task_function, config=config
        )
        log.info("%d stimuli to run in %d jobs of up to %d (%s)", len(todo), len(chunks), size, sweep_dir)
        overrides = [[*pts[0].job, f"chunk={name}", f"hydra.sweep.subdir={name}"] for name, pts in chunks.items()]
        try:
            returns = launchers.launch(launcher, overrides, initial_job_idx=0)
        except Exception as e:  # noqa: BLE001 - e.g. a cluster job that died; recorded below
            log.error("launcher: %s", e)
        record_lost_jobs(chunks, returns, sweep_dir)
    fmt = batch.format if batch and batch.format else config.dataset.format
    name = batch.name if batch and batch.name else config.dataset.name
    return finish(sweep_dir, points, t0, fmt, name)


def record_lost_jobs(chunks, returns, sweep_dir: Path) -> None:
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
        job_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            job_dir / JOB_FILE,
            {
                "format": "sensoryforge-job/1",
                "lost": True,
                "stimuli": [
                    {"id": p.id, "point": p.point, "fingerprint": p.fingerprint, "status": "failed", "error": reason}
                    for p in pts
                ],
            },
        )
        log.error("%s: %s", name, reason)


def swept_keys(points: list[Point]) -> list[str]:
    keys: OrderedDict[str, set] = OrderedDict()
    for p in points:
        for k, v in p.point.items():
            keys.setdefault(k, set()).add(v)
    return [k for k, vals in keys.items() if len(vals) > 1]


def finish(sweep_dir: Path, points: list[Point], t0: float, fmt: str, name: str | None) -> dict:
    """Collect failures, build the dataset from the successes, report, exit non-zero on failure."""
    from sensoryforge.aggregate import aggregate

    records = finished_records(sweep_dir)
    failed = {}
    for p in points:
        recs = records.get(p.id, [])
        if not recs or recs[0]["status"] != "ok":
            failed[p.id] = recs[0].get("error", "failed") if recs else "did not run"
    report = aggregate([sweep_dir], sweep_dir, fmt=fmt, name=name)
    ok = len(points) - len(failed)
    log.info(
        "sweep finished in %s: %d of %d stimuli ok, %d failed; dataset in %s",
        clock(time.time() - t0), ok, len(points), len(failed), sweep_dir,
    )
    if failed:
        print(f"{len(failed)} failed stimuli:", file=sys.stderr)
        for sid, err in failed.items():
            print(f"  {sid}: {err}", file=sys.stderr)
        sys.exit(1)
    return report


def print_dry_run(config, points, done, chunks, size, sweep_dir, parallel) -> None:
    todo = sum(len(c) for c in chunks.values())
    print("dry run: nothing simulated, nothing written")
    print(f"  stimuli: {len(points)} ({todo} to run, {len(done)} already finished)")
    print(f"  jobs: {len(chunks)} (up to {size} stimuli each), {parallel} at a time")
    for k in swept_keys(points):
        vals = list(OrderedDict.fromkeys(p.point[k] for p in points if k in p.point))
        shown = ", ".join(vals[:8]) + (", ..." if len(vals) > 8 else "")
        print(f"  swept {k}: {shown} ({len(vals)} values)")
    print(f"  output folder: {sweep_dir}")
    print("  examples:")
    shown = swept_keys(points) or list(points[0].point) if points else []
    for p in points[:3] + (points[-1:] if len(points) > 3 else []):
        print(f"    {p.id}: " + " ".join(f"{k}={p.point[k]}" for k in shown if k in p.point))
    print(f"  estimate: {estimate(config, todo, max(len(chunks), 1), parallel)}")
