"""Stimuli given as displacement, in the units of physiology papers: a probe pressed in to a depth
(mm) and held, and a sinusoidal vibration (um) on a pressed-in probe.

Displacement becomes pressure through the linear half-space of `sensoryforge.core.skin` (a rigid
flat-ended cylinder on elastic skin), so the pressure is the depth times a fixed spatial profile
and these stimuli stay separable (one space x time factor, both non-negative).
"""

import math
from dataclasses import dataclass

from sensoryforge.core.params import param
from sensoryforge.core.stimuli.base import RampAndHold, check_nyquist, register

# core.skin's MODULUS and POISSON, written out: skin.py loads torch, which the schema (and so every
# command's start) must not need; tests/test_startup.py checks that they agree.
MODULUS = 200.0  # kPa
POISSON = 0.5


@dataclass
class _Punch(RampAndHold):
    """The probe and the skin under it, shared by both displacement stimuli."""

    radius: float = param(0.5, "mm", ">0", "probe radius (flat-ended cylinder)")
    center_x: float = param(0.0, "mm", None, "probe position, x")
    center_y: float = param(0.0, "mm", None, "probe position, y")
    modulus: float = param(
        MODULUS, "kPa", ">0", "Young's modulus of the skin (linear elastic half-space)"
    )
    poisson: float = param(
        POISSON, "", "0..0.5", "Poisson's ratio of the skin (0.5 = incompressible)"
    )

    def pressure(self, x, y, depth: float):
        from sensoryforge.core.skin import punch_pressure  # torch: loaded when simulating

        return punch_pressure(
            x, y, self.center_x, self.center_y, self.radius, depth, self.modulus, self.poisson
        )


@register("indentation")
@dataclass
class Indentation(_Punch):
    """Ramp-and-hold indentation to `depth` mm; the envelope scales the depth (the stage is linear)."""

    depth: float = param(0.5, "mm", ">=0", "indentation depth at the hold")

    def profile(self, x, y):
        return self.pressure(x, y, self.depth)


@register("vibrotactile")
@dataclass
class Vibrotactile(_Punch):
    """preload + amplitude * sin(2 pi f (t - t_pre)), in depth, clipped at 0 (the probe leaves
    the skin rather than pulling it); the ramp-and-hold envelope ramps the whole displacement."""

    amplitude: float = param(
        50.0, "um", ">=0", "vibration amplitude in displacement (zero to peak)"
    )
    frequency: float = param(40.0, "Hz", ">0", "vibration frequency")
    preload: float = param(0.5, "mm", ">=0", "static indentation the sinusoid rides on")

    def profile(self, x, y):
        return self.pressure(x, y, 1.0)  # kPa per mm of depth: the waveform is the depth in mm

    def waveform(self, t):
        phase = 2 * math.pi * self.frequency * (t - self.t_pre) / 1000.0
        depth = (self.preload + self.amplitude / 1000.0 * phase.sin()).clamp_min(0)
        return super().waveform(t) * depth

    def check(self, dt, duration):
        check_nyquist("frequency", self.frequency, dt)
