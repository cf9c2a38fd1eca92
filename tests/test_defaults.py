"""The default config on its default stimulus (1 s ramp-and-hold gaussian under the population):
the behaviour promised in README for amplitudes 10..50 kPa, the pinned (golden) spike counts, and
the same model from plain values, as a notebook builds it."""

import dataclasses

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from sensoryforge.config import load_config, to_stimulus
from sensoryforge.core.params import ConfigError
from sensoryforge.core.simulator import Simulator, noise_seed

AMPLITUDES = (10.0, 20.0, 30.0, 40.0, 50.0)


@pytest.fixture(scope="module")
def responses():
    cfg = load_config()
    sim = Simulator(cfg.pipeline, cfg.neurons)
    stim = to_stimulus(cfg.stimulus)
    res = sim.run([dataclasses.replace(stim, amplitude=a) for a in AMPLITUDES], [0] * len(AMPLITUDES))
    return sim, stim, res.spikes


# Pinned on purpose: total spikes per population of the default model (pipeline seed 42) for the
# default stimulus at 10..50 kPa, with the trial noise of `sensoryforge seed=0 repetition=0`. A
# retune of the defaults or a change of the numerics shows up here: change these numbers in the
# same commit, and say in its message what moved them and why. Moved last by the counter-based
# noise of the fused kernel (issue 13); over 120 noise seeds at 20 kPa the mean counts stayed
# within one standard error (SA 101.46 / 101.46, RA 57.65 / 57.62, PC 98.30 / 98.46, SA2
# 14.52 / 14.42 before / after). The kernel avoids fused multiply-adds, so other x86 CPUs give
# the same bits.
GOLDEN = {
    "sa": [15, 106, 187, 274, 360],
    "ra": [12, 58, 106, 156, 203],
    "pc": [6, 99, 133, 144, 144],
    "sa2": [0, 13, 70, 140, 205],
}
GOLDEN_RESPONDING = {"sa": [5, 15, 20, 22, 25], "ra": [10, 31, 43, 48, 53], "pc": [4, 29, 35, 36, 36],
                     "sa2": [0, 4, 11, 20, 22]}


@pytest.fixture(scope="module")
def notebook():
    """The default model from plain values: no config file, no OmegaConf node."""
    from sensoryforge.core import Gaussian, Simulator

    sim = Simulator()
    return sim, sim.simulate([Gaussian(amplitude=a) for a in AMPLITUDES], seeds=[noise_seed(0, 0)] * 5)


def test_golden_spike_counts_of_the_default_model(notebook):
    _, responses = notebook
    counts = {p: [int(r.counts(p).sum()) for r in responses] for p in GOLDEN}
    responding = {p: [int((r.counts(p) > 0).sum()) for r in responses] for p in GOLDEN}
    assert counts == GOLDEN and responding == GOLDEN_RESPONDING


def test_the_schema_defaults_are_the_composed_default_config(notebook, responses):
    from sensoryforge.core.schema import NeuronsConfig, OutcomeConfig, PipelineConfig

    cfg = load_config()
    assert OmegaConf.to_object(cfg.neurons) == NeuronsConfig()
    assert OmegaConf.to_object(cfg.pipeline) == PipelineConfig()
    assert OmegaConf.to_object(cfg.outcome) == OutcomeConfig()
    # so the composed config and the plain values give the same spikes (noise seed 0 for both)
    sim, _ = notebook
    again = sim.simulate([dataclasses.replace(to_stimulus(cfg.stimulus), amplitude=a) for a in AMPLITUDES])
    _, _, spikes = responses
    for b, r in enumerate(again):
        for pop in GOLDEN:
            np.testing.assert_array_equal(r.spikes[pop], spikes[pop][b].numpy())


def test_a_notebook_builds_a_population_and_reads_rates_in_a_few_lines():
    from sensoryforge.core import PipelineConfig, Simulator, Vibration

    sim = Simulator(PipelineConfig(duration=300.0))
    (r,) = sim.simulate([Vibration(amplitude=20.0, frequency=40.0)])
    assert r.steps == 1200 and r.dt == 0.25 and r.stimulus.frequency == 40.0 and r.seed == 0
    assert {p: r.spikes[p].shape[1] for p in r.populations} == {"sa": 100, "ra": 196, "pc": 36, "sa2": 25}
    assert r.rate("ra").max() > 0 and r.rate("ra").shape == (196,)
    with pytest.raises(ConfigError, match=r"pipeline.dt=-1.0: must be > 0 ms"):
        Simulator(PipelineConfig(dt=-1.0))
    with pytest.raises(ValueError, match="seeds: 2 given for 1 stimuli"):
        sim.simulate([Vibration()], seeds=[1, 2])


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
