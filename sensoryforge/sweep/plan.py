"""The plan of a sweep: from Hydra overrides to numbered stimuli, checked, fingerprinted, split into
what is finished and what to run, and chunked into Hydra jobs.

A sweep is a list of blocks (a batch file's or a preset's; one for a plain command line), each the
Cartesian product of its axes. An axis is one override and its values, in the order of Hydra's
basic sweeper: the overrides in order, a later override of a key replacing the earlier one in its
place, the last axis varying fastest; blocks one after another. Stimulus i (stim_0000, stim_0001,
...) is the i-th point of that product, so nothing is kept per stimulus but its fingerprint:
planning costs per distinct value and per distinct job config, not per stimulus.

Points that differ only in `stimulus.*`, `seed` and `repetition` share a job config (composed and
checked once) and are chunked into one Hydra job that simulates them along the batch axis. Each
distinct value is typed by the schema and checked once, each distinct stimulus' own check
(`Stimulus.check`) runs once; an error names the first stimulus it concerns.

The plan on disk (dataset/jobs.py: PLAN_FILE and PLAN_FINGERPRINTS, read by `Plan`, the one
reader) is the axes, the chunks as ranges of stimulus numbers and the fingerprints, so a job reads
only its own slice. A fingerprint is the sha1 of everything that determines a stimulus' result (the
result config without the stimulus, the stimulus' type and parameters, seed, repetition, as one
JSON list): the same as the first plan format's, so older sweep folders resume too.

Resume: a stimulus whose finished record carries the same fingerprint is skipped; the rest
(unfinished or failed) is chunked anew.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import hashlib
import itertools
import json
import math
import operator
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.errors import HydraException
from omegaconf import DictConfig, open_dict
from omegaconf.errors import OmegaConfBaseException

from sensoryforge.config import check, compose_error, result_config, stimulus_value, to_stimulus
from sensoryforge.core.params import ConfigError, check_fields, check_value
from sensoryforge.core.schema import SEED_KEYS, SWITCHES, Config
from sensoryforge.core.text import written
from sensoryforge.dataset.files import atomic, write_json
from sensoryforge.dataset.jobs import (
    JOB_FILE,
    PLAN_FILE,
    PLAN_FINGERPRINTS,
    PLAN_FORMAT,
    Plan,
    read_records,
)
from sensoryforge.sweep.launchers import parallelism

NOT_A_POINT = ("dry_run", "detach", "batch_file")  # command-line switches the sweeper consumes itself
COMPOSED = ("job", "switch")  # the axis roles that go into a job's overrides (dataset/jobs.py: Plan)


def is_stimulus_key(key: str) -> bool:
    """Keys that vary within one job (along the batch axis)."""
    return key.startswith("stimulus.") or key in SEED_KEYS


def is_group(key: str, loader) -> bool:
    """Whether an override key names a config group (stimulus=gabor) rather than a value."""
    return "/" in key or ("." not in key and bool(loader.get_group_options(key)))


def parse_overrides(lines: list[str], parser: OverridesParser | None = None) -> list[Override]:
    """Hydra's parsing of override lines; a grammar error becomes one ConfigError line."""
    parser = parser or OverridesParser.create()
    try:
        return parser.parse_overrides(lines)
    except HydraException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from None


@dataclass
class Sweep:
    """The expanded sweep. `blocks` are a format-2 plan header's (dataset/jobs.py: Plan), each
    axis also with its override `lines` and each block with its `start` and `strides`."""

    blocks: list[dict]
    n: int
    width: int
    jobs: list[tuple[str, ...]]  # the distinct job configs' overrides, in order of first use
    runs: list[tuple[int, int, int]]  # (start, stop, job): consecutive stimuli of one job config
    parts: list[list[tuple[int, tuple[int, ...]]]]  # per job: (block, its job axes' value indices)
    configs: list[DictConfig] = field(default_factory=list)  # per job, once checked
    composed: dict[tuple[str, ...], DictConfig] = field(default_factory=dict)  # job -> as composed
    fingerprints: bytes | None = None
    _info: list[dict] = field(default_factory=list)  # per job: what fingerprints need
    _typed: dict[tuple, list] = field(default_factory=dict)  # (job, block, axis) -> typed values

    def id(self, i: int) -> str:
        return f"stim_{i:0{self.width}d}"

    def header(self, chunks: dict | None = None) -> dict:
        """The plan file's content (format 2)."""
        blocks = [{"axes": [{k: a[k] for k in ("key", "role", "values")} for a in b["axes"]]} for b in self.blocks]
        return {"format": PLAN_FORMAT, "started": time.time(), "n_stimuli": self.n, "width": self.width,
                "swept": swept_keys(self), "blocks": blocks,
                "chunks": {name: c.ranges for name, c in (chunks or {}).items()}}

    def reader(self, chunks: dict | None = None) -> Plan:
        """The plan as a job would read it (points, values, entries), from memory."""
        return Plan.numbered(self.header(chunks), fingerprints=self.fingerprints)

    def job_sizes(self) -> list[int]:
        sizes = [0] * len(self.jobs)
        for lo, hi, g in self.runs:
            sizes[g] += hi - lo
        return sizes


