"""The fused CPU kernel and its counter-based noise: the published Philox answers, normal numbers
that are normal and independent, maths functions against numpy, the kernel against the torch
loop bit for bit (every model, separable and dense drives, intermediates), and spikes that do not
depend on the batch, the thread count or the rest of the patch."""

import dataclasses
import math

import numba
import numpy as np
import pytest
import torch
from numba import njit
from scipy import stats

from sensoryforge.config import load_config, to_stimulus
from sensoryforge.core import kernel, noise
from sensoryforge.core.response import encode_batch
from sensoryforge.core.simulator import Simulator

TINY = ["debug=tiny"]


@njit(error_model="numpy")
def _philox(c, k):
    return kernel.philox(np.uint64(c[0]), np.uint64(c[1]), np.uint64(c[2]), np.uint64(c[3]),
                         np.uint64(k[0]), np.uint64(k[1]))


# Known-answer vectors of Philox4x32-10 from Random123 (Salmon et al. 2011), kat_vectors
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_gives_the_published_answers_in_numba_and_in_torch(counter, key, expected):
    assert tuple(int(x) for x in _philox(np.array(counter, np.uint64), np.array(key, np.uint64))) == expected
    words = noise.philox(*(torch.tensor(c, dtype=torch.int64) for c in counter + key))
    assert tuple(int(x) for x in words) == expected


def test_the_float32_maths_functions_match_numpy():
    x = np.linspace(-80, 80, 20001, dtype=np.float32)
    e = noise.exp32(torch.from_numpy(x)).double().numpy()
    assert np.max(np.abs(e / np.exp(x.astype(np.float64)) - 1)) < 3e-7
    u = np.random.default_rng(0).random(20000).astype(np.float32) + np.float32(1e-7)
    assert np.max(np.abs(noise.log32(torch.from_numpy(u)).double().numpy() - np.log(u.astype(np.float64)))) < 1e-6
    w = np.random.default_rng(1).integers(0, 2**32, 20000)
    c, s = noise.sincos_turn(torch.from_numpy(w))
    th = w * (2 * math.pi / 2**32)
    assert np.max(np.abs(c.double().numpy() - np.cos(th))) < 3e-7
    assert np.max(np.abs(s.double().numpy() - np.sin(th))) < 3e-7
    d = torch.linspace(-100, 100, 2001)
    assert float((noise.saturate(d, torch.tensor(15.0)) - 15 * torch.tanh(d.double() / 15)).abs().max()) < 2e-5


def test_the_models_name_the_kernels_numbers_and_rows():
    from sensoryforge.core.neurons import LIF, AdEx, Izhikevich

    assert (Izhikevich.kernel_id, LIF.kernel_id, AdEx.kernel_id) == (kernel.IZHIKEVICH, kernel.LIF, kernel.ADEX)
    assert kernel.PARAMS[kernel.ADEX][:5] == ("C", "g_L", "E_L", "V_T", "delta_T")


def test_numba_and_torch_draw_the_same_normals():
    aff = np.arange(300, dtype=np.uint32)
    pop = (np.arange(300) % 4).astype(np.uint32)
    for seed in (0, 1, 2**40 + 5, 2**63 - 1):
        z_numba = kernel.normals(*noise.key_words(seed), 999, aff, pop)
        z_torch = noise.normals([seed], 999, torch.from_numpy(aff.astype(np.int64)), torch.from_numpy(pop.astype(np.int64)))
        np.testing.assert_array_equal(z_numba, z_torch[:, 0].numpy())


def test_the_normals_are_standard_normal_and_independent():
    """500,000 numbers: mean, variance, tails and shape of N(0, 1), and no correlation between
    consecutive steps, neighbouring afferents, populations or seeds (|r| within 4.5 standard
    errors of 0)."""
    n, steps = 500, 999
    aff = np.arange(n, dtype=np.uint32)
    z = kernel.normals(*noise.key_words(7), steps, aff, np.zeros(n, np.uint32)).astype(np.float64)
    flat = z.ravel()
    assert abs(flat.mean()) < 4.5 / math.sqrt(flat.size)
    assert abs(flat.var() - 1) < 4.5 * math.sqrt(2 / flat.size)
    assert stats.kstest(flat[::5], "norm").pvalue > 1e-3
    assert abs(stats.skew(flat)) < 0.02 and abs(stats.kurtosis(flat)) < 0.04
    assert np.mean(np.abs(flat) > 4) == pytest.approx(2 * stats.norm.sf(4), rel=0.5)
    other_pop = kernel.normals(*noise.key_words(7), steps, aff, np.ones(n, np.uint32)).astype(np.float64)
    other_seed = kernel.normals(*noise.key_words(8), steps, aff, np.zeros(n, np.uint32)).astype(np.float64)
    se = 4.5 / math.sqrt(flat.size)
    for a, b in [(z[1:], z[:-1]), (z[2:], z[:-2]), (z[4:], z[:-4]), (z[:, 1:], z[:, :-1]), (z, other_pop), (z, other_seed)]:
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < se


