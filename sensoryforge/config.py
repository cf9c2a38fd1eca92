"""Hydra's side of the schema: where the config groups are, the schema and every stimulus type
offered to Hydra, composition for library use, and the checks run before any simulation.

The schema itself (dataclasses with units and ranges) is `sensoryforge.core.schema`. Hydra rejects
unknown keys and wrong types while it composes; `check()` rejects values out of range with one
line naming the key and what is allowed (ranges live in `param` metadata).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sensoryforge.confdir import CONF_DIR  # noqa: F401  (kept importable from here)
from sensoryforge.core.outcome_names import parse_outcomes
from sensoryforge.core.params import ConfigError, check_fields, unknown_key
from sensoryforge.core.schema import NON_RESULT_KEYS, NON_RESULT_PIPELINE_KEYS, Config
from sensoryforge.core.stimuli import REGISTRY, Stimulus
from sensoryforge.core.text import written

_STORED: dict[str, Any] = {}  # what register_configs stored, and in which ConfigStore ("")


def register_configs() -> None:
    """The schema as `config_schema` and every registered stimulus type as `stimulus=<name>`.
    Called again by `load_config`, so a type registered at run time (a notebook) is offered too;
    what is stored already is not stored again (each costs a structured config's creation)."""
    cs = ConfigStore.instance()
    if _STORED.get("") is not cs:  # a new store (Hydra's singletons restored in a worker)
        _STORED.clear()
        _STORED[""] = cs
    for key, cls in {"config_schema": Config, **{f"stimulus/{n}": c for n, c in REGISTRY.items()}}.items():
        if _STORED.get(key) is not cls:
            group, _, name = key.rpartition("/")
            cs.store(group=group or None, name=name, node=cls)
            _STORED[key] = cls


def _share_the_config_store() -> None:
    """Hydra 1.3 deep-copies its config repository for every composition and every listing of a
    group's options, and with it the ConfigStore singleton that the repository's structured-config
    source keeps, which holds SensoryForge's schema: ~40 ms a copy, 91 copies for `--help`, one
    per job config of a sweep. Hydra's own fix (facebookresearch/hydra#2928, after 1.3) looks the
    singleton up instead of keeping it; here the copy keeps the singleton itself, for a Hydra that
    predates the fix (the store hands out copies of its configs, so sharing it changes nothing
    else). Patched where the copy is made: plugin discovery re-executes the sources' modules."""
    import copy

    import hydra
    from hydra._internal.config_repository import CachingConfigRepository

    if tuple(int(x) for x in hydra.__version__.split(".")[:2]) >= (1, 4):
        return
    if getattr(CachingConfigRepository.__init__, "_shares_store", False):
        return

    def __init__(self, delegate) -> None:  # noqa: N807 - Hydra's, as it is, but for the memo
        store = ConfigStore.instance()
        self.delegate = copy.deepcopy(delegate, {id(store): store})
        self.cache = {}

    __init__._shares_store = True
    CachingConfigRepository.__init__ = __init__


_share_the_config_store()
register_configs()


@contextlib.contextmanager
def hydra_context(job_name: str = "run") -> Iterator[None]:
    """Hydra's compose API on SensoryForge's config groups (`hydra.compose` inside)."""
    from hydra import initialize_config_dir

    register_configs()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name=job_name):
        yield


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The composed config (without the hydra node), as a job sees it, for library use and tests."""
    from hydra import compose

    with hydra_context():
        return compose("config", overrides=list(overrides))


_TYPES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}
_NOT_CONVERTED = re.compile(r"Value '(.*)' (?:of type '.*' could not be converted to (\w+)|is not a valid (bool))")


def compose_error(e: Exception) -> ConfigError:
    """One line from Hydra's or OmegaConf's multi-line composition errors."""
    cause = e
    while cause.__cause__ is not None:
        cause = cause.__cause__
    msg = str(cause).strip().splitlines()[0]
    key = getattr(cause, "full_key", None) if isinstance(cause, OmegaConfBaseException) else None
    m = _NOT_CONVERTED.search(msg)
    if key and m:
        kind = m.group(2) or "Boolean"
        return ConfigError(f"{key}={m.group(1)}: must be {_TYPES.get(kind, kind)}")
    if key:
        return ConfigError(f"{key}: {msg}")
    return ConfigError(str(e).strip().splitlines()[0])


def stimulus_type(node: Any) -> str:
    cls = OmegaConf.get_type(node) if isinstance(node, DictConfig) else type(node)
    for name, c in REGISTRY.items():
        if c is cls:
            return name
    raise ConfigError(f"stimulus: not a registered stimulus type; allowed: {', '.join(sorted(REGISTRY))}")


def to_stimulus(node: Any) -> Stimulus:
    """The stimulus dataclass instance from its config node (field checks included)."""
    obj = OmegaConf.to_object(node) if isinstance(node, DictConfig) else node
    check_fields(obj, "stimulus")
    return obj


def build_stimulus(base: DictConfig | Stimulus, values: dict[str, Any]) -> Stimulus:
    """The stimulus of a sweep point: its `stimulus.*` values on the job's stimulus, a config node
    (merged) or a built stimulus (each value typed by the schema: `stimulus_value`)."""
    own = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("stimulus.")}
    if isinstance(base, Stimulus):
        stim = dataclasses.replace(base, **{k: stimulus_value(type(base), k, v) for k, v in own.items()})
        check_fields(stim, "stimulus")
        return stim
    node = OmegaConf.merge(base, own) if own else base
    return to_stimulus(node)


@functools.cache
def _field_types(cls: type) -> dict[str, tuple[type | None, bool]]:
    """Field name -> (its type when float, int, str or bool, else None; whether it may be None)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        t, args = hints.get(f.name), typing.get_args(hints.get(f.name))
        optional = typing.get_origin(t) in (typing.Union, types.UnionType) and type(None) in args
        if optional:
            rest = [a for a in args if a is not type(None)]
            t = rest[0] if len(rest) == 1 else None
        out[f.name] = (t if t in (float, int, str, bool) else None, optional)
    return out


