"""A Gabor texture: a raised-cosine grating under a Gaussian window, pressed and held.

The grating is (1 + cos)/2, not cos, so pressure stays non-negative; `amplitude` is its peak.
Give either `frequency` (cycles/mm) or `wavelength` (mm).
"""

import math
from dataclasses import dataclass

from sensoryforge.core.params import ConfigError, param
from sensoryforge.core.stimuli.base import RampAndHold, deg, gaussian_blob, register


@register("gabor")
@dataclass
class Gabor(RampAndHold):
    amplitude: float = param(30.0, "kPa", ">=0", "peak pressure")
    frequency: float | None = param(1.0, "cycles/mm", ">0", "spatial frequency")
    wavelength: float | None = param(None, "mm", ">0", "spatial period; sets frequency=1/wavelength")
    orientation: float = param(0.0, "deg", None, "grating orientation (0 = bars along y)")
    phase: float = param(0.0, "deg", None, "grating phase at the centre")
    sigma: float = param(2.0, "mm", ">0", "standard deviation of the Gaussian window")
    center_x: float = param(0.0, "mm", None, "centre, x")
    center_y: float = param(0.0, "mm", None, "centre, y")

    def cycles_per_mm(self) -> float:
        if self.wavelength is None:
            if self.frequency is None:
                raise ConfigError("stimulus.frequency: set frequency (cycles/mm) or wavelength (mm)")
            return self.frequency
        return 1.0 / self.wavelength

    def profile(self, x, y):
        import torch  # here, so the schema loads without it

        f = self.cycles_per_mm()
        theta = deg(self.orientation)
        u = (x - self.center_x) * math.cos(theta) + (y - self.center_y) * math.sin(theta)
        grating = 0.5 * (1 + torch.cos(2 * math.pi * f * u + deg(self.phase)))
        window = gaussian_blob(x, y, self.center_x, self.center_y, self.sigma)
        return self.amplitude * window * grating

    def check(self, dt, duration):
        self.cycles_per_mm()