def _flushed(x: torch.Tensor) -> torch.Tensor:
    """x with its subnormal values as zeros, as the kernel computes them."""
    return torch.where(x.abs() < torch.finfo(x.dtype).tiny, torch.zeros_like(x), x)


def _both(overrides, stimuli, seeds, intermediates=True):
    cfg = load_config(overrides)
    fused = Simulator(cfg.pipeline, cfg.neurons)
    ref = Simulator(cfg.pipeline, cfg.neurons, engine="torch")
    assert fused.fused and not ref.fused
    return fused.run(stimuli, seeds, intermediates), ref.run(stimuli, seeds, intermediates)


@pytest.mark.parametrize("model", ["default", "lif", "adex"])
@pytest.mark.parametrize("stimulus", ["gaussian", "moving_gaussian"])
def test_the_kernel_gives_the_torch_loop_spikes_bit_for_bit(model, stimulus):
    """Same noise, same float32 operations in the same order: the same spikes, drive and membrane
    potential, for every model, a separable (outer-product) drive and a dense one. The kernel
    flushes subnormal floats to zero (kernel._FTZ_DAZ), so the reference's drive is compared
    with its values below float32's smallest normal number set to zero; nothing else differs."""
    over = TINY + [f"neurons={model}", f"stimulus={stimulus}", "stimulus.amplitude=60"]
    stim = to_stimulus(load_config(over).stimulus)
    a, b = _both(over, [stim, dataclasses.replace(stim, amplitude=30.0)], [3, 4])
    total = 0
    for pop in a.spikes:
        assert torch.equal(a.spikes[pop], b.spikes[pop])
        assert torch.equal(a.drive[pop], _flushed(b.drive[pop]))
        assert torch.equal(a.voltage[pop], b.voltage[pop])
        total += int(a.spikes[pop].sum())
    assert total > 0
    # the kernel's own encoding of the spikes (read at the steps where some afferent fired) is
    # the codec's, index for index and in its dtype
    assert b.flats is None
    for pop, x in a.spikes.items():
        for flat, want in zip(a.flats[pop], encode_batch(x), strict=True):
            assert flat.dtype == want.dtype
            np.testing.assert_array_equal(flat, want)


def test_spikes_do_not_depend_on_the_batch_the_threads_or_the_block():
    cfg = load_config(TINY)
    sim = Simulator(cfg.pipeline, cfg.neurons)
    stim = to_stimulus(load_config(TINY + ["stimulus.amplitude=60"]).stimulus)
    stims = [dataclasses.replace(stim, amplitude=a) for a in (30.0, 45.0, 60.0)]
    together = sim.run(stims, [1, 2, 3]).spikes
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        alone = [sim.run([s], [seed]).spikes for s, seed in zip(stims, [1, 2, 3])]
    finally:
        numba.set_num_threads(threads)
    for b in range(3):
        for pop in together:
            assert torch.equal(together[pop][b], alone[b][pop][0])
    # an afferent's numbers do not depend on its lane: blocks of another width, same spikes
    import sensoryforge.core.simulator as simulator

    old = simulator.BLOCK
    try:
        simulator.BLOCK = 3
        narrow = Simulator(cfg.pipeline, cfg.neurons).run(stims, [1, 2, 3]).spikes
    finally:
        simulator.BLOCK = old
    for pop in together:
        assert torch.equal(together[pop], narrow[pop])


def test_the_active_steps_are_those_with_a_spike_and_only_those():
    """The kernel writes a block's spike row only at the steps where one of its afferents fired and
    marks those steps active (encoding reads only them): for a separable drive, a dense one and
    noise alone (strong enough to fire), in blocks narrower than their padding (the tiny patch's 4-afferent populations),
    active is exactly "any spike at this step" and the spikes are the torch loop's."""
    noisy = [f"neurons.{p}.noise_std=2" for p in ("sa", "ra", "pc", "sa2")]  # noise alone fires them
    cfg = load_config(TINY + noisy)
    sim = Simulator(cfg.pipeline, cfg.neurons)
    stims = [to_stimulus(load_config(TINY + over).stimulus) for over in
             (["stimulus.amplitude=60"], ["stimulus=moving_gaussian", "stimulus.amplitude=60"], ["stimulus.amplitude=0"])]
    seeds = [1, 2, 3]
    spikes, active, _, _ = sim._kernel(sim.linear_drives(stims), seeds, False)
    assert all(spikes[b].any() for b in range(3))
    np.testing.assert_array_equal(active, spikes.any(axis=2))
    ref = Simulator(cfg.pipeline, cfg.neurons, engine="torch").run(stims, seeds).spikes
    np.testing.assert_array_equal(torch.cat([ref[p.name] for p in sim.populations], dim=2).numpy(), spikes)


