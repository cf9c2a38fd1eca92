"""A sinusoid on a small probe: offset + amplitude * sin(2 pi f t), clipped at zero pressure.

The probe is pressed in with the ramp-and-hold envelope; by default the static offset equals the
amplitude, so the trough just touches zero and pressure is never negative.
"""

import math
from dataclasses import dataclass

from sensoryforge.core.params import param
from sensoryforge.core.stimuli.base import RampAndHold, check_nyquist, gaussian_blob, register


@register("vibration")
@dataclass
class Vibration(RampAndHold):
    amplitude: float = param(10.0, "kPa", ">=0", "sinusoid amplitude (zero to peak)")
    frequency: float = param(40.0, "Hz", ">0", "vibration frequency")
    offset: float | None = param(None, "kPa", ">=0", "static pressure; default = amplitude")
    sigma: float = param(0.5, "mm", ">0", "probe size (standard deviation of its footprint)")
    center_x: float = param(0.0, "mm", None, "probe position, x")
    center_y: float = param(0.0, "mm", None, "probe position, y")

    def profile(self, x, y):
        return gaussian_blob(x, y, self.center_x, self.center_y, self.sigma)

    def waveform(self, t):
        offset = self.amplitude if self.offset is None else self.offset
        phase = 2 * math.pi * self.frequency * (t - self.t_pre) / 1000.0
        wave = (offset + self.amplitude * phase.sin()).clamp_min(0)
        return super().waveform(t) * wave

    def check(self, dt, duration):
        check_nyquist("frequency", self.frequency, dt)
