"""The default config on its default stimulus (1 s ramp-and-hold gaussian under the population):
the behaviour promised in README for amplitudes 10..50 kPa."""

import dataclasses

import pytest
import torch

from sensoryforge.config import load_config, to_stimulus
from sensoryforge.core.simulator import Simulator

AMPLITUDES = (10.0, 20.0, 30.0, 40.0, 50.0)


@pytest.fixture(scope="module")
def responses():
    cfg = load_config()
    sim = Simulator(cfg.pipeline, cfg.neurons)
    stim = to_stimulus(cfg.stimulus)
    res = sim.run([dataclasses.replace(stim, amplitude=a) for a in AMPLITUDES], [0] * len(AMPLITUDES))
    return sim, stim, res.spikes


def window_rate(x, sim, t0, t1):
    """Per-afferent rate (Hz) in [t0, t1) ms for one stimulus' raster [T, N]."""
    a, b = round(t0 / sim.dt), round(t1 / sim.dt)
    return x[a:b].sum(0).double() / ((b - a) * sim.dt / 1000.0)


def test_sa_fires_through_the_hold(responses):
    sim, s, spikes = responses
    hold0 = s.t_pre + s.t_ramp
    for i in range(1, len(AMPLITUDES)):
        x = spikes["sa"][i]
        active = x.sum(0) > 0
        # every quarter of the hold has spikes from the responding afferents
        for q in range(4):
            t0 = hold0 + q * s.t_plateau / 4
            assert window_rate(x, sim, t0, t0 + s.t_plateau / 4)[active].sum() > 0


def test_ra_fires_at_onset_and_offset_and_is_quiet_in_the_hold(responses):
    sim, s, spikes = responses
    on = (s.t_pre, s.t_pre + s.t_ramp + 25)
    off = (s.t_pre + s.t_ramp + s.t_plateau, s.t_pre + 2 * s.t_ramp + s.t_plateau + 25)
    hold = (s.t_pre + s.t_ramp + 100, s.t_pre + s.t_ramp + s.t_plateau)
    for i in range(2, len(AMPLITUDES)):
        x = spikes["ra"][i]
        onset, offset = window_rate(x, sim, *on).mean(), window_rate(x, sim, *off).mean()
        assert onset > 0 and offset > 0
        assert window_rate(x, sim, *hold).mean() < 0.05 * onset


def test_mean_sa_rate_rises_strictly_with_amplitude(responses):
    sim, _, spikes = responses
    seconds = sim.steps * sim.dt / 1000.0
    rates = [float(spikes["sa"][i].sum()) / spikes["sa"].shape[-1] / seconds for i in range(len(AMPLITUDES))]
    assert all(b > a for a, b in zip(rates, rates[1:])), rates
    # near threshold at 10 kPa: few afferents respond; at 50 kPa many more and faster
    responding = [int((spikes["sa"][i].sum(0) > 0).sum()) for i in range(len(AMPLITUDES))]
    assert responding[0] <= 10 and responding[-1] >= 3 * max(responding[0], 1)
    assert rates[-1] >= 5 * rates[0]


def test_rates_and_intervals_stay_physiological(responses):
    sim, _, spikes = responses
    seconds = sim.steps * sim.dt / 1000.0
    for pop, x in spikes.items():
        assert float(x.sum(1).max()) / seconds <= 500.0, pop  # no afferent above 500 Hz
        b, t, n = torch.nonzero(x, as_tuple=True)
        order = torch.argsort(b * 10**9 + n * 10**6 + t)
        b, t, n = b[order], t[order], n[order]
        same = (b[1:] == b[:-1]) & (n[1:] == n[:-1])
        if same.any():
            assert float(torch.diff(t)[same].min()) * sim.dt >= 1.0, pop  # no interval under 1 ms