# -- expanding the sweep ---------------------------------------------------------------------


def _simple(x: Any) -> bool:
    """A parsed element that is its own value (a quoted string or a list is parsed again)."""
    return x is None or type(x) in (int, float, bool, str)


def _axes(overrides: list[Override], parser: OverridesParser, group) -> list[dict]:
    """One block's axes, as Hydra's BasicSweeper.split_arguments orders them, with each value's
    override line and parsed value and the axis' role (see dataset/jobs.py: Plan)."""
    final: OrderedDict[str, Override] = OrderedDict()
    for o in overrides:
        final[o.get_key_element()] = o  # a later override of a key replaces it, in its place
    axes = []
    for key_element, o in final.items():
        if o.is_sweep_override():
            elements = list(o.sweep_iterator())  # once: a shuffled sweep shuffles on every call
            lines = [f"{key_element}={Transformer.str(e)}" for e in elements]
            if all(_simple(e) for e in elements):
                values = elements  # what parsing each line again would give (and 1 ms each)
            else:
                values = [parse_overrides([ln], parser)[0].value() for ln in lines]
        else:
            lines = [f"{key_element}={o.get_value_element_as_str()}"]
            values = [parse_overrides(lines, parser)[0].value()]
        key = o.key_or_group
        if key in NOT_A_POINT:
            role = "skip"
        elif key in SWITCHES:  # reaches the jobs, but is no part of any result
            role = "switch"
        elif o.get_key_element() == key and not group(key) and is_stimulus_key(key):  # no +/~, @package
            role = "stimulus"
        else:
            role = "job"
        axes.append({"key": key, "role": role, "values": values, "lines": lines})
    return axes


def expand(params: dict, blocks: list[dict], arguments: list[str], loader) -> Sweep:
    """All points of the sweep, numbered in order: per block, its overrides followed by the
    sweeper's params and the command line (a later override of a key replaces an earlier one, in
    the earlier one's place)."""
    parser = OverridesParser.create(config_loader=loader)
    common = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    groups: dict[str, bool] = {}  # each key looked up once (a search of the config path)

    def group(key: str) -> bool:
        if key not in groups:
            groups[key] = is_group(key, loader)
        return groups[key]

    out, start = [], 0
    for block in blocks or [{}]:
        overrides = parse_overrides([f"{k}={v}" for k, v in block.items()] + common, parser)
        for o in overrides:
            if o.is_sweep_override() and not o.is_discrete_sweep():
                raise ConfigError(f"{o.input_line}: interval sweeps need a sweeper such as optuna")
            if o.is_sweep_override() and not any(True for _ in o.sweep_iterator()):
                raise ConfigError(f"{o.input_line}: an empty sweep (no values), so nothing would run")
        axes = _axes(overrides, parser, group)
        sizes = [len(a["values"]) for a in axes]
        strides = [math.prod(sizes[k + 1 :]) for k in range(len(axes))]
        out.append({"axes": axes, "start": start, "size": math.prod(sizes), "strides": strides})
        start += out[-1]["size"]
    jobs: dict[tuple[str, ...], int] = {}
    runs: list[tuple[int, int, int]] = []
    parts: list[list] = []
    for b, block in enumerate(out):
        axes, strides = block["axes"], block["strides"]
        jpos = [k for k, a in enumerate(axes) if a["role"] in COMPOSED]
        # the job config changes only with the job axes of several values, so only the axes up to
        # the last of them are walked (a constant override such as pipeline.dt=0.5 after the
        # stimulus axes would otherwise make this a loop over every point)
        varying = [k for k in jpos if len(axes[k]["values"]) > 1]
        outer = varying[-1] + 1 if varying else 0
        run = strides[outer - 1] if outer else block["size"]
        seen: dict[tuple, int] = {}
        for r, idx in enumerate(itertools.product(*(range(len(a["values"])) for a in axes[:outer]))):
            jidx = tuple(idx[k] if k < outer else 0 for k in jpos)
            if jidx not in seen:
                job = tuple(axes[k]["lines"][i] for k, i in zip(jpos, jidx))
                if job not in jobs:
                    jobs[job] = len(jobs)
                    parts.append([])
                seen[jidx] = jobs[job]
                parts[seen[jidx]].append((b, jidx))
            g, lo = seen[jidx], block["start"] + r * run
            if runs and runs[-1][2] == g and runs[-1][1] == lo:
                runs[-1] = (runs[-1][0], lo + run, g)
            else:
                runs.append((lo, lo + run, g))
    width = max(4, len(str(max(start - 1, 0))))
    return Sweep(out, start, width, list(jobs), runs, parts)