@functools.cache
def _schema_node(cls: type) -> DictConfig:
    return OmegaConf.structured(cls)


def stimulus_value(cls: type, name: str, value: Any) -> Any:
    """A per-stimulus value (parsed from an override) as the stimulus field `name` of `cls` holds it
    once composed, e.g. 10 -> 10.0 for a float field; ConfigError (one line) when it cannot be.
    The plain cases are typed here from the schema, the rest (a number given as a string, a
    wrong type) by OmegaConf as composition would: a sweep of a million stimuli types each
    distinct value once, and a job its stimuli, without a config merge each."""
    kinds = _field_types(cls)
    if name not in kinds:
        raise unknown_key("stimulus", name, kinds)
    kind, optional = kinds[name]
    if type(value) is kind or (value is None and optional):
        return value
    if kind is float and type(value) is int:
        return float(value)
    try:
        merged = OmegaConf.merge(_schema_node(cls), {name: value})
    except OmegaConfBaseException as e:
        raise ConfigError(f"stimulus.{name}={written(value)}: {str(e).strip().splitlines()[0]}") from None
    return OmegaConf.to_container(merged)[name]


def check(cfg: DictConfig) -> None:
    """Every value check that needs no simulation. Raises ConfigError (one line)."""
    stimulus_type(cfg.stimulus)
    check_fields(cfg, "")
    stim = to_stimulus(cfg.stimulus)
    stim.check(cfg.pipeline.dt, cfg.pipeline.duration)
    if cfg.pipeline.duration < cfg.pipeline.dt:
        raise ConfigError(
            f"pipeline.duration={cfg.pipeline.duration}: must be at least one step (pipeline.dt={cfg.pipeline.dt} ms)"
        )
    parse_outcomes(cfg.outcome)
    device = cfg.pipeline.device
    if device in ("cuda", "mps"):  # cpu and auto always resolve: only these need torch to check
        from sensoryforge.core.simulator import resolve_device

        resolve_device(device)


def result_config(cfg: DictConfig) -> dict:
    """The resolved config minus the keys that cannot change results (job records, fingerprints,
    datasets' `config`)."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_RESULT_KEYS:
        d.pop(k, None)
    for k in NON_RESULT_PIPELINE_KEYS:
        d["pipeline"].pop(k, None)
    d["stimulus"] = {"type": stimulus_type(cfg.stimulus), **d["stimulus"]}
    return d
