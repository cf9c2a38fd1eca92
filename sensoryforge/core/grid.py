"""The receptor grid and the afferents on it: positions on a jittered lattice and sparse, seeded
receptive fields (which receptors each afferent pools, with what weight)."""

from __future__ import annotations

import concurrent.futures
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
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

    The draws are those of `_innervation_torch` (one uniform per candidate receptor, in order),
    bit for bit, and leave `gen` in the same state; a compiled loop makes them only where they
    are used, instead of for every candidate at once.
    """
    n, g = pos.shape[0], grid.size
    if n == 0:
        return torch.zeros(0, g * g, dtype=torch.float64).to_sparse_csr()
    state = _read_state(gen) if pos.dtype == torch.float64 and pos.device.type == "cpu" else None
    if state is None or not _compiled_matches_torch():
        return _innervation_torch(pos, grid, sigma, p_centre, gen)
    mt, word = state
    reach = min(math.ceil(3 * sigma / grid.spacing), g)
    off = torch.arange(-reach, reach + 1)
    disk = off[:, None] ** 2 + off[None, :] ** 2 <= (reach + 1) ** 2
    widths = disk.sum(1).numpy()  # each row of the disk: 2 m + 1 offsets centred on 0
    starts = np.concatenate([[0], np.cumsum(widths)])  # first candidate of each row
    half = (g - 1) / 2
    ci = torch.round(pos[:, 1] / grid.spacing + half).long().clamp(0, g - 1).numpy()
    cj = torch.round(pos[:, 0] / grid.spacing + half).long().clamp(0, g - 1).numpy()
    # receptor coordinates exactly as the torch path makes them (index - half in the default
    # dtype, then times the spacing), so the distances are the same numbers
    xs = ((torch.arange(g) - half) * grid.spacing).to(torch.float64).numpy()
    px, py = pos[:, 0].numpy().copy(), pos[:, 1].numpy().copy()
    c2, lim = float(2 * sigma**2), float((3 * sigma) ** 2)
    # records: about p 2 pi sigma^2 / spacing^2 per afferent
    expect = min(p_centre * 2 * math.pi * sigma**2 / grid.spacing**2, starts[-1])
    field = (widths, starts, g, lim, float(p_centre), c2, expect)

    def part(lo: int, hi: int):  # afferents [lo, hi): their rows and where the stream ends
        arrays = (ci[lo:hi], cj[lo:hi], px[lo:hi], py[lo:hi], xs)
        return _fields_part(mt, word, 2 * int(starts[-1]) * lo, arrays, field)

    # parts of the population on torch's threads: each makes the stream up to its first
    # afferent, then its own afferents, so the fields do not depend on the split
    count = max(1, min(torch.get_num_threads(), _MAX_PARTS, n // _MIN_PART))
    cuts = [n * i // count for i in range(count + 1)]
    if count == 1:
        parts = [part(0, n)]
    else:
        with concurrent.futures.ThreadPoolExecutor(count - 1) as pool:
            later = [pool.submit(part, cuts[i], cuts[i + 1]) for i in range(1, count)]
            parts = [part(0, cuts[1])] + [f.result() for f in later]
    _write_state(gen, *parts[-1][3])
    offsets = np.cumsum([0] + [q[0][-1] for q in parts[:-1]])  # each part's first entry
    crow = np.concatenate([[0]] + [q[0][1:] + o for q, o in zip(parts, offsets)])
    with warnings.catch_warnings():  # CSR is "beta" in torch; its matmul is what we need here
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(np.concatenate([q[1] for q in parts])),
            torch.from_numpy(np.concatenate([q[2] for q in parts])), (n, g * g),
            dtype=torch.float64, check_invariants=False,
        )


def _fields_part(mt, word, skip, arrays, field):
    """CSR rows (crow, col, val) of some afferents, whose candidates' words start `skip` words
    on in the stream, and the generator's state after them."""
    widths, starts, g, lim, p, c2, expect = field
    ci = arrays[0]
    n, per = ci.shape[0], int(starts[-1])
    buf = np.empty(2 * _N + 2 * per, np.uint32)  # the current block, then what is made
    buf[:_N] = mt
    stream = _advance(buf, _N, word, 0, skip)  # (words made, next word, words dropped)
    # room for the expected records and one afferent's worst case
    cap = int(1.2 * n * expect) + 2 * per + 1024
    col, u, d2 = np.empty(cap, np.int64), np.empty(cap), np.empty(cap)
    first = np.zeros(n + 1, np.int64)  # each afferent's first record
    a = 0
    while a < n:  # returns early only to have its record arrays grown
        a, *stream = _candidates(buf, *stream, a, *arrays, widths, starts, g, lim, p, c2, col,
                                 u, d2, first)
        if a < n:
            col, u, d2 = (np.concatenate([r, np.empty_like(r)]) for r in (col, u, d2))
    k = first[n]
    # connection probabilities of the candidates left, with torch's own exp (-d2 / c2 as the
    # torch path computes it, in place)
    prob = np.negative(d2[:k])
    prob /= c2
    torch.exp_(torch.from_numpy(prob))
    return (*_assemble(first, col, u, prob, p, *arrays, widths, g), _block(buf, *stream))