def test_the_noise_seed_changes_the_spikes_and_no_noise_is_exact():
    cfg = load_config(TINY)
    sim = Simulator(cfg.pipeline, cfg.neurons)
    stim = to_stimulus(load_config(TINY + ["stimulus.amplitude=60"]).stimulus)
    a, b = sim.run([stim, stim], [1, 2]).spikes["ra"]
    assert not torch.equal(a, b)
    quiet = load_config(TINY + [f"neurons.{p}.{k}=0" for p in ("sa", "ra", "pc", "sa2") for k in ("noise_std", "noise_scaling")])
    q = Simulator(quiet.pipeline, quiet.neurons)
    x, y = q.run([stim, stim], [1, 2]).spikes["ra"]
    assert torch.equal(x, y) and int(x.sum()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_the_gpu_path_draws_the_same_noise_and_nearly_the_same_spikes():
    """On CUDA the noise numbers are the CPU kernel's bit for bit; the drive differs in the last
    bits (cuFFT and the GPU's pooled sums round differently), so a spike may move where the
    membrane grazes threshold: at least 99% of spikes coincide."""
    aff = torch.arange(300)
    pop = aff % 4
    cpu = noise.normals([5, 6], 999, aff, pop)
    gpu = noise.normals([5, 6], 999, aff.cuda(), pop.cuda()).cpu()
    assert torch.equal(cpu, gpu)
    cfg = load_config(["pipeline.duration=300"])
    stim = to_stimulus(cfg.stimulus)
    a = Simulator(cfg.pipeline, cfg.neurons).run([stim], [1]).spikes
    g = load_config(["pipeline.duration=300", "pipeline.device=cuda"])
    b = Simulator(g.pipeline, g.neurons).run([stim], [1]).spikes
    for pop_name in a:
        x, y = a[pop_name], b[pop_name].cpu()
        same = int((x & y).sum())
        assert same >= 0.99 * max(int(x.sum()), int(y.sum()))


@pytest.mark.skipif(not kernel._X86, reason="MXCSR is x86's")
def test_the_kernel_flushes_subnormals_inside_and_restores_the_thread_after():
    """Subnormal products (a narrow stimulus' far tail) cost a microcode assist each; the kernel
    sets flush-to-zero for its own work and gives the thread back as it found it."""
    from numba import njit

    @njit
    def mode():
        return kernel._get_mxcsr()

    @njit
    def flushed_product(a, b):
        saved = kernel._get_mxcsr()
        kernel._set_mxcsr(saved | kernel._FTZ_DAZ)
        x = a * b
        kernel._set_mxcsr(saved)
        return x

    tiny = np.float32(1e-20)
    assert flushed_product(tiny, tiny) == 0 and tiny * tiny > 0  # 1e-40: subnormal unless flushed
    before = mode()
    cfg = load_config(TINY + ["stimulus.sigma=0.3"])
    Simulator(cfg.pipeline, cfg.neurons).run([to_stimulus(cfg.stimulus)], [1])
    control = 0xFFC0  # the mode bits; the low six are sticky exception flags, which numpy clears
    assert mode() & control == before & control and before & int(kernel._FTZ_DAZ) == 0


def test_the_receptive_field_product_is_scipys_sum_for_sum():
    """kernel.pool adds each row's terms in scipy's order: the same bits wherever no subnormal
    float occurs, and only differences below float32's smallest normal number where one does."""
    import scipy.sparse

    rng = np.random.default_rng(3)
    a = scipy.sparse.random(300, 900, density=0.05, format="csr", random_state=4, dtype=np.float32)
    x = rng.uniform(0.0, 50.0, (900, 7)).astype(np.float32)
    out = np.empty((300, 7), np.float32)
    kernel.pool(a.indptr, a.indices, a.data, x, out)
    np.testing.assert_array_equal(out, a @ x)
    x[::3] = np.float32(1e-41)  # subnormal pressures, as in a narrow gaussian's tail
    kernel.pool(a.indptr, a.indices, a.data, x, out)
    assert np.abs(out - a @ x).max() < np.finfo(np.float32).tiny
