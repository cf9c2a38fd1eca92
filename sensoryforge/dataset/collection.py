"""The finished stimuli of one or more sweep folders, in dataset order, with their parameters: what
the dataset writers, tables, plots and comparisons read (`collect`).

Every planned stimulus is accounted for: with the sweep's plan (sweep_plan.json), each planned id
is an item or in `failed`, with its reason (REASONS): failed (its job recorded an error), lost (the
sweeper recorded its job as ended without results), missing (no job folder recorded it), damaged
(a file of its job folder is; jobs.read_folder). Without a plan, what the folder holds is
collected and a note says that nothing else could be checked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import SEED_KEYS
from sensoryforge.dataset.jobs import JOB_FILE, Plan, Record, job_dirs, read_plan, read_records

REASONS = ("failed", "lost", "missing", "damaged")


@dataclass
class Item(Record):
    """One finished stimulus of the dataset: its record, its id in the dataset and its source."""

    id: str = ""  # id in the dataset
    source: str = ""  # "<folder>/<original id>"


@dataclass
class Collection:
    items: list[Item]
    failed: dict[str, str]  # id (or folder/id) -> error, for every stimulus not in items
    swept: list[str]  # keys with more than one value, in order of first appearance
    dirs: list[Path]
    reasons: dict[str, str] = field(default_factory=dict)  # the keys of `failed` -> one of REASONS
    notes: list[str] = field(default_factory=list)  # what could not be checked, one line each
    planned: int | None = None  # how many stimuli the plans list (None: a folder had no plan)


def labels(dirs: list[Path]) -> list[str]:
    """How each folder is named in `source`: its name, or its path when names repeat."""
    names = [d.resolve().name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]


def _no_jobs(root: Path) -> ConfigError:
    deeper = sorted({p.parent.parent for p in root.glob(f"*/*/**/{JOB_FILE}")})
    started = [p for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()] if root.is_dir() else []
    hint = ""
    if deeper:
        shown = ", ".join(str(d) for d in deeper[:3]) + (", ..." if len(deeper) > 3 else "")
        hint = f"; sweep folders below it: {shown} (pass those)"
    elif started:
        hint = f"; {len(started)} job folders started but none finished"
    return ConfigError(f"{root}: no finished jobs (no {JOB_FILE} in it or its sub-folders){hint}")


def _missing_error(root: Path, plan: Plan) -> dict[str, str]:
    """Why each stimulus of the plan's latest chunks would be missing (its folder did not finish)."""
    out = {}
    for name, ids in plan.chunks.items():
        if (root / name).is_dir():
            for sid in ids:
                out[sid] = f"missing: its job folder {name} has no {JOB_FILE} (the job did not finish)"
    return out


def collect(dirs: list[Path]) -> Collection:
    """Finished stimuli of every folder, in dataset order, and the others with their reasons.

    A stimulus recorded twice (a resumed sweep) counts once, its successful run preferred.
    With several folders, stimuli are renumbered stim_0000... in folder order; `source` keeps
    "<folder>/<original id>".
    """
    dirs = [Path(d) for d in dirs]
    col = Collection([], {}, [], dirs, planned=0)
    many = len(dirs) > 1
    for root, label in zip(dirs, labels(dirs)):
        if not root.exists():
            raise ConfigError(f"{root}: no such folder")
        if not root.is_dir():
            raise ConfigError(f"{root}: not a folder")
        if not job_dirs(root):
            raise _no_jobs(root)
        plan = read_plan(root)
        records = read_records(root, plan)
        problems: dict[str, tuple[str, str]] = {}  # id -> (reason, error)
        found = 0
        for sid, rec in records.items():
            if rec.ok:
                col.items.append(Item(rec.record, rec.job_dir, rec.job, sid, f"{label}/{sid}"))
                found += 1
            else:
                problems[sid] = (rec.reason, rec.record.get("error", "failed"))
        if plan.ids is None:
            col.planned = None
            col.notes.append(f"{root}: {plan.note}: aggregating the {found} finished stimuli found; "
                             "planned stimuli cannot be checked")
        else:
            why = _missing_error(root, plan)
            for sid in plan.ids:
                if sid not in records:
                    problems[sid] = ("missing", why.get(sid, "missing: no job folder recorded it"))
            if col.planned is not None:
                col.planned += len(plan.ids)
        for sid in sorted(problems):
            key = f"{label}/{sid}" if many else sid
            col.reasons[key], col.failed[key] = problems[sid]
    if many:  # renumber across folders; `source` keeps the original id
        width = max(4, len(str(len(col.items) - 1)))
        for i, it in enumerate(col.items):
            it.id = f"stim_{i:0{width}d}"
    col.swept = swept_keys(col.items)
    return col


def _walk(d: Any, path: list[str]) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def key_value(it: Item, key: str) -> Any:
    """The value of a (swept) key for one stimulus: from the stimulus' own parameters, its seeds,
    the job's resolved config, or else the sweep point."""
    rec = it.record
    if key.startswith("stimulus."):
        return rec["params"].get(key.split(".", 1)[1])
    if key in SEED_KEYS:
        return rec[key]
    if key == "stimulus":
        return rec["type"]
    v = _walk(it.job.get("config"), key.split("."))
    if v is not None and not isinstance(v, (dict, list)):
        return v
    return rec.get("point", {}).get(key)


def swept_keys(items: list[Item]) -> list[str]:
    """Keys of the sweep points with more than one value over `items` (several folders included)."""
    keys: dict[str, None] = {}
    for it in items:
        for k in it.record.get("point", {}):
            keys.setdefault(k, None)
    out = []
    for k in keys:
        values = {json.dumps(key_value(it, k), sort_keys=True, default=str) for it in items}
        if len(values) > 1:
            out.append(k)
    return out


def point_keys(swept: list[str]) -> list[str]:
    """Swept keys that define a parameter point (not seeds or repetitions)."""
    return [k for k in swept if k not in SEED_KEYS]


def flat_params(it: Item, swept: list[str]) -> dict:
    """The stimulus' flat parameter dict: type, every parameter, seeds, swept values, source."""
    rec = it.record
    d = {"type": rec["type"], **rec["params"]}
    d.update(seed=rec["seed"], repetition=rec["repetition"], noise_seed=rec["noise_seed"])
    for k in swept:
        if not k.startswith("stimulus") and k not in d:
            d[k] = key_value(it, k)
    d["source"] = it.source
    return d
