"""The one spike codec and the counting that rates rest on (core/response.py), by hand, and the
Response of a simulated stimulus against the outcome series of the same spikes."""

import numpy as np
import pytest
import torch

from sensoryforge.core import outcomes
from sensoryforge.core.response import (
    Response,
    bin_sum,
    bin_widths,
    decode,
    encode,
    split,
    window_counts,
    window_rate,
)
from sensoryforge.core.schema import OutcomeConfig

# 4 steps x 3 afferents: afferent 0 fires at steps 0 and 3, afferent 2 at step 1
RASTER = np.zeros((4, 3), dtype=bool)
RASTER[0, 0] = RASTER[3, 0] = RASTER[1, 2] = True


def test_flat_indices_are_t_times_n_plus_n_sorted():
    flat = encode(RASTER)
    assert flat.tolist() == [0 * 3 + 0, 1 * 3 + 2, 3 * 3 + 0] and flat.dtype == np.int32
    assert encode(torch.from_numpy(RASTER)).tolist() == flat.tolist()  # torch rasters alike
    assert split(flat, 3).tolist() == [[0, 1, 3], [0, 2, 0]]  # (time step, afferent)
    np.testing.assert_array_equal(decode(flat, 4, 3), RASTER)
    assert encode(np.zeros((5, 0), bool)).size == 0 and decode(np.zeros(0, np.int32), 5, 0).shape == (5, 0)


def test_random_rasters_survive_the_round_trip():
    rng = np.random.default_rng(0)
    x = rng.random((7, 3, 50, 11)) < 0.1
    for raster in x.reshape(-1, 50, 11):
        np.testing.assert_array_equal(decode(encode(raster), 50, 11), raster)
        out = np.empty((2, int(raster.sum())), dtype=np.int64)
        assert split(encode(raster), 11, out=out) is out
        t, n = np.nonzero(raster)
        np.testing.assert_array_equal(out, np.stack([t, n]))


def test_window_counts_and_rates_by_hand():
    dt = 0.5  # ms: the raster is 2 ms long
    assert window_counts(RASTER, 0.0, None, dt).tolist() == [2, 0, 1]
    assert window_counts(RASTER, 0.5, 1.5, dt).tolist() == [0, 0, 1]  # steps 1 and 2
    np.testing.assert_allclose(window_rate(RASTER, 0.0, 2.0, dt), [1000.0, 0.0, 500.0])  # spikes / 2 ms
    batch = np.stack([RASTER, ~RASTER])  # [B, T, N]
    assert window_counts(batch, 0.0, 1.0, dt).tolist() == [[1, 0, 1], [1, 2, 1]]
    assert window_counts(RASTER[:, 0], 1.0, None, dt, axis=0) == 1  # one train, time on axis 0


def test_bins_of_k_steps_keep_a_short_last_bin():
    assert bin_widths(10, 4).tolist() == [4, 4, 2]
    x = np.arange(10)
    assert bin_sum(x, 4).tolist() == [0 + 1 + 2 + 3, 4 + 5 + 6 + 7, 8 + 9]
    assert bin_sum(torch.arange(10), 4).tolist() == [6, 22, 17]


def test_response_rates_psth_and_intervals():
    r = Response({"sa": RASTER, "ra": np.zeros((4, 2), bool)}, dt=0.5)
    assert (r.steps, r.duration, r.populations) == (4, 2.0, ["sa", "ra"])
    assert r.counts("sa").tolist() == [2, 0, 1]
    np.testing.assert_allclose(r.rate("sa"), [1000.0, 0.0, 500.0])
    times, rate = r.psth("sa", bin_ms=1.0)  # bins of 2 steps: spikes 2 and 1 over 3 afferents
    np.testing.assert_allclose(times, [1.0, 2.0])
    np.testing.assert_allclose(rate, [2 / 3 / 1e-3, 1 / 3 / 1e-3])
    isi = r.isi("sa")
    assert [i.tolist() for i in isi] == [[1.5], [], []]
    again = Response.from_flat({p: r.flat(p) for p in r.populations}, {"sa": 3, "ra": 2}, 4, 0.5)
    assert all(np.array_equal(again.spikes[p], r.spikes[p]) for p in r.populations)