# -- the compiled path: torch's CPU generator (MT19937, aten/src/ATen/core/MT19937RNGEngine.h),
# read from and written back to its state, and the candidates' loop ------------------------------

_N, _M = 624, 397
_MAX_PARTS, _MIN_PART = 8, 256  # threads for one population, and afferents at least in each
_ULP21, _ULP53 = 2.0**-21, 2.0**-53  # module constants: numba folds them (a power it would not)
# numpy scalars, so that numba keeps the recurrence and the tempering in 32-bit lanes
_UPPER, _LOWER, _MATRIX = np.uint32(0x80000000), np.uint32(0x7FFFFFFF), np.uint32(0x9908B0DF)
_B, _C, _HIGH21 = np.uint32(0x9D2C5680), np.uint32(0xEFC60000), np.uint32(0x1FFFFF)
_ONE, _S7, _S11, _S15, _S18 = (np.uint32(v) for v in (1, 7, 11, 15, 18))
# torch's CPU generator state: seed (u64), left (i32), seeded (i32), next (u64), state (u64 x 624)
_LEFT, _NEXT, _STATE = 8, 16, 24


def _read_state(gen: torch.Generator) -> tuple[np.ndarray, int] | None:
    """The generator's MT19937 words and the index of the next word to use (624: a twist is
    due), or None where its state is not laid out as expected."""
    if gen.device.type != "cpu":
        return None
    raw = gen.get_state().numpy()
    if raw.size < _STATE + 8 * _N:
        return None
    left = int(raw[_LEFT : _LEFT + 4].view(np.int32)[0])
    nxt = int(raw[_NEXT : _NEXT + 8].view(np.uint64)[0])
    if left == 1:  # fresh from a seed, or at the end of a block: the next call twists
        word = _N
    elif 1 < left <= _N and nxt + left == _N + 1:
        word = nxt
    else:
        return None
    return raw[_STATE : _STATE + 8 * _N].view(np.uint64).astype(np.uint32), word


def _write_state(gen: torch.Generator, mt: np.ndarray, word: int) -> None:
    raw = gen.get_state().numpy().copy()
    raw[_LEFT : _LEFT + 4] = np.array([_N + 1 - word], dtype=np.int32).view(np.uint8)
    raw[_NEXT : _NEXT + 8] = np.array([word], dtype=np.uint64).view(np.uint8)
    raw[_STATE : _STATE + 8 * _N] = mt.astype(np.uint64).view(np.uint8)
    gen.set_state(torch.from_numpy(raw))


def _extend(buf, start, end):
    """buf[start:end] by MT19937's recurrence, x[j] = x[j - 227] ^ twist(x[j - 624], x[j - 623]):
    the words that torch's block twists make, as one stream."""
    while start < end:
        # 227 words at a time, each made from words before them, through views indexed from 0
        # (numba then drops its negative-index checks, and the loop vectorises)
        m = min(_N - _M, end - start)
        out, old = buf[start : start + m], buf[start - _N : start - _N + m]
        nxt, mid = buf[start - _N + 1 :], buf[start - (_N - _M) :]
        for i in range(m):
            y = np.uint32((old[i] & _UPPER) | (nxt[i] & _LOWER))
            odd = np.uint32(np.uint32(-np.int32(y & _ONE)) & _MATRIX)
            out[i] = np.uint32(mid[i] ^ np.uint32(y >> _ONE) ^ odd)
        start += m


