"""Spiking models against their analytic properties: rheobase, f-I shape, refractoriness,
per-neuron variability and input noise."""

import math

import numpy as np
import pytest
import torch

from sensoryforge.core.neurons import LIF, MODELS, AdEx, Izhikevich, per_neuron
from sensoryforge.core.schema import MODEL_PARAMS, AdExParams, IzhikevichParams, LIFParams


def simulate(cls, params, drive, dt=0.1, ms=2000.0, refractory_ms=0.0, variability=0.0, noise=None):
    """Constant drive (rheobase units) per neuron -> spike raster [T, N]."""
    drive = torch.as_tensor(drive, dtype=torch.float64)
    n = drive.numel()
    p = per_neuron(cls, params, n, variability, torch.Generator().manual_seed(0))
    model = cls(p, dt)
    steps = round(ms / dt)
    current = (drive * cls.rheobase(params)).expand(steps, 1, n).contiguous()
    refr = torch.full((n,), round(refractory_ms / dt))
    sd = torch.full((n,), 0.0 if noise is None else noise * cls.rheobase(params), dtype=torch.float64)
    decay = torch.full((n,), math.exp(-dt / 5.0), dtype=torch.float64)
    xi = None if noise is None else torch.randn(steps + 1, 1, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    spikes, _ = model.run(current, xi, sd, decay, refr)
    return spikes[:, 0]


def steady_rate(raster, dt, skip_ms=1000.0):
    """Hz per neuron after the onset transient."""
    k = round(skip_ms / dt)
    return raster[k:].sum(0).double() / ((raster.shape[0] - k) * dt / 1000.0)


@pytest.mark.parametrize(
    "cls, params",
    [(Izhikevich, IzhikevichParams()), (LIF, LIFParams()), (AdEx, AdExParams())],
    ids=["izhikevich", "lif", "adex"],
)
def test_rheobase_matches_the_analytic_value(cls, params):
    # just below the nominal rheobase: silent at steady state; just above: fires repetitively
    r = steady_rate(simulate(cls, params, [0.97, 1.05], dt=0.05, ms=3000.0), 0.05, skip_ms=1500.0)
    assert r[0] == 0
    assert r[1] > 0


def test_rheobase_formulas():
    # regular spiking (a < b): Hopf at v = (a - 5) / 0.08 = -62.25 mV, before the saddle-node (I = 4)
    assert Izhikevich.rheobase(IzhikevichParams()) == pytest.approx(3.7975)
    assert Izhikevich.rheobase(IzhikevichParams(a=0.2, b=0.2)) == pytest.approx(4.0)
    assert LIF.rheobase(LIFParams()) == pytest.approx(1.5)  # 15 mV / 10 MOhm
    # AdEx: the saddle-node is the peak of the steady-state I-V curve (adaptation at its steady
    # state w = a (V - E_L)); found here numerically, not from the closed form
    p = AdExParams()
    v = np.linspace(p.E_L, p.V_T + 5 * p.delta_T, 400_001)
    current = (p.g_L + p.a) * (v - p.E_L) - p.g_L * p.delta_T * np.exp((v - p.V_T) / p.delta_T)
    assert AdEx.rheobase(p) == pytest.approx(current.max(), rel=1e-6)


def test_every_model_name_of_the_schema_has_its_model():
    assert set(MODELS) == set(MODEL_PARAMS)
    assert all(MODELS[name].params_cls is cls for name, cls in MODEL_PARAMS.items())


def test_lif_f_i_curve_is_the_analytic_one():
    p = LIFParams()
    drives = [1.2, 1.5, 2.0, 4.0]
    t_ref = 2.0
    r = steady_rate(simulate(LIF, p, drives, dt=0.01, ms=1500.0, refractory_ms=t_ref), 0.01, skip_ms=500.0)
    for d, rate in zip(drives, r.tolist()):
        # time to climb from reset (= rest) to threshold under v_inf = rest + d (thr - rest)
        isi = t_ref + p.tau_m * math.log(d / (d - 1))
        assert rate == pytest.approx(1000.0 / isi, rel=0.03)


@pytest.mark.parametrize("name", list(MODELS))
def test_f_i_curves_rise_monotonically(name):
    cls = MODELS[name]
    drives = [1.2, 1.5, 2.0, 3.0, 5.0, 10.0]
    r = steady_rate(simulate(cls, cls.params_cls(), drives, dt=0.1, refractory_ms=2.0), 0.1).tolist()
    assert all(b > a for a, b in zip(r, r[1:])), r
    # class-1 excitability: rates start low near threshold (no jump to a high rate)
    assert r[0] < 0.35 * r[-1]


@pytest.mark.parametrize("name", list(MODELS))
def test_refractory_period_bounds_rate_and_intervals(name):
    cls = MODELS[name]
    raster = simulate(cls, cls.params_cls(), [200.0], dt=0.5, ms=1000.0, refractory_ms=2.0)[:, 0]
    times = torch.nonzero(raster).reshape(-1).double() * 0.5
    assert len(times) > 100
    assert float(times.diff().min()) >= 2.0  # never two spikes within the refractory period
    assert len(times) <= 500 + 1  # hence at most 500 Hz
    # and without a refractory period the same drive fires faster
    free = simulate(cls, cls.params_cls(), [200.0], dt=0.5, ms=1000.0, refractory_ms=0.0)[:, 0]
    assert free.sum() > raster.sum()


def test_izhikevich_adapts():
    # spike-frequency adaptation (d > 0): the first interval is much shorter than the steady one
    raster = simulate(Izhikevich, IzhikevichParams(), [5.0], dt=0.1, ms=1500.0)[:, 0]
    isi = torch.nonzero(raster).reshape(-1).diff()
    assert isi[0] * 3 < isi[-1]
    flat = simulate(Izhikevich, IzhikevichParams(d=0.0), [5.0], dt=0.1, ms=1500.0)[:, 0]
    isi0 = torch.nonzero(flat).reshape(-1).diff()
    assert isi0[-1] / isi0[0] < isi[-1] / isi[0]  # weaker adaptation without the spike jump d


def test_variability_really_varies_neurons():
    same = simulate(Izhikevich, IzhikevichParams(), [3.0] * 8, dt=0.5, ms=500.0, variability=0.0)
    assert all(torch.equal(same[:, 0], same[:, i]) for i in range(8))
    varied = simulate(Izhikevich, IzhikevichParams(), [3.0] * 8, dt=0.5, ms=500.0, variability=0.2)
    assert len({tuple(varied[:, i].nonzero().reshape(-1).tolist()) for i in range(8)}) > 1


def test_per_neuron_parameters_stay_in_bounds():
    p = per_neuron(Izhikevich, IzhikevichParams(), 10000, 0.5, torch.Generator().manual_seed(3))
    assert float(p["a"].min()) >= 0.5 * 0.02 and float(p["a"].max()) <= 1.5 * 0.02
    assert torch.all(p["c"] == -65.0)  # voltages are not jittered


def test_noise_moves_spike_times_and_zero_noise_is_exact():
    quiet = simulate(LIF, LIFParams(), [1.5] * 4, dt=0.5, ms=500.0, noise=0.0)
    assert all(torch.equal(quiet[:, 0], quiet[:, i]) for i in range(4))
    noisy = simulate(LIF, LIFParams(), [1.5] * 4, dt=0.5, ms=500.0, noise=0.3)
    assert not torch.equal(noisy, quiet)
    # sub-threshold drive with noise fires now and then; without noise never
    sub = simulate(LIF, LIFParams(), [0.9], dt=0.5, ms=2000.0, noise=0.3)
    assert sub.sum() > 0
    assert simulate(LIF, LIFParams(), [0.9], dt=0.5, ms=2000.0, noise=0.0).sum() == 0


def test_noise_scaling_makes_the_noise_grow_with_the_input():
    """sd = noise_std + noise_scaling x input: with noise_std 0, no input means no noise, and the
    membrane's fluctuations (LIF far below threshold: linear) grow in proportion to the input."""
    p = LIFParams(v_threshold=1e6)  # never fires: v is a linear filter of the input
    n, steps, dt = 3, 20000, 0.5
    model = LIF(per_neuron(LIF, p, n, 0.0, torch.Generator().manual_seed(0)), dt)
    current = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64).expand(steps, 1, n).contiguous()
    xi = torch.randn(steps + 1, 1, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    xi[:, :, 2] = xi[:, :, 1]  # the same noise sequence for inputs 1 and 2
    zeros = torch.zeros(n, dtype=torch.float64)
    _, v = model.run(current, xi, zeros, torch.full((n,), math.exp(-dt / 5.0), dtype=torch.float64),
                     torch.zeros(n, dtype=torch.long), noise_scaling=torch.full((n,), 0.3, dtype=torch.float64),
                     record_voltage=True)
    sd = v[1000:, 0].std(0)
    assert float(sd[0]) == 0.0
    assert float(sd[2] / sd[1]) == pytest.approx(2.0, rel=1e-9)
