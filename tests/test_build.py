"""Building the patch: the compiled receptive fields are bit for bit those of the torch
definition (same draws, same generator state after), for any size, seed, offset and split."""

import hashlib

import pytest
import torch

from sensoryforge.core import grid as grid_mod
from sensoryforge.core.grid import Grid, afferent_positions, innervation
from sensoryforge.core.simulator import SEED_INDEX, noise_seed

# the torch definition of the fields' draws, grid.py's own fallback; the checksums in PINNED keep
# both it and the compiled path where the model's calibration was made
reference = grid_mod._innervation_torch


def parts(w):
    return (w.crow_indices(), w.col_indices(), w.values())


def digest(n, size, spacing, sigma, p, jitter, seed, build=innervation):
    """sha256 (16 hex) of positions, CSR fields and the generator's state after them."""
    gen = torch.Generator().manual_seed(seed)
    g = Grid(size, spacing)
    pos = afferent_positions(n, g.extent, jitter, gen)
    w = build(pos, g, sigma, p, gen)
    h = hashlib.sha256()
    for t in (pos, *parts(w), gen.get_state()):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def pinned(n, size, spacing, sigma, p, jitter, seed, build=innervation):
    """What may be pinned across machines: the positions, the fields' connections and the
    generator's state after them bit for bit (sha256, 16 hex), and the weights through one
    weighted sum. The weights pass through exp and a row sum, whose last bits follow the CPU's
    vector units (the digests above, taken on another machine, moved on a fresh install of the
    same torch 2.13 and numba 0.68 while every golden spike count held)."""
    gen = torch.Generator().manual_seed(seed)
    g = Grid(size, spacing)
    pos = afferent_positions(n, g.extent, jitter, gen)
    w = build(pos, g, sigma, p, gen)
    crow, col, val = parts(w)
    h = hashlib.sha256()
    for t in (pos, crow, col, gen.get_state()):
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16], float((val * (col % 977 + 1)).sum())


def pop_seed(name):
    return noise_seed(0, 1000 + SEED_INDEX[name])


# the default patch and the W3 benchmark's 13,152 afferents; taken again with `pinned` on
# 2026-12-03 (torch 2.13.0+cpu, numba 0.68.1) when the exact digests of the implementation before
# it was compiled moved on a fresh install (see `pinned`)
PINNED = [
    ((100, 80, 0.15, 1.4, 0.3, 0.5, pop_seed("sa")), ("c54ffa50158e14cc", 47648.83849147775)),
    ((196, 80, 0.15, 1.4, 0.3, 0.5, pop_seed("ra")), ("81893e000fc7390b", 93537.5686403953)),
    ((36, 80, 0.15, 3.5, 1.0, 0.5, pop_seed("pc")), ("e4e731365e2c2341", 17154.71453943217)),
    ((25, 80, 0.15, 3.0, 1.0, 0.5, pop_seed("sa2")), ("605b5eeb7ea8590f", 11895.378119126064)),
    ((3600, 80, 0.15, 1.4, 0.3, 0.5, pop_seed("sa")), ("5da92dd3cd6f5ee9", 1712002.6445222362)),
    ((7200, 80, 0.15, 1.4, 0.3, 0.5, pop_seed("ra")), ("c575ee18eb59022a", 3419230.021641952)),
    ((1152, 80, 0.15, 3.5, 1.0, 0.5, pop_seed("pc")), ("fad2a76c6845a613", 547885.1101364843)),
    ((1200, 80, 0.15, 3.0, 1.0, 0.5, pop_seed("sa2")), ("460446fc8ebfafe1", 571150.2780920092)),
    ((700, 40, 0.2, 0.3, 0.05, 1.0, 11), ("1ddf9069f05c27a8", 289183.20199331327)),  # most fields empty: nearest receptor
    ((1, 10, 0.5, 9.0, 0.7, 0.0, 3), ("a6b408a95386bce6", 50.262974068490024)),  # reach capped at the grid
    ((520, 60, 0.1, 0.5, 0.6, 0.8, 99), ("748beb798f90a77c", 240696.83854137274)),  # more than one 512 block
    ((3, 1, 0.2, 0.5, 0.5, 0.5, 5), ("b18a31f73971cb25", 3.0)),  # one receptor
]

