"""Hydra's side of the schema: where the config groups are, the schema and every stimulus type
offered to Hydra, composition for library use, and the checks run before any simulation.

The schema itself (dataclasses with units and ranges) is `sensoryforge.core.schema`. Hydra rejects
unknown keys and wrong types while it composes; `check()` rejects values out of range with one
line naming the key and what is allowed (ranges live in `param` metadata).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from sensoryforge.core.outcomes import parse_outcomes
from sensoryforge.core.params import ConfigError, check_fields
from sensoryforge.core.schema import NON_RESULT_KEYS, NON_RESULT_PIPELINE_KEYS, Config
from sensoryforge.core.simulator import resolve_device
from sensoryforge.core.stimuli import REGISTRY, Stimulus


def _conf_dir() -> Path:
    """The config groups: the package data `sensoryforge.conf` of an installed copy (the
    repository's conf/, mapped there by pyproject.toml), or conf/ beside the package in a source
    tree that is on sys.path without being installed."""
    try:
        return Path(str(importlib.resources.files("sensoryforge.conf")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "conf"


CONF_DIR = _conf_dir()


def register_configs() -> None:
    """The schema as `config_schema` and every registered stimulus type as `stimulus=<name>`.
    Called again by `load_config`, so a type registered at run time (a notebook) is offered too."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for name, cls in REGISTRY.items():
        cs.store(group="stimulus", name=name, node=cls)


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


def build_stimulus(base: DictConfig, values: dict[str, Any]) -> Stimulus:
    """The stimulus of a sweep point: its `stimulus.*` values merged onto the job's stimulus node."""
    own = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("stimulus.")}
    node = OmegaConf.merge(base, own) if own else base
    return to_stimulus(node)


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
    resolve_device(cfg.pipeline.device)


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
