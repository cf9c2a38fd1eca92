"""Spiking neuron models, vectorised over [batch, neurons], stepped with a fixed dt (ms).

Every model takes its input as a *drive* in units of its nominal rheobase: drive 1.0 is the
smallest constant input that makes a neuron with the nominal parameters fire. The temporal
filters upstream therefore set each afferent's threshold in kPa, and swapping the spiking model
keeps thresholds where they were. Per-neuron parameter variability is applied around the
nominal values (the drive scale stays nominal, so variability really moves thresholds).

All models share the loop in `SpikingModel.run`: Ornstein-Uhlenbeck input noise, an absolute
refractory period (membrane held at reset), spike detection and reset.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from sensoryforge.core.schema import AdExParams, IzhikevichParams, LIFParams


class SpikingModel:
    """Base: per-neuron parameters as [N] tensors; subclasses give the dynamics."""

    name = ""
    params_cls: type = object
    varied: tuple[str, ...] = ()  # parameters that get per-neuron variability

    def __init__(self, p: dict[str, torch.Tensor], dt: float):
        self.p, self.dt = p, dt

    @staticmethod
    def rheobase(p) -> float:
        raise NotImplementedError

    def init_state(self, batch: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def advance(self, s: list[torch.Tensor], current: torch.Tensor) -> list[torch.Tensor]:
        """One Euler step without spikes; s[0] is the membrane potential."""
        raise NotImplementedError

    def reset(self, s: list[torch.Tensor], spike: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    v_reset_key = ""
    v_peak_key = ""

    def prepare(self, current: torch.Tensor) -> torch.Tensor:
        """Fold constant terms into the input once, outside the time loop."""
        return current

    def run(
        self,
        current: torch.Tensor,
        noise: torch.Tensor | None,
        noise_sd: torch.Tensor,
        noise_decay: torch.Tensor,
        refractory_steps: torch.Tensor,
        noise_scaling: torch.Tensor | None = None,
        record_voltage: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """current: [T, B, N] input in the model's current unit; noise: [T+1, B, N] standard
        normal (or None), turned into Ornstein-Uhlenbeck input noise with step decay
        `noise_decay`, started from its stationary law, of sd `noise_sd` (current unit) plus
        `noise_scaling` times the input itself (if given: noise that grows with the stimulus).

        Returns spikes [T, B, N] (bool) and, if asked, the membrane potential [T, B, N].
        During the refractory period the membrane is held at its reset value.
        """
        T, B, N = current.shape
        s = self.init_state(B)
        raw, current = current, self.prepare(current)
        v_reset, v_peak = self.p[self.v_reset_key], self.p[self.v_peak_key]
        spikes = torch.empty(T, B, N, dtype=torch.bool, device=current.device)
        volts = torch.empty_like(current) if record_voltage else None
        n_ref = refractory_steps.to(current.dtype)
        ref = torch.zeros(B, N, dtype=current.dtype, device=current.device)  # steps still held
        hold = bool((refractory_steps > 1).any())
        scaled = noise_scaling is not None and bool((noise_scaling > 0).any())
        if noise is not None:
            # with scaling, a unit-sd process multiplied by each step's sd; else sd folded in once
            unit = torch.ones_like(noise_sd) if scaled else noise_sd
            kicks = noise[1:] * (unit * torch.sqrt(1 - noise_decay**2))
            ou = noise[0] * unit
        for t in range(T):
            if noise is not None:
                ou = torch.addcmul(kicks[t], ou, noise_decay)
                if scaled:
                    sd = torch.addcmul(noise_sd, noise_scaling, raw[t].clamp_min(0))
                    s = self.advance(s, torch.addcmul(current[t], ou, sd))
                else:
                    s = self.advance(s, current[t] + ou)
            else:
                s = self.advance(s, current[t])
            if hold:
                s[0] = torch.where(ref > 0, v_reset, s[0])
            spike = torch.ge(s[0], v_peak, out=spikes[t])
            s = self.reset(s, spike)
            if hold:
                ref = torch.where(spike, n_ref, ref - 1)
            if volts is not None:
                volts[t] = s[0]
        return spikes, volts


class Izhikevich(SpikingModel):
    """Izhikevich (2003): v' = 0.04 v^2 + 5 v + 140 - u + I, u' = a (b v - u)."""

    name, params_cls, varied = "izhikevich", IzhikevichParams, ("a", "d")
    v_reset_key, v_peak_key = "c", "v_peak"

    @staticmethod
    def rheobase(p) -> float:
        """Smallest constant input at which rest loses stability. On the branch of fixed points
        (u = b v, I = -(0.04 v^2 + (5 - b) v + 140)) that happens at a saddle-node where
        0.08 v + 5 = b, or earlier, if a < b, at a Hopf bifurcation where 0.08 v + 5 = a."""

        def current_at(v: float) -> float:
            return -(0.04 * v * v + (5 - p.b) * v + 140)

        saddle = current_at((p.b - 5) / 0.08)
        return min(saddle, current_at((p.a - 5) / 0.08)) if p.a < p.b else saddle

    def init_state(self, batch):
        v0 = self.p["c"].expand(batch, -1).clone()
        # start at the resting fixed point when it exists, else at c
        b = self.p["b"]
        disc = ((5 - b) ** 2 - 0.16 * 140).clamp_min(0)
        v_rest = (-(5 - b) - disc.sqrt()) / 0.08
        v0 = torch.where(disc > 0, v_rest, v0).expand(batch, -1).clone()
        return [v0, (b * v0).clone()]

    def prepare(self, current):
        self._dta = self.dt * self.p["a"]
        return current + 140.0

    def advance(self, s, current):
        # current already holds the constant 140 (prepare)
        v, u = s
        dv = (0.04 * v + 5).mul_(v).add_(current).sub_(u)
        u_new = torch.addcmul(u, self._dta, self.p["b"] * v - u)
        return [torch.add(v, dv, alpha=self.dt), u_new]

    def reset(self, s, spike):
        return [torch.where(spike, self.p["c"], s[0]), torch.where(spike, s[1] + self.p["d"], s[1])]


class LIF(SpikingModel):
    """Leaky integrate-and-fire, integrated exactly over each step for piecewise-constant input."""

    name, params_cls, varied = "lif", LIFParams, ("tau_m", "resistance")
    v_reset_key, v_peak_key = "v_reset", "v_threshold"

    @staticmethod
    def rheobase(p) -> float:
        return (p.v_threshold - p.v_rest) / p.resistance

    def init_state(self, batch):
        return [self.p["v_rest"].expand(batch, -1).clone()]

    def advance(self, s, current):
        p = self.p
        v_inf = p["v_rest"] + p["resistance"] * current
        return [v_inf + (s[0] - v_inf) * torch.exp(-self.dt / p["tau_m"])]

    def reset(self, s, spike):
        return [torch.where(spike, self.p["v_reset"], s[0])]


class AdEx(SpikingModel):
    """Adaptive exponential integrate-and-fire (Brette & Gerstner 2005); current in pA."""

    name, params_cls, varied = "adex", AdExParams, ("C", "g_L", "tau_w", "a", "b")
    v_reset_key, v_peak_key = "V_reset", "V_peak"

    @staticmethod
    def rheobase(p) -> float:
        # saddle-node including subthreshold adaptation a (steady state w = a (V - E_L))
        g = p.g_L + p.a
        return g * (p.V_T - p.E_L - p.delta_T + p.delta_T * math.log(g / p.g_L))

    def init_state(self, batch):
        v = self.p["E_L"].expand(batch, -1).clone()
        return [v, torch.zeros_like(v)]

    def advance(self, s, current):
        v, w = s
        p, dt = self.p, self.dt
        # v < V_peak here (it was reset), so the exponential cannot overflow
        spike_current = p["g_L"] * p["delta_T"] * torch.exp((v - p["V_T"]) / p["delta_T"])
        v_new = v + dt / p["C"] * (-p["g_L"] * (v - p["E_L"]) + spike_current - w + current)
        w_new = w + dt / p["tau_w"] * (p["a"] * (v - p["E_L"]) - w)
        return [v_new, w_new]

    def reset(self, s, spike):
        return [torch.where(spike, self.p["V_reset"], s[0]), torch.where(spike, s[1] + self.p["b"], s[1])]


MODELS: dict[str, type[SpikingModel]] = {m.name: m for m in (Izhikevich, LIF, AdEx)}


def per_neuron(
    model: type[SpikingModel], p, n: int, variability: float, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Parameter vectors [n] in float64: nominal values, the `varied` ones jittered by a factor
    1 + variability * N(0, 1), clipped to [0.5, 1.5] so signs and orders never flip."""
    out = {}
    for f in dataclasses.fields(model.params_cls):
        value = torch.full((n,), float(getattr(p, f.name)), dtype=torch.float64)
        if f.name in model.varied and variability > 0:
            factor = 1 + variability * torch.randn(n, generator=gen, dtype=torch.float64)
            value = value * factor.clamp(0.5, 1.5)
        out[f.name] = value
    return out