def swept_keys(sweep: Sweep) -> list[str]:
    """Keys with more than one value over the points, in order of first appearance."""
    keys: OrderedDict[str, set] = OrderedDict()
    for k, values in key_values(sweep).items():
        keys[k] = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return [k for k, vals in keys.items() if len(vals) > 1]


def key_values(sweep: Sweep) -> OrderedDict[str, list]:
    """Each key of the points -> its values in order of first appearance (repeats across blocks)."""
    out: OrderedDict[str, list] = OrderedDict()
    for block in sweep.blocks:
        last = {a["key"]: a for a in block["axes"] if a["role"] in ("stimulus", "job")}  # the last wins
        for a in block["axes"]:
            if a["role"] in ("stimulus", "job"):
                out.setdefault(a["key"], []).extend(last[a["key"]]["values"])
    return out


# -- checking every point before anything runs --------------------------------------------------


def _tag(value: Any) -> Any:
    """A hashable stand-in for a parsed value (1, 1.0 and True kept apart)."""
    try:
        hash(value)
        return type(value), value
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)


def _typed(cls: type, key: str, value: Any) -> Any:
    """The value as the schema types it (e.g. 10 -> 10.0 for a float field), or a ConfigError."""
    if key in SEED_KEYS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{key}={written(value)}: must be an integer")
        check_value(Config, key, value, key)
        return value
    return stimulus_value(cls, key.split(".", 1)[1], value)


_FAILED = object()  # a value that could not be typed or is out of range
KEEP_COMPOSED = 32  # job configs kept as composed, with their hydra node, for the launcher


def check_sweep(sweep: Sweep, compose) -> list[DictConfig]:
    """Composes each distinct job config once, types and checks every distinct value and every
    distinct stimulus of each (without composing per point) and prepares the fingerprints.
    `compose(job_overrides)` returns the job's config (the launcher's composition). Returns each
    job's config (without its hydra node); a ConfigError names the first point it concerns."""
    sweep.configs, sweep._info, sweep._typed = [], [], {}
    converted: dict[tuple, Any] = {}
    for g, job in enumerate(sweep.jobs):
        try:
            cfg = compose(list(job))
        except (HydraException, OmegaConfBaseException) as e:
            raise compose_error(e) from None
        if g < KEEP_COMPOSED:  # what the launcher reuses for each chunk (launchers.ComposedOnce)
            sweep.composed[job] = copy.deepcopy(cfg)
        with open_dict(cfg):
            cfg.pop("hydra", None)  # as the task sees it
        sweep.configs.append(cfg)
        check(cfg)
        base = result_config(cfg)
        base.pop("stimulus")
        stim = to_stimulus(cfg.stimulus)
        info = {"stimulus": stim, "dt": float(cfg.pipeline.dt), "duration": float(cfg.pipeline.duration),
                "seed": int(cfg.seed), "repetition": int(cfg.repetition),
                "head": hashlib.sha1(("[" + json.dumps(base, sort_keys=True, default=str) + ", ").encode())}
        sweep._info.append(info)
        cls = type(stim)
        first: tuple | None = None  # (point, 0 conversion | 1 check, axis, error)
        for b, jidx in sweep.parts[g]:
            block = sweep.blocks[b]
            axes, strides = block["axes"], block["strides"]
            jpos = [k for k, a in enumerate(axes) if a["role"] in COMPOSED]
            at = block["start"] + sum(j * strides[k] for k, j in zip(jpos, jidx))  # its first point
            fields = []  # the swept stimulus fields' axes
            for k, a in enumerate(axes):
                if a["role"] != "stimulus":
                    continue
                typed = []
                for j, v in enumerate(a["values"]):
                    tag, t = (cls, a["key"], _tag(v)), _FAILED
                    try:
                        if tag not in converted:
                            converted[tag] = _typed(cls, a["key"], v)
                        t = converted[tag]
                        if a["key"] not in SEED_KEYS:
                            check_value(cls, a["key"][9:], t, a["key"])
                    except ConfigError as e:
                        # a point's values are typed before its stimulus is checked (kind 0 first)
                        failed = (at + j * strides[k], 0 if t is _FAILED else 1, k, e)
                        first = min(first or failed, failed, key=lambda f: f[:3])
                        t = _FAILED
                    typed.append(t)
                sweep._typed[(g, b, k)] = typed
                if a["key"] not in SEED_KEYS:
                    fields.append(k)
            # each distinct stimulus once, in point order: the first that fails is the first point
            choices = [[(j, t) for j, t in enumerate(sweep._typed[(g, b, k)]) if t is not _FAILED] for k in fields]
            for combo in itertools.product(*choices) if fields else ():
                s = dataclasses.replace(stim, **{axes[k]["key"][9:]: t for k, (_, t) in zip(fields, combo)})
                try:
                    s.check(info["dt"], info["duration"])
                except ConfigError as e:
                    failed = (at + sum(j * strides[k] for k, (j, _) in zip(fields, combo)), 1, 0, e)
                    first = min(first or failed, failed, key=lambda f: f[:3])
                    break
        if first is not None:
            i, kind, _, e = first
            if kind == 0:
                raise e
            raise ConfigError(f"{sweep.id(i)}: {_point_error(sweep, g, i) or e}") from None
    return sweep.configs


