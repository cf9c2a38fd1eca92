"""The receptor grid and the afferents on it: positions on a jittered lattice and sparse, seeded
receptive fields (which receptors each afferent pools, with what weight)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch


@dataclass
class Grid:
    size: int
    spacing: float

    @property
    def extent(self) -> float:
        """Side of the square patch (mm); receptors sit at cell centres."""
        return self.size * self.spacing

    def coords(self, dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """x, y [H, W] in mm, centred on 0; rows run along y, columns along x."""
        c = (torch.arange(self.size, dtype=dtype, device=device) - (self.size - 1) / 2) * self.spacing
        y, x = torch.meshgrid(c, c, indexing="ij")
        return x, y


def afferent_positions(n: int, extent: float, jitter: float, gen: torch.Generator) -> torch.Tensor:
    """n positions [n, 2] (mm) on a jittered square lattice filling the patch; when n is not a
    square, a seeded choice of lattice cells is left empty."""
    if n == 0:
        return torch.zeros(0, 2, dtype=torch.float64)
    side = math.ceil(math.sqrt(n))
    step = extent / side
    cells = torch.randperm(side * side, generator=gen)[:n].sort().values
    rows, cols = cells // side, cells % side
    centre = (torch.stack([cols, rows], 1).to(torch.float64) + 0.5) * step - extent / 2
    offset = (torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * jitter * step
    return centre + offset


def innervation(
    pos: torch.Tensor, grid: Grid, sigma: float, p_centre: float, gen: torch.Generator
) -> torch.Tensor:
    """Sparse receptive fields [n, H*W] (CSR, float64, rows sum to 1).

    A receptor at distance d <= 3 sigma from the afferent is connected with probability
    p_centre * exp(-d^2 / 2 sigma^2), with a weight uniform in [0.5, 1]; hot spots and irregular
    borders follow, as in real fields. An afferent left with no receptor takes its nearest one.
    """
    n, g = pos.shape[0], grid.size
    if n == 0:
        return torch.zeros(0, g * g, dtype=torch.float64).to_sparse_csr()
    reach = min(math.ceil(3 * sigma / grid.spacing), g)
    off = torch.arange(-reach, reach + 1)
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    disk = oy**2 + ox**2 <= (reach + 1) ** 2  # candidates: the 3-sigma disk around the nearest receptor
    oy, ox = oy[disk], ox[disk]
    half = (g - 1) / 2
    rows, cols, vals = [], [], []
    for start in range(0, n, 512):  # bounded memory for large populations
        p = pos[start : start + 512]
        ci = torch.round(p[:, 1] / grid.spacing + half).long().clamp(0, g - 1)
        cj = torch.round(p[:, 0] / grid.spacing + half).long().clamp(0, g - 1)
        ii, jj = ci[:, None] + oy[None], cj[:, None] + ox[None]
        on_grid = (ii >= 0) & (ii < g) & (jj >= 0) & (jj < g)
        d2 = ((jj - half) * grid.spacing - p[:, :1]) ** 2 + ((ii - half) * grid.spacing - p[:, 1:]) ** 2
        prob = p_centre * torch.exp(-d2 / (2 * sigma**2))
        u = torch.rand(prob.shape, generator=gen, dtype=torch.float64)
        keep = on_grid & (d2 <= (3 * sigma) ** 2) & (u < prob)  # fields end at 3 sigma
        # given a connection, u / prob is uniform in [0, 1): it sets the weight too
        w = 0.5 + 0.5 * u / prob
        # afferents with no receptor take the nearest one
        empty = ~keep.any(1)
        if empty.any():
            nearest = torch.where(on_grid, d2, torch.inf).argmin(1)
            keep[empty, nearest[empty]] = True
            w[empty, nearest[empty]] = 1.0
        a, k = keep.nonzero(as_tuple=True)
        rows.append(a + start)
        cols.append(ii[a, k] * g + jj[a, k])
        vals.append(w[a, k])
    rows_t, cols_t, vals_t = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    sums = torch.zeros(n, dtype=torch.float64).index_add_(0, rows_t, vals_t)
    vals_t = vals_t / sums[rows_t]
    coo = torch.sparse_coo_tensor(
        torch.stack([rows_t, cols_t]), vals_t, (n, g * g), check_invariants=True
    ).coalesce()
    with warnings.catch_warnings():  # CSR is "beta" in torch; its matmul is what we need here
        warnings.simplefilter("ignore", UserWarning)
        return coo.to_sparse_csr()