CASES = [  # n, grid size, spacing, sigma, p_centre, jitter, seed
    (50, 40, 0.3, 1.0, 0.3, 0.5, 7),
    (37, 23, 0.31, 1.1, 0.9, 0.25, 12345),
    (300, 30, 0.2, 0.4, 0.02, 0.0, 4),  # empty fields on an exact lattice: argmin ties
    (257, 80, 0.15, 1.4, 0.3, 0.5, 1),
    (64, 20, 0.5, 2.0, 1.0, 1.0, 8),  # fields wider than the patch
    (2, 7, 1.0, 0.2, 1.0, 0.5, 9),  # fields smaller than a cell
]


@pytest.mark.parametrize(("case", "expected"), PINNED, ids=[f"n{c[0]}-s{c[3]}" for c, _ in PINNED])
def test_fields_and_positions_are_pinned(case, expected):
    got = pinned(*case)
    assert got[0] == expected[0] and got[1] == pytest.approx(expected[1], rel=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_same_fields_and_generator_state_as_the_torch_definition(case):
    assert digest(*case) == digest(*case, build=reference)


@pytest.mark.parametrize("words", [0, 1, 623, 624, 625, 1000])
def test_any_stream_offset(words):
    """The generator may come in anywhere in its block (odd word, block end, just twisted)."""
    g = Grid(30, 0.2)
    outs = []
    for build in (innervation, reference):
        gen = torch.Generator().manual_seed(21)
        pos = afferent_positions(40, g.extent, 0.5, gen)
        if words:
            torch.rand(words, generator=gen)  # float32: one word each
        w = build(pos, g, 0.8, 0.5, gen)
        outs.append((*parts(w), gen.get_state(), torch.rand(5, generator=gen)))
    assert all(torch.equal(a, b) for a, b in zip(*outs))


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_fields_do_not_depend_on_the_split_over_threads(monkeypatch, threads):
    monkeypatch.setattr(grid_mod, "_MIN_PART", 1)
    monkeypatch.setattr(grid_mod.torch, "get_num_threads", lambda: threads)
    case = (130, 50, 0.2, 0.9, 0.6, 0.5, 17)
    assert digest(*case) == digest(*case, build=reference)


def test_torch_path_is_the_same(monkeypatch):
    """Without numba (or with a torch whose generator is not laid out as expected)."""
    compiled = digest(*CASES[2])
    monkeypatch.setattr(grid_mod, "_compiled_matches_torch", lambda: False)
    case, expected = PINNED[0]
    got = pinned(*case)
    assert got[0] == expected[0] and got[1] == pytest.approx(expected[1], rel=1e-10)
    assert digest(*CASES[2]) == compiled


def test_compiled_path_runs_and_float32_positions_fall_back():
    assert grid_mod._compiled_matches_torch()
    g = Grid(20, 0.3)
    gen = torch.Generator().manual_seed(2)
    pos = afferent_positions(10, g.extent, 0.5, gen).to(torch.float32)
    ref_gen = torch.Generator().manual_seed(2)
    afferent_positions(10, g.extent, 0.5, ref_gen)
    w, ref = innervation(pos, g, 0.7, 0.5, gen), reference(pos, g, 0.7, 0.5, ref_gen)
    assert all(torch.equal(a, b) for a, b in zip(parts(w), parts(ref)))


def test_empty_population():
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    w = innervation(torch.zeros(0, 2, dtype=torch.float64), Grid(20, 0.1), 1.0, 0.3, gen)
    assert w.shape == (0, 400) and torch.equal(gen.get_state(), state)


# -- the outcome pass -----------------------------------------------------------------------------


def reference_outcomes(spikes, series, measures, dt, bin_ms):
    """outcomes.series, measure and compute as they were before (torch, one series at a time)."""
    from sensoryforge.core.response import bin_steps, bin_sum, bin_widths

    T = next(iter(spikes.values())).shape[1]
    k = bin_steps(bin_ms, dt)
    widths = torch.from_numpy(bin_widths(T, k)).to(torch.float64)
    times = torch.cumsum(widths, 0) * dt
    ser, binned = {}, {}
    for name in series:
        pop, kind = name.rsplit("_", 1)
        s = spikes[pop]
        if pop not in binned:
            binned[pop] = bin_sum(s.sum(-1, dtype=torch.int64).cpu(), k).to(torch.float64)
        counts = binned[pop]
        if kind == "rate":
            ser[name] = counts / (max(s.shape[-1], 1) * widths * dt / 1000.0)
        else:
            ser[name] = counts.cumsum(-1)
    out = {}
    for s in series:
        for m in measures:
            values = ser[s]
            if m == "mean":
                w = torch.diff(times, prepend=times.new_zeros(1))
                v = (values * w).sum(-1) / w.sum()
            elif m == "peak":
                v = values.max(-1).values
            elif m == "final":
                v = values[:, -1]
            elif m == "auc":
                v = torch.trapezoid(values, times / 1000.0, dim=-1)
            else:
                reached = values >= float(m.split("_")[-1])
                first = reached.to(torch.int8).argmax(-1)
                nan = torch.tensor(float("nan"), dtype=times.dtype)
                v = torch.where(reached.any(-1), times[first], nan)
            out[f"{s}_{m}"] = v
    return times, ser, out


COUNTS = {"sa": 100, "ra": 196, "pc": 36, "sa2": 0}


def rasters(B, T, seed, rate=0.02):
    """The populations as the simulator hands them over: column ranges of one [B, T, N] raster."""
    gen = torch.Generator().manual_seed(seed)
    whole = torch.rand(B, T, sum(COUNTS.values()), generator=gen) < rate
    out, lo = {}, 0
    for p, n in COUNTS.items():
        out[p] = whole[..., lo : lo + n]
        lo += n
    return out


def assert_same_outcomes(got, want):
    for a, b in zip(got[:2], want[:2]):
        if isinstance(a, dict):
            assert list(a) == list(b)
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert list(got[2]) == list(want[2])
    for key in got[2]:
        torch.testing.assert_close(got[2][key], want[2][key], rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize(("B", "T", "dt", "bin_ms"), [
    (1, 4000, 0.25, 10.0),  # the default stimulus
    (3, 4000, 0.25, 10.0),
    (2, 1003, 0.25, 10.0),  # a last bin shorter than the others
    (2, 700, 0.5, 0.5),  # bins of one step
    (2, 2000, 0.25, 100.0),  # bins of 400 steps: more than a byte counts
    (1, 5, 1.0, 10.0),  # one bin, shorter than asked
])
def test_outcomes_are_the_same_numbers(B, T, dt, bin_ms):
    from sensoryforge.core import outcomes
    from sensoryforge.core.response import encode
    from sensoryforge.core.schema import OutcomeConfig

    series = [f"{p}_{kind}" for kind in ("rate", "count") for p in COUNTS]
    measures = ["mean", "peak", "final", "auc", "time_to_10", "time_to_0.5"]
    cfg = OutcomeConfig(series=series, measures=measures, primary="sa_rate_mean", bin=bin_ms)
    spikes = rasters(B, T, seed=T + B)
    want = reference_outcomes(spikes, series, measures, dt, bin_ms)
    flat = {p: outcomes.Flat([encode(x[b].numpy()) for b in range(B)], x.shape[-1], T)
            for p, x in spikes.items()}
    alone = {p: x.contiguous() for p, x in spikes.items()}
    arrays = {p: x.numpy() for p, x in spikes.items()}
    for given in (spikes, alone, flat, arrays):
        assert_same_outcomes(outcomes.compute(given, cfg, dt), want)
    times, ser = outcomes.series(spikes, series, dt, bin_ms)
    assert_same_outcomes((times, ser, {}), (want[0], want[1], {}))


def test_outcomes_of_some_series_and_measures(monkeypatch):
    from sensoryforge.core import outcomes
    from sensoryforge.core.schema import OutcomeConfig

    spikes = rasters(2, 400, seed=5, rate=0.05)
    cfg = OutcomeConfig(series=["ra_count", "sa_rate", "ra_count"], measures=["time_to_3", "peak"],
                        primary="ra_count_peak", bin=2.0)
    want = reference_outcomes(spikes, ["ra_count", "sa_rate"], ["time_to_3", "peak"], 0.25, 2.0)
    assert_same_outcomes(outcomes.compute(spikes, cfg, 0.25), want)
    # without numba: the numpy count gives the same
    monkeypatch.setattr(outcomes, "_bin_counter", lambda: outcomes._bins_numpy)
    assert_same_outcomes(outcomes.compute(spikes, cfg, 0.25), want)