def _advance(buf, filled, word, dropped, count):
    """The stream count words on (made, not used); buf keeps the last 624 and room to make more."""
    while True:
        # keep 624 words of history (the recurrence's, and the last block's), drop the rest
        cut = max(word - _N, 0)
        for i in range(filled - cut):
            buf[i] = buf[i + cut]
        filled, word, dropped = filled - cut, word - cut, dropped + cut
        step = min(count, buf.shape[0] - _N - word)
        if word + step > filled:
            _extend(buf, filled, word + step)
            filled = word + step
        word, count = word + step, count - step
        if count == 0:
            return filled, word, dropped


def _temper(y):
    """MT19937's output of the word y (uint32)."""
    y = np.uint32(y ^ (y >> _S11))
    y = np.uint32(y ^ ((y << _S7) & _B))
    y = np.uint32(y ^ ((y << _S15) & _C))
    return np.uint32(y ^ (y >> _S18))


def _block(buf, filled, word, dropped):
    """torch's state where the stream stands: the block of the last word used, and the index of
    the next word in it (624: a twist is due)."""
    used = word + dropped  # words used since the start of the first block
    first = (used - 1) // _N * _N - dropped
    if first + _N > filled:
        _extend(buf, filled, first + _N)
    return buf[first : first + _N].copy(), used - (first + dropped)


def _draw(buf, word, count):
    """count uniforms as torch.rand(dtype=float64) makes them: 53 bits of two words (high, low);
    buf holds the current block, and room for the stream."""
    _extend(buf, _N, word + 2 * count)
    out = np.empty(count)
    for i in range(count):
        hi, lo = _temper(buf[word + 2 * i]), _temper(buf[word + 2 * i + 1])
        out[i] = _uniform(hi, lo)
    return out


def _uniform(hi, lo):
    """torch's double from two words, ((hi << 32 | lo) & (2^53 - 1)) 2^-53, as a sum of two
    exact parts (so no 64-bit integer is converted)."""
    return np.float64(np.int32(hi & _HIGH21)) * _ULP21 + np.float64(lo) * _ULP53


def _candidates(buf, filled, word, dropped, a, ci, cj, px, py, xs, widths, starts, g, lim, p,
                c2, col, u, d2, first):
    """Runs through the afferents' candidates from afferent a on, in the torch path's order, one
    uniform each, and records (receptor, u, d^2) of those on the grid, within 3 sigma and with u
    below a bound of their connection probability. Returns at the end, or where the records
    might not hold one afferent more."""
    n, rows = ci.shape[0], widths.shape[0]
    reach, per = (rows - 1) // 2, starts[rows]
    tempered = np.empty(2 * widths.max(), np.uint32)
    row_u, passed = np.empty(widths.max()), np.empty(widths.max(), np.bool_)
    dx2, ex = np.empty(g), np.empty(g)
    k = first[a]
    while a < n and k + per <= col.shape[0]:
        if word + 2 * per > filled:
            filled, word, dropped = _advance(buf, filled, word, dropped, 0)
            _extend(buf, filled, word + 2 * per)
            filled = word + 2 * per
        # the bound factorises, exp(-(dx^2 + dy^2) / c2) = exp(-dx^2 / c2) exp(-dy^2 / c2): one
        # exp per column and row; the margin covers its rounding against torch's exp
        for j in range(max(cj[a] - reach, 0), min(cj[a] + reach + 1, g)):
            dx = xs[j] - px[a]
            dx2[j] = dx * dx
            ex[j] = np.exp(-dx2[j] / c2)
        for r in range(rows):
            ii = ci[a] + r - reach
            if ii < 0 or ii >= g:
                continue
            length = widths[r]
            j0 = cj[a] - (length - 1) // 2
            lo, hi = max(0, -j0), min(length, g - j0)
            dy = xs[ii] - py[a]
            dy2 = dy * dy
            bound = p * np.exp(-dy2 / c2) * (1 + 1e-9)
            words = buf[word + 2 * (starts[r] + lo) :]
            for i in range(2 * (hi - lo)):  # vectorises
                tempered[i] = _temper(words[i])
            # views from the row's first on-grid candidate: indices from 0, no sign checks
            xx, ee = dx2[j0 + lo :], ex[j0 + lo :]
            for q in range(hi - lo):  # vectorises
                row_u[q] = _uniform(tempered[2 * q], tempered[2 * q + 1])
                passed[q] = (xx[q] + dy2 <= lim) & (row_u[q] < bound * ee[q])
            for q in range(hi - lo):
                if passed[q]:
                    col[k], u[k], d2[k] = ii * g + j0 + lo + q, row_u[q], xx[q] + dy2
                    k += 1
        word += 2 * per
        a += 1
        first[a] = k
    return a, filled, word, dropped


