"""What every stimulus type shares: the registry, the ramp-and-hold envelope, spatial helpers.

A stimulus is a dataclass (its fields are the Hydra schema of `stimulus=<type>`) that describes
skin pressure p(t, x, y) in kPa as a sum of K space x time factors:

    p(t, x, y) = sum_k temporal[t, k] * spatial[k, y, x]

Most stimuli are separable (K = 1); a moving one uses K key frames joined by linear
interpolation in time. Both factors are non-negative, so pressure is never negative.
Time is in ms, space in mm, pressure in kPa.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, ClassVar

from sensoryforge.core.params import ConfigError, param

if TYPE_CHECKING:  # torch loads where the maths runs: the schema of a stimulus needs none of it
    import torch

REGISTRY: dict[str, type[Stimulus]] = {}


def register(name: str):
    """Class decorator: makes a stimulus type available as `stimulus=<name>` and in sweeps (the
    config layer offers every type of the registry to Hydra)."""

    def deco(cls: type[Stimulus]) -> type[Stimulus]:
        cls.type_name = name
        REGISTRY[name] = cls
        return cls

    return deco


@dataclasses.dataclass
class Stimulus:
    type_name: ClassVar[str] = ""

    def profile(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Spatial pressure profile in kPa on the grid coordinates x, y [H, W] (mm)."""
        raise NotImplementedError

    def waveform(self, t: torch.Tensor) -> torch.Tensor:
        """Dimensionless time course in [0, inf) at times t [T] (ms)."""
        raise NotImplementedError

    def factors(
        self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(spatial [K, H, W] in kPa, temporal [T, K] dimensionless)."""
        return self.profile(x, y)[None], self.waveform(t)[:, None]

    def check(self, dt: float, duration: float) -> None:
        """Checks that need the time base (ms). Field ranges are checked from `param` metadata."""

    def params(self) -> dict:
        """Flat dict of every parameter, for the stimulus index and HDF5 attributes."""
        return dataclasses.asdict(self)


def trapezoid(t: torch.Tensor, t_pre: float, t_ramp: float, t_plateau: float) -> torch.Tensor:
    """0 until t_pre, linear rise over t_ramp, hold for t_plateau, linear fall over t_ramp, 0."""
    import torch

    off = t_pre + t_ramp + t_plateau
    if t_ramp > 0:
        rise = ((t - t_pre) / t_ramp).clamp(0, 1)
        fall = ((t - off) / t_ramp).clamp(0, 1)
    else:
        rise = (t >= t_pre).to(t.dtype)
        fall = (t >= off).to(t.dtype)
    return torch.minimum(rise, 1 - fall)


@dataclasses.dataclass
class RampAndHold(Stimulus):
    """Envelope shared by static stimuli: rest, ramp up, hold, ramp down, rest."""

    t_pre: float = param(100.0, "ms", ">=0", "rest before the ramp starts")
    t_ramp: float = param(50.0, "ms", ">=0", "duration of each ramp (0 = a step)")
    t_plateau: float = param(700.0, "ms", ">=0", "duration of the hold")

    def waveform(self, t: torch.Tensor) -> torch.Tensor:
        return trapezoid(t, self.t_pre, self.t_ramp, self.t_plateau)


def gaussian_blob(x, y, cx: float, cy: float, sigma: float) -> torch.Tensor:
    import torch

    return torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def disk(x, y, cx: float, cy: float, radius: float, edge: float) -> torch.Tensor:
    """Flat disk with a linear edge `edge` mm wide, so its area does not jump with the grid."""
    import torch

    r = torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    return ((radius - r) / edge + 0.5).clamp(0, 1)


def check_nyquist(name: str, frequency: float, dt: float) -> None:
    nyquist = 1000.0 / (2 * dt)
    if frequency > nyquist / 4:
        raise ConfigError(
            f"stimulus.{name}={frequency}: must be <= {nyquist / 4:g} Hz at pipeline.dt={dt} ms "
            "(a quarter of the Nyquist frequency)"
        )


def deg(x: float) -> float:
    return math.radians(x)
