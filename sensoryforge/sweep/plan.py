"""The plan of a sweep: from Hydra overrides to numbered stimuli, checked, fingerprinted, split into
what is finished and what to run, and chunked into Hydra jobs.

The plan (`sweep_plan.json` in the sweep folder) lists every stimulus of the sweep in a stable
order (stim_0000, stim_0001, ... in the order of Hydra's basic sweeper: the Cartesian product of
each block's overrides, the last key varying fastest, blocks one after another), with its sweep
point (every swept or overridden key, its value parsed once and kept typed), its per-stimulus
values and a fingerprint of everything that determines its result. Points that differ only in
`stimulus.*`, `seed` and `repetition` share a config and are chunked into one Hydra job that
simulates them along the batch axis.

Resume: a stimulus whose finished record carries the same fingerprint is skipped; the rest
(unfinished or failed) is chunked anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sensoryforge.config import check, compose_error, result_config, to_stimulus
from sensoryforge.core.params import ConfigError, check_fields, check_value, unknown_key
from sensoryforge.core.schema import SEED_KEYS, SWITCHES, Config
from sensoryforge.dataset.files import write_json
from sensoryforge.dataset.jobs import JOB_FILE, PLAN_FILE, read_records
from sensoryforge.sweep.launchers import parallelism

PLAN_FORMAT = "sensoryforge-plan/1"
NOT_A_POINT = ("dry_run", "batch_file")  # command-line switches the sweeper consumes itself


def is_stimulus_key(key: str) -> bool:
    """Keys that vary within one job (along the batch axis)."""
    return key.startswith("stimulus.") or key in SEED_KEYS


def is_group(key: str, loader) -> bool:
    """Whether an override key names a config group (stimulus=gabor) rather than a value."""
    return "/" in key or ("." not in key and bool(loader.get_group_options(key)))


def written(value: Any) -> str:
    """A typed override value as it is written on the command line (10, 0.5, true, null, [a,b])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(written(v) for v in value) + "]"
    return str(value)


@dataclass
class Point:
    id: str
    job: tuple[str, ...]  # overrides composed by the launcher (group choices, other values)
    values: dict[str, Any]  # per-stimulus values, typed by the schema
    point: dict[str, Any]  # every swept or overridden key of this point -> its value (parsed)
    fingerprint: str = ""


# -- expanding the sweep ---------------------------------------------------------------------


def parse_overrides(lines: list[str], parser: OverridesParser | None = None) -> list[Override]:
    """Hydra's parsing of override lines; a grammar error becomes one ConfigError line."""
    parser = parser or OverridesParser.create()
    try:
        return parser.parse_overrides(lines)
    except HydraException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None


def expand(params: dict, blocks: list[dict], arguments: list[str], loader) -> list[Point]:
    """All points of the sweep, numbered in order: per block, Hydra's own splitting of the block's
    overrides followed by the sweeper's params and the command line (a later override of a key
    replaces an earlier one, in the earlier one's place)."""
    parser = OverridesParser.create(config_loader=loader)
    common = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    combos: list[list[str]] = []
    for block in blocks or [{}]:
        overrides = parse_overrides([f"{k}={v}" for k, v in block.items()] + common, parser)
        for o in overrides:
            if o.is_sweep_override() and not o.is_discrete_sweep():
                raise ConfigError(f"{o.input_line}: interval sweeps need a sweeper such as optuna")
            if o.is_sweep_override() and not any(True for _ in o.sweep_string_iterator()):
                raise ConfigError(f"{o.input_line}: an empty sweep (no values), so nothing would run")
        (all_points,) = BasicSweeper.split_arguments(overrides, None)
        combos.extend(all_points)
    width = max(4, len(str(max(len(combos) - 1, 0))))
    parsed: dict[str, Override] = {}  # each distinct "key=value" is parsed once
    group: dict[str, bool] = {}  # and each key looked up once (a search of the config path)

    points = []
    for i, combo in enumerate(combos):
        job, values, point = [], {}, {}
        for line in combo:
            if line not in parsed:
                (parsed[line],) = parse_overrides([line], parser)
            o = parsed[line]
            key = o.key_or_group
            if key in NOT_A_POINT:
                continue
            if key in SWITCHES:  # reaches the jobs, but is no part of any result
                job.append(line)
                continue
            point[key] = o.value()
            if key not in group:
                group[key] = is_group(key, loader)
            plain = o.get_key_element() == key  # no +/~ prefix, no @package
            if plain and not group[key] and is_stimulus_key(key):
                values[key] = point[key]
            else:
                job.append(line)
        points.append(Point(f"stim_{i:0{width}d}", tuple(job), values, point))
    return points


# -- checking every point before anything runs --------------------------------------------------


