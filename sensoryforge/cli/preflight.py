"""Command-line checks before Hydra starts: unknown config options, unknown keys, wrong types,
values out of range or not finite, empty sweeps, a batch file's content, an output folder that
cannot be written, launcher settings and (for a single run) a job the machine cannot hold each
become one `ConfigError` line, before any folder is created.

In a sweep, each swept value of a key is checked by the sweeper (every point, before launching);
here a sweep contributes its first value so keys and types are checked once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra import compose
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from sensoryforge.config import check, compose_error, hydra_context
from sensoryforge.core.params import ConfigError, unknown_key

_PASS_THROUGH = ("help", "hydra_help", "cfg", "info", "shell_completion", "config_path", "config_dir",
                 "config_name", "experimental_rerun")


def values_of(o: Override) -> list[str]:
    if o.is_sweep_override():
        if not o.is_discrete_sweep():
            return []  # interval sweeps are for Optuna-style sweepers; nothing to enumerate
        return list(o.sweep_string_iterator())
    if o.is_delete() and o.value() is None:
        return []
    return [o.get_value_element_as_str()]


def first_value(o: Override) -> str | None:
    vals = values_of(o)
    return f"{o.get_key_element()}={vals[0]}" if vals else None


def check_key(cfg: DictConfig, key: str) -> None:
    node, path = cfg, ""
    for part in key.split("."):
        if not isinstance(node, DictConfig) or node._is_missing():
            return
        if part not in node:
            if node._get_flag("struct") is False or OmegaConf.get_type(node) is dict:
                return  # an open dict (e.g. sweeper params) accepts any key
            raise unknown_key(path, part, [str(k) for k in node.keys()])
        node, path = node[part], f"{path}.{part}" if path else part


def batch_file_overrides(overrides: list[Override], argv: list[str]) -> list[str]:
    """A batch YAML in the older format is read and checked whole here (one line for anything
    wrong in it); the output folder it names becomes hydra.sweep.dir unless one is given."""
    from sensoryforge.sweep.batchfile import load_batch_file, override_value

    files = [o for o in overrides if o.key_or_group == "batch_file" and not o.is_sweep_override()]
    if not files:
        return argv
    path = Path(str(files[0].value()))
    if not path.is_file():
        raise ConfigError(f"batch_file={path}: no such file")
    out = load_batch_file(path).output_dir
    if out and not any(o.key_or_group == "hydra.sweep.dir" for o in overrides):
        return [*argv, f"hydra.sweep.dir={override_value(out)}"]
    return argv


def check_sweeps(overrides: list[Override], multirun: bool) -> None:
    """A sweep needs -m, and a sweep of no values is an error (it would run nothing)."""
    for o in overrides:
        if not o.is_sweep_override():
            continue
        if not multirun:
            raise ConfigError(f"{o.input_line}: a sweep; add -m to run it (sensoryforge -m {o.input_line} ...)")
        if o.is_discrete_sweep() and not values_of(o):
            raise ConfigError(f"{o.input_line}: an empty sweep (no values), so nothing would run")


def check_hydra(hydra: DictConfig, multirun: bool) -> None:
    """The output folder, and in a sweep the launcher's and sweeper's settings."""
    from sensoryforge.sweep.estimate import check_output_folder
    from sensoryforge.sweep.launchers import check_launcher
    from sensoryforge.sweep.plan import check_chunking

    if not multirun:
        check_output_folder("hydra.run.dir", Path(str(hydra.run.dir)))
        return
    check_output_folder("hydra.sweep.dir", Path(str(hydra.sweep.dir)))
    check_launcher(hydra.launcher)
    if "chunk_size" in hydra.sweeper:
        check_chunking(hydra.sweeper)


def preflight(argv: list[str]) -> list[str] | None:
    """Checks the command line; returns it (maybe completed), or None if nothing is left to run."""
    args = get_args_parser().parse_args(argv)
    if any(getattr(args, k, None) for k in _PASS_THROUGH):
        return argv  # Hydra's: nothing of the sweep machinery is imported for it (start-up time)
    from sensoryforge.sweep.estimate import check_resources, single_dry_run
    from sensoryforge.sweep.plan import is_group, parse_overrides

    overrides = parse_overrides(args.overrides)
    if not args.multirun and any(o.key_or_group == "batch_file" for o in overrides):
        # a batch file is a sweep: run it as one rather than the default simulation beside it
        print("sensoryforge: batch_file= runs a sweep: running it as `sensoryforge -m ...`", file=sys.stderr)
        return preflight(["-m", *argv])
    check_sweeps(overrides, args.multirun)
    if args.multirun:
        argv = batch_file_overrides(overrides, argv)
        overrides = parse_overrides(get_args_parser().parse_args(argv).overrides)
    with hydra_context():
        loader = GlobalHydra.instance().config_loader()
        groups, values = [], []
        for o in overrides:
            if is_group(o.key_or_group, loader):
                group = o.key_or_group
                options = loader.get_group_options(group)
                for v in values_of(o):
                    if v not in options and v != "null":
                        raise ConfigError(
                            f"{group}={v}: unknown {group} option; allowed: {', '.join(sorted(options))}"
                        )
                if first_value(o):
                    groups.append(first_value(o))
            elif first_value(o):
                values.append((o, first_value(o)))
        try:
            try:
                cfg = compose("config", overrides=groups + [v for _, v in values], return_hydra_config=True)
            except (HydraException, OmegaConfBaseException):
                # what went wrong: an unknown key is named with its near match, before Hydra's
                # message (composed only then: a composition costs a tenth of a second)
                base = compose("config", overrides=groups)
                for o, _ in values:
                    if not o.is_hydra_override() and not o.is_add() and not o.is_force_add():
                        check_key(base, o.key_or_group)
                raise
        except (HydraException, OmegaConfBaseException) as e:
            raise compose_error(e) from None
        hydra = cfg.hydra
        with open_dict(cfg):
            cfg.pop("hydra")
        if cfg.objective != "primary":
            # the battery, imported only when it is asked for
            from sensoryforge.physiology import parse_checks

            parse_checks(list(cfg.validation_checks))
        check_hydra(hydra, args.multirun)
        if not args.multirun:
            check(cfg)
            check_resources(cfg, Path(str(hydra.run.dir)))
            if cfg.dry_run:
                single_dry_run(cfg)
                return None
    return argv
