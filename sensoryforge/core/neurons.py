"""Spiking neuron models, vectorised over [batch, neurons], stepped with a fixed dt (ms).

Every model takes its input as a *drive* in units of its nominal rheobase: drive 1.0 is the
smallest constant input that makes a neuron with the nominal parameters fire. The temporal
filters upstream therefore set each afferent's threshold in kPa, and swapping the spiking model
keeps thresholds where they were. Per-neuron parameter variability is applied around the
nominal values (the drive scale stays nominal, so variability really moves thresholds).

All models share the loop in `SpikingModel.run` (torch, any device) and in the fused CPU kernel
(core/kernel.py): Ornstein-Uhlenbeck input noise, an absolute refractory period (membrane held
at reset), spike detection and reset.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from sensoryforge.core.noise import exp32, f32
from sensoryforge.core.schema import AdExParams, IzhikevichParams, LIFParams

_F32_0_04 = f32(0.04)  # the kernel's float32 constant: torch may multiply by the double one


class SpikingModel:
    """Base: per-neuron parameters as [N] tensors; subclasses give the dynamics.

    `rows()` lays the parameters out as the fused CPU kernel reads them (kernel.PARAMS), and
    `step()` is the same update in torch, operation for operation, so both paths give the same
    numbers in float32."""

    name = ""
    params_cls: type = object
    varied: tuple[str, ...] = ()  # parameters that get per-neuron variability
    kernel_id = -1  # its model number in core/kernel.py (IZHIKEVICH, LIF, ADEX)

    def __init__(self, p: dict[str, torch.Tensor], dt: float):
        self.p, self.dt = p, dt

    @staticmethod
    def rheobase(p) -> float:
        raise NotImplementedError

    def rows(self) -> torch.Tensor:
        """[k, N] float64: the parameters in kernel.PARAMS order."""
        raise NotImplementedError

    def initial(self) -> torch.Tensor:
        """[2, N] float64: the state (v, second variable) at the start of a trial."""
        raise NotImplementedError

    @staticmethod
    def step(v, w, current, P, dt):
        """One step without spikes: (v, w) after it, and the rows (reset, jump, peak)."""
        raise NotImplementedError

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
        normal (or None), turned into unit Ornstein-Uhlenbeck noise of step decay `noise_decay`
        started from its stationary law, scaled at each step by sd = `noise_sd` + `noise_scaling`
        x max(input, 0) (current unit): noise that grows with the stimulus.

        Returns spikes [T, B, N] (bool) and, if asked, the membrane potential [T, B, N].
        During the refractory period the membrane is held at its reset value.
        """
        T, B, N = current.shape
        opts = dict(device=current.device, dtype=current.dtype)
        P = self.rows().to(**opts)
        v, w = (x.expand(B, -1).clone() for x in self.initial().to(**opts))
        spikes = torch.empty(T, B, N, dtype=torch.bool, device=current.device)
        volts = torch.empty_like(current) if record_voltage else None
        decay = noise_decay.to(**opts)
        # from the float64 decay on the CPU, as the kernel's row (and MPS has no float64)
        kick = torch.sqrt(1 - noise_decay.detach().cpu().double() ** 2).to(**opts)
        sd0 = noise_sd.to(**opts)
        sdk = torch.zeros_like(sd0) if noise_scaling is None else noise_scaling.to(**opts)
        refr = refractory_steps.to(device=current.device, dtype=torch.int32)
        held = torch.zeros(B, N, dtype=torch.int32, device=current.device)
        ou = noise[0] if noise is not None else None
        for t in range(T):
            cur = current[t]
            if ou is not None:
                ou = decay * ou + kick * noise[t + 1]
                cur = cur + ou * (sd0 + sdk * cur.clamp_min(0))
            vn, wn, reset, jump, peak = self.step(v, w, cur, P, self.dt)
            vn = torch.where(held > 0, reset, vn)
            fired = torch.ge(vn, peak, out=spikes[t])
            v = torch.where(fired, reset, vn)
            w = torch.where(fired, wn + jump, wn)
            held = torch.where(fired, refr, held - 1)
            if volts is not None:
                volts[t] = v
        return spikes, volts