@pytest.mark.parametrize("steps, bin_ms", [(200, 10.0), (203, 10.0), (50, 3.0)])
def test_psth_is_the_outcome_rate_series_of_the_same_spikes(steps, bin_ms):
    rng = np.random.default_rng(steps)
    x = rng.random((steps, 9)) < 0.05
    r = Response({"sa": x}, dt=1.0)
    cfg = OutcomeConfig(series=["sa_rate"], measures=["mean"], primary="sa_rate_mean", bin=bin_ms)
    times, ser, meas = outcomes.compute({"sa": torch.from_numpy(x)[None]}, cfg, 1.0)
    t, rate = r.psth("sa", bin_ms)
    np.testing.assert_allclose(t, times.numpy())
    np.testing.assert_allclose(rate, ser["sa_rate"][0].numpy(), rtol=1e-12)
    # the time-weighted mean of the series is the whole-response rate
    assert float(meas["sa_rate_mean"][0]) == pytest.approx(r.rate("sa").mean(), rel=1e-12)


def test_a_batch_is_encoded_in_one_pass_as_each_raster_alone():
    from sensoryforge.core.response import encode_batch

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((6, 40, 7)) < 0.05)
    x[2] = False  # a stimulus without spikes
    flats = encode_batch(x)
    assert len(flats) == 6 and all(f.dtype == np.int32 for f in flats)
    for raster, flat in zip(x, flats):
        np.testing.assert_array_equal(flat, encode(raster.numpy()))
    assert flats[2].size == 0 and encode_batch(torch.zeros(0, 4, 3, dtype=torch.bool)) == []
    assert [f.size for f in encode_batch(torch.ones(2, 3, 0, dtype=torch.bool))] == [0, 0]


def test_raster_chunks_are_standard_zlib_streams_of_the_raster():
    """results.h5's spike chunks are built from the indices (dataset/hdf5.py): zlib must inflate
    them to exactly the raster's bytes, whatever the spikes (none, all, at the edges, runs)."""
    import zlib

    from sensoryforge.dataset.hdf5 import deflate_chunks, raster_chunks

    rng = np.random.default_rng(2)
    cases = [np.zeros((30, 5), bool), np.ones((9, 4), bool), rng.random((4000, 196)) < 0.0002,
             rng.random((50, 3)) < 0.5]
    edge = np.zeros((20, 6), bool)
    edge[0, 0] = edge[-1, -1] = True
    edge[5:7] = True
    cases.append(edge)
    for raster in cases:
        steps, n = raster.shape
        rows, chunks = raster_chunks(encode(raster), steps, n)
        sizes = [rows * n] * len(chunks)
        starts = np.cumsum([0] + [p.size for _, p in chunks])
        streams = deflate_chunks(sizes, np.concatenate([p for _, p in chunks] or [np.zeros(0, int)]), starts)
        got = np.zeros((-(-steps // rows) * rows, n), np.uint8)  # chunks not written stay 0
        for (row, _), s in zip(chunks, streams):
            got[row : row + rows] = np.frombuffer(zlib.decompress(s), np.uint8).reshape(rows, n)
        np.testing.assert_array_equal(got[:steps].astype(bool), raster)
    # many chunks of random sizes in one call
    sizes = rng.integers(1, 5000, 40)
    ps = [np.unique(rng.integers(0, s, rng.integers(0, s // 3 + 1))) for s in sizes]
    starts = np.cumsum([0] + [p.size for p in ps])
    for s, p, z in zip(sizes, ps, deflate_chunks(sizes, np.concatenate(ps), starts)):
        ref = np.zeros(s, np.uint8)
        ref[p] = 1
        assert zlib.decompress(z) == ref.tobytes()
