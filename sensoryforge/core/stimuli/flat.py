"""A flat circular indenter: `trapezoid` (ramp, hold, ramp) and `step` (instant on and off)."""

from dataclasses import dataclass

from sensoryforge.core.params import param
from sensoryforge.core.stimuli.base import RampAndHold, Stimulus, disk, register, trapezoid


@dataclass
class _Flat(Stimulus):
    amplitude: float = param(30.0, "kPa", ">=0", "pressure under the indenter")
    radius: float = param(2.0, "mm", ">0", "indenter radius")
    center_x: float = param(0.0, "mm", None, "centre, x")
    center_y: float = param(0.0, "mm", None, "centre, y")

    def profile(self, x, y):
        spacing = float(x[0, 1] - x[0, 0]) if x.shape[1] > 1 else self.radius
        return self.amplitude * disk(x, y, self.center_x, self.center_y, self.radius, spacing)


@register("trapezoid")
@dataclass
class Trapezoid(_Flat, RampAndHold):
    pass


@register("step")
@dataclass
class Step(_Flat):
    t_pre: float = param(100.0, "ms", ">=0", "rest before the step")
    t_plateau: float = param(800.0, "ms", ">=0", "duration of the step")

    def waveform(self, t):
        return trapezoid(t, self.t_pre, 0.0, self.t_plateau)
