"""Skin mechanics: from a probe's indentation depth (mm) to the pressure on the receptors (kPa).

The skin is a linear elastic half-space under a rigid, flat-ended cylindrical probe (Sneddon 1965,
Int J Eng Sci 3:47; Johnson 1985, Contact Mechanics, ch. 3). For a depth delta, a probe radius
a and the effective modulus E* = E / (1 - nu^2):

    force      F    = 2 E* a delta                          (kPa * mm^2 = mN)
    pressure   p(r) = F / (2 pi a sqrt(a^2 - r^2))  for r < a, 0 outside
    mean       F / (pi a^2) = 2 E* delta / (pi a);   centre  F / (2 pi a^2)

The stage is linear: pressure is proportional to depth, so a displacement stimulus drives the
afferents exactly as a pressure stimulus of the same shape would (spikes scale as for kPa).

Defaults: E = 200 kPa, nu = 0.5 (soft tissue is nearly incompressible), so E* = 267 kPa. E is
the one scale between the papers' micrometres and the model's kilopascals; fingertip moduli
reported span tens to hundreds of kPa (with rate and depth), and within that range 200 kPa puts
the default afferents' indentation thresholds within a factor 2 of the published medians
(Johansson & Vallbo 1979, J Physiol 297:405; docs/PHYSIOLOGY.md). The real fingerpad is stiffer the deeper it is pressed and viscoelastic
(Pawluk & Howe 1999, J Biomech Eng 121:178); this stage keeps only the linear, elastic part. A
half-space as the skin's first stage follows Sripati, Bensmaia & Johnson 2006 (J Neurophysiol
95:3852). With the defaults a 1 mm radius probe at 1 mm depth gives F = 533 mN and a mean
pressure of 170 kPa.
"""

from __future__ import annotations

import math

import torch

MODULUS = 200.0  # kPa, Young's modulus
POISSON = 0.5


def effective_modulus(modulus: float = MODULUS, poisson: float = POISSON) -> float:
    """E* = E / (1 - nu^2), kPa."""
    return modulus / (1.0 - poisson**2)


def punch_force(
    radius: float, depth: float, modulus: float = MODULUS, poisson: float = POISSON
) -> float:
    """Total force (mN) to press a flat probe of `radius` (mm) `depth` mm into the half-space."""
    return 2.0 * effective_modulus(modulus, poisson) * radius * depth


def _spacing(x: torch.Tensor, y: torch.Tensor) -> float | None:
    if x.shape[1] > 1:
        return abs(float(x[0, 1] - x[0, 0]))
    if x.shape[0] > 1:
        return abs(float(y[1, 0] - y[0, 0]))
    return None


def punch_pressure(
    x: torch.Tensor,
    y: torch.Tensor,
    cx: float,
    cy: float,
    radius: float,
    depth: float,
    modulus: float = MODULUS,
    poisson: float = POISSON,
) -> torch.Tensor:
    """Contact pressure (kPa) [H, W] of a flat probe centred at (cx, cy) on the regular grid x, y
    [H, W] (mm, as from `Grid.coords`: rows along y, columns along x).

    A receptor stands for its cell (h x h, h: the grid spacing). Inside r < a - h, the pressure
    is sampled as is; the edge singularity is integrable, but a sample on it would be unbounded,
    so the receptors of the outer ring (a - h <= r < a) share the rest of the force, weighted by
    p at r clipped to a - h/2. Then sum(p) * h^2 = F exactly on any grid and the centre keeps its
    analytic value. The sum runs over the grid's lattice extended past its border, so a probe
    partly off the patch puts only its on-patch share there. A probe that covers no receptor
    gives its whole force to the nearest one.
    """
    force = punch_force(radius, depth, modulus, poisson)
    h = _spacing(x, y)
    if h is None:  # one receptor, no cell size: it reads the mean contact pressure
        inside = torch.hypot(x - cx, y - cy) < radius
        return torch.zeros_like(x).masked_fill(inside, force / (math.pi * radius**2))
    x0, y0 = float(x[0, 0]), float(y[0, 0])
    # lattice nodes (grid column i, row j; possibly off the grid) around the contact disk
    i = torch.arange(math.ceil((cx - radius - x0) / h), math.floor((cx + radius - x0) / h) + 1)
    j = torch.arange(math.ceil((cy - radius - y0) / h), math.floor((cy + radius - y0) / h) + 1)
    jj, ii = torch.meshgrid(j, i, indexing="ij")
    r = torch.hypot(x0 + ii.to(x.dtype) * h - cx, y0 + jj.to(x.dtype) * h - cy)
    inside = r < radius
    if bool(inside.any()):
        # q: pressure per unit force, so that sum(q) * h^2 = 1
        rc = max(radius - h / 2, 0.0)
        q = 1.0 / (2 * math.pi * radius * (radius**2 - r.clamp(max=rc) ** 2).sqrt())
        interior = r < radius - h
        ring = inside & ~interior
        rest = max(1.0 / h**2 - float(q[interior].sum()), 0.0)  # what the edge ring carries
        q = torch.where(ring, q * (rest / float(q[ring].sum())), q.masked_fill(~interior, 0.0))
        q = q / (h**2 * float(q.sum()))  # exact total; a no-op unless rest was clipped
        ii, jj, q = ii[inside], jj[inside], q[inside]
    else:  # probe smaller than a cell, between receptors
        ii = torch.tensor([math.floor((cx - x0) / h + 0.5)])
        jj = torch.tensor([math.floor((cy - y0) / h + 0.5)])
        q = torch.full((1,), 1.0 / h**2, dtype=x.dtype)
    out = torch.zeros(x.shape, dtype=x.dtype)  # built on the CPU, where the indices are
    on = (ii >= 0) & (ii < x.shape[1]) & (jj >= 0) & (jj < x.shape[0])
    out[jj[on], ii[on]] = force * q[on].to(x.dtype)
    return out.to(x.device)
