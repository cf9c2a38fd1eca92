"""The numerical core: stimuli, the afferent populations, the simulator, outcomes and responses.
Plain values in, plain values out: no Hydra, no files.

    from sensoryforge.core import Gaussian, PipelineConfig, Simulator

    sim = Simulator(PipelineConfig(duration=500.0))      # the default patch of fingertip skin
    (r,) = sim.simulate([Gaussian(amplitude=40.0)])      # one Response per stimulus
    r.rate("sa").mean(), r.psth("ra", bin_ms=10.0), r.isi("sa")
"""

from sensoryforge.core.outcomes import compute as compute_outcomes
from sensoryforge.core.params import ConfigError
from sensoryforge.core.response import Response, decode, encode
from sensoryforge.core.schema import (
    COLORS,
    POPULATIONS,
    SEED_KEYS,
    FilterParams,
    NeuronsConfig,
    OutcomeConfig,
    PipelineConfig,
    PopulationConfig,
)
from sensoryforge.core.simulator import Simulator, noise_seed
from sensoryforge.core.stimuli import REGISTRY, Stimulus, register
from sensoryforge.core.stimuli.flat import Step, Trapezoid
from sensoryforge.core.stimuli.gabor import Gabor
from sensoryforge.core.stimuli.gaussian import Gaussian
from sensoryforge.core.stimuli.indentation import Indentation, Vibrotactile
from sensoryforge.core.stimuli.moving_gaussian import MovingGaussian
from sensoryforge.core.stimuli.probe import Probe
from sensoryforge.core.stimuli.vibration import Vibration

__all__ = [
    "COLORS", "POPULATIONS", "REGISTRY", "SEED_KEYS", "ConfigError", "FilterParams", "Gabor", "Gaussian",
    "Indentation", "MovingGaussian", "NeuronsConfig", "OutcomeConfig", "PipelineConfig", "PopulationConfig", "Probe", "Response",
    "Simulator", "Step", "Stimulus", "Trapezoid", "Vibration", "Vibrotactile", "compute_outcomes", "decode", "encode", "noise_seed",
    "register",
]
