"""Stimulus types. Every module in this package is imported, so a new type is one new file:
a dataclass decorated with `@register("name")` (see gaussian.py), usable as `stimulus=name`."""

import importlib
import pkgutil

from sensoryforge.core.stimuli.base import REGISTRY, Stimulus, register

for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["REGISTRY", "Stimulus", "register"]