def _point_error(sweep: Sweep, g: int, i: int) -> ConfigError | None:
    """Point i's own error, as checking its whole stimulus finds it (the first field in order)."""
    info = sweep._info[g]
    stim = info["stimulus"]
    own = {k.split(".", 1)[1]: v for k, v in sweep.reader().values(i).items() if k.startswith("stimulus.")}
    try:
        stim = dataclasses.replace(stim, **{k: stimulus_value(type(stim), k, v) for k, v in own.items()})
        check_fields(stim, "stimulus")
        stim.check(info["dt"], info["duration"])
    except ConfigError as e:
        return e
    return None


def _picker(positions: list[int]):
    """combo -> the tuple of its elements at `positions`."""
    if len(positions) == 1:
        k = positions[0]
        return lambda c: (c[k],)
    return operator.itemgetter(*positions) if positions else lambda c: ()


def compute_fingerprints(sweep: Sweep) -> bytes:
    """Every stimulus' fingerprint (the first 8 bytes of its sha1), in id order. The config's part
    of the hash is taken once per job config, the stimulus' once per distinct stimulus."""
    out = bytearray()
    for b, block in enumerate(sweep.blocks):
        axes = block["axes"]
        jpos = [k for k, a in enumerate(axes) if a["role"] in COMPOSED]
        fields = [k for k, a in enumerate(axes) if a["role"] == "stimulus" and a["key"] not in SEED_KEYS]
        seeds = {a["key"]: k for k, a in enumerate(axes) if a["role"] == "stimulus" and a["key"] in SEED_KEYS}
        jobs = {jidx: g for g, parts in enumerate(sweep.parts) for bb, jidx in parts if bb == b}
        job_of, stim_of = _picker(jpos), _picker(fields)
        cache: dict[tuple, Any] = {}
        for combo in itertools.product(*(range(len(a["values"])) for a in axes)):
            g = jobs[job_of(combo)]
            key = (g, stim_of(combo))
            h = cache.get(key)
            if h is None:
                info = sweep._info[g]
                own = {axes[k]["key"][9:]: sweep._typed[(g, b, k)][j] for k, j in zip(fields, key[1])}
                stim = dataclasses.replace(info["stimulus"], **own) if own else info["stimulus"]
                h = info["head"].copy()
                h.update(f"{json.dumps(stim.type_name)}, {json.dumps(stim.params(), sort_keys=True, default=str)}, "
                         .encode())
                if len(cache) > 65536:  # bounded: most sweeps repeat few stimuli, some none
                    cache.clear()
                cache[key] = h
            info = sweep._info[g]
            seed = sweep._typed[(g, b, seeds["seed"])][combo[seeds["seed"]]] if "seed" in seeds else info["seed"]
            rep = (sweep._typed[(g, b, seeds["repetition"])][combo[seeds["repetition"]]]
                   if "repetition" in seeds else info["repetition"])
            h = h.copy()
            h.update(f"{seed}, {rep}]".encode())
            out += h.digest()[:8]
    return bytes(out)


