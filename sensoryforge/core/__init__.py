"""The numerical core: stimuli, the afferent populations, the simulator, outcomes and responses.
Plain values in, plain values out: no Hydra, no files.

    from sensoryforge.core import Gaussian, PipelineConfig, Simulator

    sim = Simulator(PipelineConfig(duration=500.0))      # the default patch of fingertip skin
    (r,) = sim.simulate([Gaussian(amplitude=40.0)])      # one Response per stimulus
    r.rate("sa").mean(), r.psth("ra", bin_ms=10.0), r.isi("sa")

The names below are loaded on first use (PEP 562): importing a torch-free part of the core (the
schema, params, sizes) must not load torch, which costs over a second of every command's start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> (module, attribute)
_EXPORTS = {
    "compute_outcomes": ("outcomes", "compute"),
    "ConfigError": ("params", "ConfigError"),
    "Response": ("response", "Response"),
    "decode": ("response", "decode"),
    "encode": ("response", "encode"),
    **{n: ("schema", n) for n in ("COLORS", "POPULATIONS", "SEED_KEYS", "FilterParams", "NeuronsConfig",
                                  "OutcomeConfig", "PipelineConfig", "PopulationConfig")},
    "Simulator": ("simulator", "Simulator"),
    "noise_seed": ("sizes", "noise_seed"),
    **{n: ("stimuli", n) for n in ("REGISTRY", "Stimulus", "register")},
    "Step": ("stimuli.flat", "Step"),
    "Trapezoid": ("stimuli.flat", "Trapezoid"),
    "Gabor": ("stimuli.gabor", "Gabor"),
    "Gaussian": ("stimuli.gaussian", "Gaussian"),
    "Indentation": ("stimuli.indentation", "Indentation"),
    "Vibrotactile": ("stimuli.indentation", "Vibrotactile"),
    "MovingGaussian": ("stimuli.moving_gaussian", "MovingGaussian"),
    "Probe": ("stimuli.probe", "Probe"),
    "Vibration": ("stimuli.vibration", "Vibration"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from sensoryforge.core.outcomes import compute as compute_outcomes  # noqa: F401
    from sensoryforge.core.params import ConfigError  # noqa: F401
    from sensoryforge.core.response import Response, decode, encode  # noqa: F401
    from sensoryforge.core.schema import (  # noqa: F401
        COLORS,
        POPULATIONS,
        SEED_KEYS,
        FilterParams,
        NeuronsConfig,
        OutcomeConfig,
        PipelineConfig,
        PopulationConfig,
    )
    from sensoryforge.core.simulator import Simulator  # noqa: F401
    from sensoryforge.core.sizes import noise_seed  # noqa: F401
    from sensoryforge.core.stimuli import REGISTRY, Stimulus, register  # noqa: F401
    from sensoryforge.core.stimuli.flat import Step, Trapezoid  # noqa: F401
    from sensoryforge.core.stimuli.gabor import Gabor  # noqa: F401
    from sensoryforge.core.stimuli.gaussian import Gaussian  # noqa: F401
    from sensoryforge.core.stimuli.indentation import Indentation, Vibrotactile  # noqa: F401
    from sensoryforge.core.stimuli.moving_gaussian import MovingGaussian  # noqa: F401
    from sensoryforge.core.stimuli.probe import Probe  # noqa: F401
    from sensoryforge.core.stimuli.vibration import Vibration  # noqa: F401
