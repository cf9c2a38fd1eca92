"""A small probe pressed at one point and held: the stimulus for receptive-field mapping."""

from dataclasses import dataclass

from sensoryforge.core.params import param
from sensoryforge.core.stimuli.base import RampAndHold, gaussian_blob, register


@register("probe")
@dataclass
class Probe(RampAndHold):
    amplitude: float = param(20.0, "kPa", ">=0", "peak pressure under the tip")
    sigma: float = param(0.2, "mm", ">0", "tip size (standard deviation of its footprint)")
    center_x: float = param(0.0, "mm", None, "tip position, x")
    center_y: float = param(0.0, "mm", None, "tip position, y")
    t_ramp: float = param(20.0, "ms", ">=0", "duration of each ramp")
    t_plateau: float = param(300.0, "ms", ">=0", "duration of the hold")

    def profile(self, x, y):
        return self.amplitude * gaussian_blob(x, y, self.center_x, self.center_y, self.sigma)
