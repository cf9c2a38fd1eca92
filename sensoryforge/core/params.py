"""Declarative parameters: every config field carries its unit, its allowed values and a doc line.

`param()` is used by all schemas (pipeline, neurons, stimuli, outcomes). `check_fields()` walks a
config node against its dataclass and raises one `ConfigError` line naming the key and what is
allowed, so every range check lives next to the field it guards.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """Bad user input. The message is one line: the key, the value, and what is allowed."""


# Every number a user sets must be finite and at most this large in magnitude: no quantity of the
# model (mm, ms, kPa, rheobase units) needs more, and float32 arithmetic stays finite below it.
MAX_MAGNITUDE = 1e9


def param(default: Any, unit: str = "", check: str | None = None, doc: str = "") -> Any:
    """A dataclass field with metadata.

    `check` is one of: ">0", ">=0", ">=1", "0..1" (closed range), "in:a,b,c" (choices).
    Lists and dicts are given as defaults and copied per instance.
    """
    meta = {"unit": unit, "check": check, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _split(check: str) -> tuple[str, str]:
    op = check[:2] if check[1] == "=" else check[:1]
    return op, check[len(op):]


def _describe(check: str, unit: str) -> str:
    u = f" {unit}" if unit else ""
    if check.startswith("in:"):
        return "one of " + ", ".join(check[3:].split(","))
    if ".." in check:
        lo, hi = check.split("..")
        return f"between {lo} and {hi}{u}"
    op, bound = _split(check)
    return f"{op} {bound}{u}"


def _passes(value: Any, check: str) -> bool:
    if value is None:
        return True  # None means "not set / derived"; the schema's Optional type guards it
    if check.startswith("in:"):
        return str(value) in check[3:].split(",")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return False
    if ".." in check:
        lo, hi = (float(x) for x in check.split(".."))
        return lo <= value <= hi
    op, bound = _split(check)
    b = float(bound)
    return {">": value > b, ">=": value >= b, "<": value < b, "<=": value <= b}[op]


def allowed(cls: type, name: str) -> str:
    """Human text for what a field accepts, e.g. 'a number > 0 mm' or 'one of cpu, cuda'."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    if meta.get("check"):
        return _describe(meta["check"], meta.get("unit", ""))
    return "any value of its type"


def finite(value: Any) -> bool:
    """A number within what the model can compute with: finite, |x| <= MAX_MAGNITUDE (floats; an
    integer's size is judged by the checks that need it, e.g. the memory a count implies)."""
    return not isinstance(value, float) or (math.isfinite(value) and abs(value) <= MAX_MAGNITUDE)


def check_value(cls: type, name: str, value: Any, path: str) -> None:
    """One field's value against its rule (finite numbers, then its `check`)."""
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}[name]
    check = meta.get("check")
    if not finite(value):
        rule = f" {allowed(cls, name)}" if check and not check.startswith("in:") else ""
        raise ConfigError(f"{path}={value}: must be a finite number{rule} (|x| <= {MAX_MAGNITUDE:g})")
    if check and not _passes(value, check):
        raise ConfigError(f"{path}={value}: must be {allowed(cls, name)}")


def check_fields(obj: Any, path: str) -> None:
    """Check every field of a dataclass instance (or a DictConfig typed by one), recursively."""
    from omegaconf import DictConfig, OmegaConf

    cls = OmegaConf.get_type(obj) if isinstance(obj, DictConfig) else type(obj)
    if not dataclasses.is_dataclass(cls):
        return
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        key = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(value) or (
            isinstance(value, DictConfig) and dataclasses.is_dataclass(OmegaConf.get_type(value))
        ):
            check_fields(value, key)
        else:
            check_value(cls, f.name, value, key)


def unknown_key(path: str, key: str, choices: Iterable[str]) -> ConfigError:
    choices = sorted(choices)
    near = difflib.get_close_matches(key, choices, n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else ""
    where = f"{path}.{key}" if path else key
    return ConfigError(f"{where}: unknown key{hint}; allowed keys: {', '.join(choices)}")


def field_docs(cls: type) -> list[tuple[str, Any, str, str]]:
    """(name, default, unit, doc) per field: for docs, dry runs and axis labels."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append((f.name, default, f.metadata.get("unit", ""), f.metadata.get("doc", "")))
    return out