def fingerprint(obj: Any) -> str:
    """The fingerprint of a JSON-able list, as compute_fingerprints makes it in parts."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- what is finished, chunks ---------------------------------------------------------------------


def split_finished(sweep: Sweep, sweep_dir: Path) -> list[int]:
    """The finished stimuli (their numbers, in order). A finished stimulus made with another
    config stops the sweep."""
    records = read_records(sweep_dir) if sweep_dir.is_dir() else {}
    found = []
    for sid, rec in records.items():
        num = sid[5:]
        if sid.startswith("stim_") and num.isdigit() and int(num) < sweep.n and sweep.id(int(num)) == sid:
            found.append((int(num), rec))
    found.sort(key=lambda x: x[0])
    if any(rec.ok for _, rec in found) and sweep.fingerprints is None:
        sweep.fingerprints = compute_fingerprints(sweep)
    done = []
    for i, rec in found:
        if not rec.ok:
            continue
        if rec.record.get("fingerprint") == sweep.fingerprints[i * 8 : i * 8 + 8].hex():
            done.append(i)
        else:
            raise ConfigError(
                f"hydra.sweep.dir={sweep_dir}: already holds {sweep.id(i)} made with another config or sweep; "
                "use a new hydra.sweep.dir (or delete that folder) to run this sweep"
            )
    return done


# An array task on a cluster pays its start (queue, interpreter, torch, Hydra: ~4.5 s on the
# reference machine, what ~450 default stimuli cost) before its first stimulus: a sweep gets at most
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


@dataclass
class Chunk:
    job: int  # index into Sweep.jobs
    ranges: list[list[int]]  # [start, stop) of its stimulus numbers

    @property
    def size(self) -> int:
        return sum(hi - lo for lo, hi in self.ranges)


def make_chunks(sweep: Sweep, done: list[int], size: int, sweep_dir: Path) -> OrderedDict[str, Chunk]:
    """Consecutive unfinished points of the same job config, `size` at a time. A chunk folder is
    named after its first and last stimulus; a name whose folder holds a finished record gets a
    suffix."""
    chunks: OrderedDict[str, Chunk] = OrderedDict()
    current: Chunk | None = None

    def flush() -> None:
        nonlocal current
        if current is None or not current.ranges:
            return
        first, last = sweep.id(current.ranges[0][0]), sweep.id(current.ranges[-1][1] - 1)
        name = first if current.size == 1 else f"{first}-{last.split('_')[-1]}"
        unique, k = name, 1
        while (sweep_dir / unique / JOB_FILE).exists() or unique in chunks:
            k += 1
            unique = f"{name}.r{k}"
        chunks[unique] = current
        current = None

    for lo, hi, g in sweep.runs:
        # this run without its finished points
        cut = [lo, *(x for i in done[bisect.bisect_left(done, lo) : bisect.bisect_left(done, hi)] for x in (i, i + 1)),
               hi]
        for a, z in zip(cut[::2], cut[1::2]):
            while a < z:
                if current is not None and current.job != g:
                    flush()
                if current is None:
                    current = Chunk(g, [])
                take = min(size - current.size, z - a)
                if current.ranges and current.ranges[-1][1] == a:
                    current.ranges[-1][1] = a + take
                else:
                    current.ranges.append([a, a + take])
                a += take
                if current.size == size:
                    flush()
    flush()
    return chunks


# -- the plan files: written by the sweeper, read by each job (dataset/jobs.py: read_plan) ---------


def write_plan(sweep_dir: Path, sweep: Sweep, chunks: OrderedDict[str, Chunk]) -> None:
    """The fingerprints, then the header (which jobs read first, so it is written last)."""
    if sweep.fingerprints is None:
        sweep.fingerprints = compute_fingerprints(sweep)
    with atomic(sweep_dir / PLAN_FINGERPRINTS, need=len(sweep.fingerprints)) as tmp:
        tmp.write_bytes(sweep.fingerprints)
    write_json(sweep_dir / PLAN_FILE, sweep.header(chunks))
