"""The spiking loop's input noise and float32 maths in torch, for any device: the same numbers as
the fused CPU kernel (sensoryforge/core/kernel.py says how they are made), operation for
operation, so that a GPU run and the torch reference path see the noise the CPU kernel sees.

Philox works on 32-bit words held in int64 tensors: a product of two words wraps modulo 2^64
like the unsigned one, its high word is (p >> 32) & 0xFFFFFFFF whatever the sign bit says.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_MASK = 0xFFFFFFFF
_M0, _M1, _W0, _W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85


def f32(x: float) -> float:
    """x rounded to float32, the constant the kernel uses."""
    return float(np.float32(x))


LN2 = f32(math.log(2.0))
SQRT_HALF = f32(math.sqrt(0.5))
QUARTER_PI = f32(math.pi / 4)
HALF_PI = f32(2.0 * QUARTER_PI)
ROUNDER = f32(1.5 * 2**23)
ROUNDER_BITS = 0x4B400000


def key_words(seed: int) -> tuple[int, int]:
    """A trial's noise seed (< 2^63) as Philox's two key words."""
    return int(seed) & _MASK, (int(seed) >> 32) & _MASK


def philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on int64 tensors (broadcast) of 32-bit words; four words out."""
    for _ in range(10):
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = ((p1 >> 32) & _MASK) ^ c1 ^ k0, p1 & _MASK, ((p0 >> 32) & _MASK) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def sqrt32(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded float32 square root (torch's own float32 sqrt on the CPU can be one unit
    in the last place off; through float64 it is exact, as the kernel's)."""
    if x.device.type == "mps":  # no float64 there: its own float32 root (documented difference)
        return torch.sqrt(x)
    return torch.sqrt(x.double()).float()


def log32(x: torch.Tensor) -> torch.Tensor:
    i = x.view(torch.int32)
    e = (i >> 23).to(torch.float32) - 127.0
    m = ((i & 0x7FFFFF) | 0x3F800000).view(torch.float32)
    big = m > f32(1.4142135)
    m = torch.where(big, m * 0.5, m)
    e = torch.where(big, e + 1.0, e)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = f32(1 / 9) * s2 + f32(1 / 7)
    p = p * s2 + f32(1 / 5)
    p = p * s2 + f32(1 / 3)
    p = p * s2 + 1.0
    return (2.0 * s) * p + e * LN2


def sincos_turn(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q = (w >> 30).to(torch.int32)
    f = (w & 0x3FFFFFFF).to(torch.int32).to(torch.float32) * 2.0**-30
    a = f * HALF_PI - QUARTER_PI
    a2 = a * a
    s = f32(1 / 362880) * a2 - f32(1 / 5040)
    s = s * a2 + f32(1 / 120)
    s = s * a2 - f32(1 / 6)
    s = (s * a2 + 1.0) * a
    c = f32(1 / 40320) * a2 - f32(1 / 720)
    c = c * a2 + f32(1 / 24)
    c = c * a2 - 0.5
    c = c * a2 + 1.0
    cq = (c - s) * SQRT_HALF
    sq = (c + s) * SQRT_HALF
    odd = (q & 1) != 0
    x = torch.where(odd, -sq, cq)
    y = torch.where(odd, cq, sq)
    half = (q & 2) != 0
    return torch.where(half, -x, x), torch.where(half, -y, y)


def exp32(x: torch.Tensor) -> torch.Tensor:
    """The kernel's exp in float32; torch's own in float64 (a float64 run has no kernel to match)."""
    x = x.clamp(-87.0, 87.0)
    if x.dtype != torch.float32:
        return torch.exp(x)
    shifted = x * f32(1.0 / math.log(2.0)) + ROUNDER
    k = shifted - ROUNDER
    r = (x - k * f32(0.693145751953125)) - k * f32(1.428606765330187e-06)
    p = f32(1 / 5040) * r + f32(1 / 720)
    for c in (1 / 120, 1 / 24, 1 / 6, 0.5, 1.0, 1.0):
        p = p * r + f32(c)
    ki = shifted.view(torch.int32) - ROUNDER_BITS
    return p * ((ki + 127) << 23).view(torch.float32)


def saturate(d: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """s tanh(d / s) where s > 0, d where s == 0 (s broadcast over d)."""
    on = s > 0
    y = torch.where(on, d / torch.where(on, s, 1.0), 0.0)
    if d.dtype != torch.float32:
        return torch.where(on, s * torch.tanh(y), d)
    e = exp32(-2.0 * y.abs())
    t = (1.0 - e) / (1.0 + e)
    t = torch.where(y >= 0, t, -t)
    return torch.where(on, s * t, d)


def normals(seeds: list[int], steps: int, afferent: torch.Tensor, population: torch.Tensor) -> torch.Tensor:
    """Standard normals [steps + 1, B, N] (float32, on afferent's device): number j of stimulus
    b for afferent n, as the CPU kernel draws them."""
    dev = afferent.device
    groups = steps // 4 + 1
    words = torch.tensor([key_words(s) for s in seeds], dtype=torch.int64, device=dev)  # [B, 2]
    k0, k1 = words[:, 0].view(1, -1, 1), words[:, 1].view(1, -1, 1)
    g = torch.arange(groups, dtype=torch.int64, device=dev).view(-1, 1, 1)
    a = afferent.to(torch.int64).view(1, 1, -1)
    p = population.to(torch.int64).view(1, 1, -1)
    x0, x1, x2, x3 = philox(g, a, p, torch.zeros_like(a), k0, k1)  # [G, B, N] each
    u0 = (x0 >> 8).to(torch.int32).to(torch.float32) * 2.0**-24 + 2.0**-25
    u2 = (x2 >> 8).to(torch.int32).to(torch.float32) * 2.0**-24 + 2.0**-25
    r0 = sqrt32(-2.0 * log32(u0))
    r2 = sqrt32(-2.0 * log32(u2))
    c1, s1 = sincos_turn(x1)
    c3, s3 = sincos_turn(x3)
    z = torch.stack([r0 * c1, r0 * s1, r2 * c3, r2 * s3], 1)  # [G, 4, B, N]
    return z.reshape(groups * 4, *z.shape[2:])[: steps + 1]