def _assemble(first, col, u, prob, p, ci, cj, px, py, xs, widths, g):
    """CSR rows of the connected candidates (u < p prob), their weights normalised by their sum
    in order (as index_add_ sums them); an afferent with none takes its nearest receptor (the
    first of the nearest, as argmin does)."""
    n, rows = first.shape[0] - 1, widths.shape[0]
    reach = (rows - 1) // 2
    crow = np.zeros(n + 1, np.int64)
    out_col = np.empty(first[n] + n, np.int64)
    val = np.empty(first[n] + n)
    m = 0
    for a in range(n):
        start = m
        for i in range(first[a], first[a + 1]):
            pr = p * prob[i]
            if u[i] < pr:
                # as the torch path computes it: u / prob is uniform in [0, 1) given a connection
                out_col[m], val[m] = col[i], 0.5 + 0.5 * u[i] / pr
                m += 1
        if m == start:  # no receptor drawn: the nearest one, weight 1
            best = np.inf
            for r in range(rows):
                ii = ci[a] + r - reach
                if ii < 0 or ii >= g:
                    continue
                j0 = cj[a] - (widths[r] - 1) // 2
                dy = xs[ii] - py[a]
                for q in range(max(0, -j0), min(widths[r], g - j0)):
                    dx = xs[j0 + q] - px[a]
                    dd = dx * dx + dy * dy
                    if dd < best:
                        best, out_col[m] = dd, ii * g + j0 + q
            val[m] = 1.0
            m += 1
        total = 0.0
        for i in range(start, m):
            total += val[i]
        for i in range(start, m):
            val[i] /= total
        crow[a + 1] = m
    return crow, out_col[:m].copy(), val[:m].copy()


@functools.cache
def _compiled_matches_torch() -> bool:
    """Compiles the loops above (numba, imported here as the spiking kernel imports it: on first
    use; its cache keeps the machine code) and checks, once, that the generator gives
    torch.rand's numbers and state on a stream that starts at an odd word and crosses blocks.
    False (numba missing, or torch's generator not as expected): the torch path runs."""
    try:
        import numba
    except ImportError:
        return False
    space = globals()  # the compiled functions find each other by their module names
    for name in ("_temper", "_uniform"):
        space[name] = numba.njit(space[name], cache=True, inline="always")
    for name in ("_extend", "_advance", "_block", "_draw", "_candidates", "_assemble"):
        space[name] = numba.njit(space[name], cache=True, nogil=True)
    gen = torch.Generator().manual_seed(20240613)
    torch.randperm(7, generator=gen)  # 6 words: an offset that is not a whole block
    torch.rand(1, generator=gen)  # 1 word: odd
    state = _read_state(gen)
    if state is None:
        return False
    mt, word = state
    buf = np.empty(2 * _N + 2000, np.uint32)
    buf[:_N] = mt
    ours = _draw(buf, word, 1000)
    expected = torch.rand(1000, generator=gen, dtype=torch.float64).numpy()
    probe = torch.Generator()
    probe.set_state(gen.get_state())
    _write_state(probe, *_block(buf, word + 2000, word + 2000, 0))
    return bool(np.array_equal(ours, expected)) and torch.equal(probe.get_state(), gen.get_state())


def _innervation_torch(
    pos: torch.Tensor, grid: Grid, sigma: float, p_centre: float, gen: torch.Generator
) -> torch.Tensor:
    """innervation() in torch alone: the definition of the fields' draws, and the path taken
    where the compiled one cannot reproduce them."""
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
