"""`sensoryforge --help` without Hydra: the help template of conf/config.yaml with its config
groups listed as Hydra lists them (`group: option, option`, sorted; hydra/ groups left out).

Hydra composes the whole config to print this page (0.3-0.6 s after its own import, 0.3 s); the
template uses nothing of the config but the list of groups, which are the files under conf/ and the
registered stimulus types. tests/test_startup.py holds this page to Hydra's, line for line.
"""

from __future__ import annotations

import string
from pathlib import Path

import yaml

from sensoryforge.confdir import CONF_DIR

CONFIG_SUFFIXES = (".yaml", ".yml")  # what Hydra's file config source takes as a config


def config_groups(conf: Path = CONF_DIR) -> dict[str, list[str]]:
    """Group -> its options: the config files under `conf` (groups within groups as a/b), and
    every registered stimulus type as an option of `stimulus` (Hydra's ConfigStore has them)."""
    from sensoryforge.core.stimuli import REGISTRY

    groups: dict[str, set[str]] = {}
    for path in conf.rglob("*"):
        if path.suffix in CONFIG_SUFFIXES and path.parent != conf and path.is_file():
            groups.setdefault(path.parent.relative_to(conf).as_posix(), set()).add(path.stem)
    groups.setdefault("stimulus", set()).update(REGISTRY)
    return {g: sorted(o) for g, o in sorted(groups.items()) if not (g == "hydra" or g.startswith("hydra/"))}


def app_help(conf: Path = CONF_DIR) -> str | None:
    """The page `sensoryforge --help` prints, or None when the template needs Hydra (a placeholder
    other than $APP_CONFIG_GROUPS, or an interpolation)."""
    try:
        template = yaml.safe_load((conf / "config.yaml").read_text())["hydra"]["help"]["template"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    page = string.Template(template)
    if not isinstance(template, str) or "${" in template or set(page.get_identifiers()) != {"APP_CONFIG_GROUPS"}:
        return None
    groups = "".join(f"{g}: {', '.join(options)}\n" for g, options in config_groups(conf).items())
    return page.substitute(APP_CONFIG_GROUPS=groups)