def fingerprint(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_points(points: list[Point], compose) -> dict[tuple, DictConfig]:
    """Composes each distinct job config once, checks every point's values (typing them as the
    schema does) and sets the fingerprints. `compose(job_overrides)` returns the job's config (the
    launcher's composition). Returns each distinct job's config (without its hydra node)."""
    by_job: OrderedDict[tuple, list[Point]] = OrderedDict()
    for p in points:
        by_job.setdefault(p.job, []).append(p)
    configs: dict[tuple, DictConfig] = {}
    for job, pts in by_job.items():
        try:
            cfg = compose(list(job))
        except (HydraException, OmegaConfBaseException) as e:
            raise compose_error(e) from None
        with open_dict(cfg):
            cfg.pop("hydra", None)  # as the task sees it
        configs[job] = cfg
        check(cfg)
        base = result_config(cfg)
        base.pop("stimulus")
        stim_node = cfg.stimulus
        base_stim = to_stimulus(stim_node)
        converted: dict[tuple[str, str], Any] = {}
        for p in pts:
            own = {}
            for key, v in p.values.items():
                tag = (key, json.dumps(v, default=str))
                if tag not in converted:
                    converted[tag] = _convert(stim_node, key, v)
                own[key] = converted[tag]
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
            p.fingerprint = fingerprint([base, stim.type_name, stim.params(), seed, rep])
    return configs


def _convert(stim_node: DictConfig, key: str, value: Any) -> Any:
    """The value as the schema types it (e.g. 10 -> 10.0 for a float field), or a ConfigError."""
    if key in SEED_KEYS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}={written(value)}: must be an integer")
        check_value(Config, key, value, key)
        return value
    name = key.split(".", 1)[1]
    if name not in stim_node:
        raise unknown_key("stimulus", name, [str(k) for k in stim_node.keys()])
    try:
        merged = OmegaConf.merge(stim_node, {name: value})
    except OmegaConfBaseException as e:
        raise ConfigError(f"{key}={written(value)}: {str(e).strip().splitlines()[0]}") from None
    return OmegaConf.to_container(merged)[name]


def swept_keys(points: list[Point]) -> list[str]:
    """Keys with more than one value over the points, in order of first appearance."""
    keys: OrderedDict[str, set] = OrderedDict()
    for p in points:
        for k, v in p.point.items():
            keys.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
    return [k for k, vals in keys.items() if len(vals) > 1]


# -- what is finished, chunks ---------------------------------------------------------------------


def split_finished(points: list[Point], sweep_dir: Path) -> tuple[list[Point], list[Point]]:
    """(finished, to do). A finished stimulus made with another config stops the sweep."""
    records = read_records(sweep_dir) if sweep_dir.is_dir() else {}
    done, todo = [], []
    for p in points:
        rec = records.get(p.id)
        if rec is None or not rec.ok:
            todo.append(p)
        elif rec.record.get("fingerprint") == p.fingerprint:
            done.append(p)
        else:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir}: already holds {p.id} made with another config or sweep; "
                "use a new hydra.sweep.dir (or delete that folder) to run this sweep"
            )
    return done, todo


# An array task on a cluster pays its start (queue, interpreter, torch, Hydra: ~4.5 s on the
# reference machine, ~60 ms per default stimulus) before its first stimulus: a sweep gets at most
# one wave of array tasks with at least this many stimuli each (hydra.sweeper.chunk_size sets the
# size outright).
CLUSTER_MIN_CHUNK = 32


def check_chunking(sweeper) -> None:
    """The sweeper's chunk sizes: chunk_size 0 (automatic) or >= 1, 1 <= min <= max."""
    values = {k: sweeper.get(k) if hasattr(sweeper, "get") else getattr(sweeper, k)
              for k in ("chunk_size", "min_chunk_size", "max_chunk_size")}
    for k, v in values.items():
        lowest = 0 if k == "chunk_size" else 1
        if isinstance(v, bool) or not isinstance(v, int) or v < lowest:
            what = "0 (automatic) or an integer >= 1" if k == "chunk_size" else "an integer >= 1"
            raise ConfigError(f"hydra.sweeper.{k}={v}: must be {what}")
    if values["min_chunk_size"] > values["max_chunk_size"]:
        raise ConfigError(
            f"hydra.sweeper.min_chunk_size={values['min_chunk_size']}: must be <= "
            f"hydra.sweeper.max_chunk_size={values['max_chunk_size']}"
        )


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


# -- the plan file: written by the sweeper, read by each job ------------------------------------


def write_plan(sweep_dir: Path, points: list[Point], chunks: OrderedDict[str, list[Point]]) -> None:
    write_json(sweep_dir / PLAN_FILE, {
        "format": PLAN_FORMAT,
        "started": time.time(),
        "n_stimuli": len(points),
        "swept": swept_keys(points),
        "stimuli": [dataclasses.asdict(p) for p in points],
        "chunks": {name: [p.id for p in pts] for name, pts in chunks.items()},
    })


def load_plan(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / PLAN_FILE).read_text())


def chunk_entries(plan: dict, chunk: str) -> list[dict]:
    """The plan's entries (id, values, point, fingerprint) of one chunk's stimuli, in order."""
    entries = {s["id"]: s for s in plan["stimuli"]}
    return [entries[sid] for sid in plan["chunks"][chunk]]
