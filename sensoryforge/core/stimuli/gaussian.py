"""A Gaussian pressure bump with a ramp-and-hold envelope: the default stimulus."""

from dataclasses import dataclass

from sensoryforge.core.params import param
from sensoryforge.core.stimuli.base import RampAndHold, gaussian_blob, register


@register("gaussian")
@dataclass
class Gaussian(RampAndHold):
    amplitude: float = param(30.0, "kPa", ">=0", "peak pressure")
    sigma: float = param(1.0, "mm", ">0", "standard deviation of the bump")
    center_x: float = param(0.0, "mm", None, "centre, x")
    center_y: float = param(0.0, "mm", None, "centre, y")

    def profile(self, x, y):
        return self.amplitude * gaussian_blob(x, y, self.center_x, self.center_y, self.sigma)
