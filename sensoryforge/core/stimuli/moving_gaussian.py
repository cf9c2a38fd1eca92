"""A Gaussian bump sliding across the skin at constant velocity.

Movement starts at t_pre (while the contact ramps in) and goes on to the end. The bump is drawn
at key frames no further apart than a quarter of min(sigma, grid spacing), and pressure in
between is linearly interpolated in time, so K stays small while the motion stays smooth.
"""

import math
from dataclasses import dataclass

from sensoryforge.core.params import param
from sensoryforge.core.stimuli.base import RampAndHold, deg, gaussian_blob, register


@register("moving_gaussian")
@dataclass
class MovingGaussian(RampAndHold):
    amplitude: float = param(30.0, "kPa", ">=0", "peak pressure")
    sigma: float = param(0.5, "mm", ">0", "standard deviation of the bump")
    velocity: float = param(10.0, "mm/s", ">=0", "speed")
    direction: float = param(0.0, "deg", None, "direction of motion (0 = +x, 90 = +y)")
    start_x: float = param(-3.0, "mm", None, "position at t_pre, x")
    start_y: float = param(0.0, "mm", None, "position at t_pre, y")

    def factors(self, x, y, t):
        import torch  # here, so the schema loads without it

        spacing = float(x[0, 1] - x[0, 0]) if x.shape[1] > 1 else self.sigma
        travel = self.velocity * max(float(t[-1]) - self.t_pre, 0.0) / 1000.0  # mm
        step = min(self.sigma, spacing) / 4
        k = max(int(math.ceil(travel / step)), 1)
        # key frame j sits at distance j * travel / k along the path
        s = torch.linspace(0.0, travel, k + 1, dtype=x.dtype)
        dx, dy = math.cos(deg(self.direction)), math.sin(deg(self.direction))
        frames = torch.stack(
            [
                gaussian_blob(x, y, self.start_x + float(d) * dx, self.start_y + float(d) * dy, self.sigma)
                for d in s
            ]
        )
        # distance travelled at each time, as a fractional key-frame index -> hat weights
        dist = self.velocity * (t - self.t_pre).clamp_min(0) / 1000.0
        pos = dist / travel * k if travel > 0 else torch.zeros_like(t)
        j = torch.arange(k + 1, dtype=t.dtype)
        hat = (1 - (pos[:, None] - j[None, :]).abs()).clamp_min(0)
        return self.amplitude * frames, hat * self.waveform(t)[:, None]