class Izhikevich(SpikingModel):
    """Izhikevich (2003): v' = 0.04 v^2 + 5 v + 140 - u + I, u' = a (b v - u)."""

    name, params_cls, varied = "izhikevich", IzhikevichParams, ("a", "d")
    kernel_id = 0

    @staticmethod
    def rheobase(p) -> float:
        """Smallest constant input at which rest loses stability. On the branch of fixed points
        (u = b v, I = -(0.04 v^2 + (5 - b) v + 140)) that happens at a saddle-node where
        0.08 v + 5 = b, or earlier, if a < b, at a Hopf bifurcation where 0.08 v + 5 = a."""

        def current_at(v: float) -> float:
            return -(0.04 * v * v + (5 - p.b) * v + 140)

        saddle = current_at((p.b - 5) / 0.08)
        return min(saddle, current_at((p.a - 5) / 0.08)) if p.a < p.b else saddle

    def rows(self):
        p = self.p
        return torch.stack([p["a"], p["b"], p["c"], p["d"], p["v_peak"]])

    def initial(self):
        # start at the resting fixed point when it exists, else at c
        b = self.p["b"]
        disc = ((5 - b) ** 2 - 0.16 * 140).clamp_min(0)
        v0 = torch.where(disc > 0, (-(5 - b) - disc.sqrt()) / 0.08, self.p["c"])
        return torch.stack([v0, b * v0])

    @staticmethod
    def step(v, w, current, P, dt):
        a, b, reset, jump, peak = P
        dv = ((_F32_0_04 * v + 5.0) * v + (current + 140.0)) - w
        wn = w + (dt * a) * (b * v - w)
        return v + dt * dv, wn, reset, jump, peak


class LIF(SpikingModel):
    """Leaky integrate-and-fire, integrated exactly over each step for piecewise-constant input."""

    name, params_cls, varied = "lif", LIFParams, ("tau_m", "resistance")
    kernel_id = 1

    @staticmethod
    def rheobase(p) -> float:
        return (p.v_threshold - p.v_rest) / p.resistance

    def rows(self):
        p = self.p
        leak = torch.exp(-self.dt / p["tau_m"])
        return torch.stack([p["v_rest"], p["resistance"], leak, p["v_reset"], p["v_threshold"]])

    def initial(self):
        v = self.p["v_rest"]
        return torch.stack([v, torch.zeros_like(v)])

    @staticmethod
    def step(v, w, current, P, dt):
        rest, res, leak, reset, peak = P
        v_inf = rest + res * current
        return v_inf + (v - v_inf) * leak, w, reset, torch.zeros_like(reset), peak


class AdEx(SpikingModel):
    """Adaptive exponential integrate-and-fire (Brette & Gerstner 2005); current in pA."""

    name, params_cls, varied = "adex", AdExParams, ("C", "g_L", "tau_w", "a", "b")
    kernel_id = 2

    @staticmethod
    def rheobase(p) -> float:
        # saddle-node including subthreshold adaptation a (steady state w = a (V - E_L))
        g = p.g_L + p.a
        return g * (p.V_T - p.E_L - p.delta_T + p.delta_T * math.log(g / p.g_L))

    def rows(self):
        p = self.p
        return torch.stack([p[k] for k in ("C", "g_L", "E_L", "V_T", "delta_T", "tau_w", "a", "b", "V_reset", "V_peak")])

    def initial(self):
        v = self.p["E_L"]
        return torch.stack([v, torch.zeros_like(v)])

    @staticmethod
    def step(v, w, current, P, dt):
        C, gl, el, vt, dT, tw, a, jump, reset, peak = P
        # v < V_peak here (it was reset), so the exponential cannot overflow (and exp32 clamps)
        leak_i = -gl * (v - el)
        spike_i = (gl * dT) * exp32((v - vt) / dT)
        vn = v + (dt / C) * (((leak_i + spike_i) - w) + current)
        wn = w + (dt / tw) * (a * (v - el) - w)
        return vn, wn, reset, jump, peak


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
