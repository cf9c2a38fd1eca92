"""The torch pipeline: stimuli, innervation, analytic filter responses, determinism."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from sensoryforge.config import load_config, to_stimulus
from sensoryforge.core.filters import lowpass_response, velocity_response
from sensoryforge.core.grid import Grid, afferent_positions, innervation
from sensoryforge.core.simulator import Simulator
from sensoryforge.core.stimuli import REGISTRY
from sensoryforge.core.stimuli.flat import Step, Trapezoid
from sensoryforge.core.stimuli.moving_gaussian import MovingGaussian

from conftest import TINY


@pytest.fixture(scope="module")
def tiny():
    return load_config(TINY)


def quiet(cfg_overrides=()):
    """Tiny config without noise or variability: filters and models can be checked exactly."""
    ov = TINY + [f"neurons.{p}.{k}=0" for p in ("sa", "ra", "pc", "sa2")
                 for k in ("noise_std", "noise_scaling", "variability", "saturation", "bias")]
    return load_config(ov + list(cfg_overrides))


# -- filters ---------------------------------------------------------------------------------


def test_lowpass_step_response_is_exponential():
    dt, tau = 0.5, 10.0
    h = lowpass_response(tau, dt, 400)
    step = np.cumsum(h)
    t = np.arange(400) * dt
    np.testing.assert_allclose(step, 1 - np.exp(-(t + dt) / tau), rtol=1e-12)


def test_velocity_filter_is_a_bandpass_with_the_analytic_gain():
    dt, tau, n = 0.1, 5.0, 40000
    h = velocity_response(tau, dt, n)
    assert abs(h.sum()) < 1e-9  # no response to a constant (silent during a hold)
    for f_hz in (5.0, 1000 / (2 * math.pi * tau), 200.0):
        w = 2 * math.pi * f_hz / 1000.0  # rad/ms
        gain = abs(np.sum(h * np.exp(-1j * w * np.arange(n) * dt)))
        assert gain == pytest.approx(w * tau / (1 + (w * tau) ** 2), rel=0.03)


def test_sa_step_response_follows_the_low_pass():
    cfg = quiet(["stimulus=step", "stimulus.t_pre=20", "neurons.sa.filter.w_on=0", "neurons.sa.filter.tau_static=10"])
    sim = Simulator(cfg.pipeline, cfg.neurons)
    drive, _ = sim.drive(to_stimulus(cfg.stimulus))
    sa = sim.populations[0]
    pooled = (sa.weights @ to_stimulus(cfg.stimulus).profile(sim.x, sim.y).reshape(-1, 1).to(sim.dtype)).reshape(-1)
    k = int(np.argmax(pooled.numpy()))
    t = sim.times.numpy()
    x = drive[:, k].numpy()
    on = t >= 20
    expected = cfg.neurons.sa.gain * float(pooled[k]) * (1 - np.exp(-(t[on] - 20 + sim.dt) / 10.0))
    np.testing.assert_allclose(x[on][: len(expected) // 2], expected[: len(expected) // 2], rtol=1e-4, atol=1e-6)
    assert np.abs(x[t < 20]).max() < 1e-9  # FFT round-off only


def test_ra_is_silent_during_a_hold_and_responds_at_onset_and_offset():
    cfg = quiet(["stimulus.t_pre=20", "stimulus.t_ramp=20", "stimulus.t_plateau=100"])
    sim = Simulator(cfg.pipeline, cfg.neurons)
    drive, _ = sim.drive(to_stimulus(cfg.stimulus))
    ra = sim.split(drive)["ra"].abs().max(1).values.numpy()
    t = sim.times.numpy()
    onset = ra[(t >= 20) & (t < 50)].max()
    offset = ra[(t >= 140) & (t < 170)].max()
    hold = ra[(t >= 90) & (t < 140)].max()  # the hold, 50 ms (10 tau) after the ramp
    assert onset > 0 and offset > 0
    assert hold < 1e-3 * onset
    assert offset == pytest.approx(cfg.neurons.ra.filter.w_off / cfg.neurons.ra.filter.w_on * onset, rel=0.05)


def test_ra_onset_scales_with_ramp_speed():
    peaks = []
    for ramp in (20.0, 40.0, 80.0):
        cfg = quiet([f"stimulus.t_ramp={ramp}", "stimulus.t_pre=10", "stimulus.t_plateau=30"])
        sim = Simulator(cfg.pipeline, cfg.neurons)
        drive, _ = sim.drive(to_stimulus(cfg.stimulus))
        peaks.append(float(sim.split(drive)["ra"].max()))
    # ramps much longer than the filter: the velocity output is proportional to ramp speed
    assert peaks[0] / peaks[1] == pytest.approx(2.0, rel=0.15)
    assert peaks[1] / peaks[2] == pytest.approx(2.0, rel=0.15)


# -- stimuli ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_stimulus_type_gives_non_negative_pressure(name, tiny):
    sim = Simulator(tiny.pipeline, tiny.neurons)
    stim = REGISTRY[name]()
    spatial, temporal = stim.factors(sim.x, sim.y, sim.times)
    assert spatial.ndim == 3 and temporal.shape == (sim.steps, spatial.shape[0])
    assert float(spatial.min()) >= 0 and float(temporal.min()) >= 0
    assert float((temporal @ spatial.reshape(spatial.shape[0], -1)).max()) > 0


def test_step_and_trapezoid_share_the_indenter_but_not_the_ramp():
    x, y = Grid(40, 0.3).coords()
    t = torch.arange(0, 300, 0.5, dtype=torch.float64)
    step, trap = Step(t_pre=50, t_plateau=100), Trapezoid(t_pre=50, t_ramp=20, t_plateau=100)
    assert torch.equal(step.profile(x, y), trap.profile(x, y))
    assert float(step.waveform(t)[t == 50]) == 1.0
    assert float(trap.waveform(t)[t == 60]) == pytest.approx(0.5)
    # disk area close to pi r^2 (soft edge keeps it so)
    area = float(step.profile(x, y).sum()) * 0.3**2 / step.amplitude
    assert area == pytest.approx(math.pi * step.radius**2, rel=0.05)


def test_moving_gaussian_moves_at_its_velocity():
    x, y = Grid(80, 0.15).coords()
    t = torch.arange(0, 600, 0.5, dtype=torch.float64)
    stim = MovingGaussian(velocity=10.0, direction=90.0, start_x=0.0, start_y=-2.0, t_pre=100, t_ramp=10, t_plateau=480)
    spatial, temporal = stim.factors(x, y, t)
    for when in (150.0, 300.0, 450.0):
        frame = (temporal[t == when] @ spatial.reshape(spatial.shape[0], -1)).reshape(80, 80)
        cy = float((frame * y).sum() / frame.sum())
        cx = float((frame * x).sum() / frame.sum())
        assert cy == pytest.approx(-2.0 + 10.0 * (when - 100) / 1000.0, abs=0.02)
        assert cx == pytest.approx(0.0, abs=0.02)


# -- innervation -------------------------------------------------------------------------------


def test_receptive_fields_are_normalised_local_and_seeded():
    grid = Grid(40, 0.3)
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    pos = afferent_positions(50, grid.extent, 0.5, gen())
    assert pos.shape == (50, 2) and float(pos.abs().max()) <= grid.extent / 2
    w = innervation(pos, grid, 1.0, 0.3, gen())
    dense = w.to_dense()
    torch.testing.assert_close(dense.sum(1), torch.ones(50, dtype=torch.float64))
    x, y = grid.coords()
    d = torch.sqrt((x.reshape(-1)[None] - pos[:, :1]) ** 2 + (y.reshape(-1)[None] - pos[:, 1:]) ** 2)
    assert float(d[dense > 0].max()) <= 3 * 1.0 + grid.spacing  # nothing beyond the 3 sigma reach
    assert torch.equal(innervation(pos, grid, 1.0, 0.3, gen()).to_dense(), dense)


def test_population_counts_and_empty_population():
    cfg = load_config(TINY + ["neurons.sa2.count=0"])
    sim = Simulator(cfg.pipeline, cfg.neurons)
    res = sim.run([to_stimulus(cfg.stimulus)], [1])
    assert res.spikes["sa"].shape == (1, sim.steps, 16)
    assert res.spikes["ra"].shape == (1, sim.steps, 25)
    assert res.spikes["pc"].shape == (1, sim.steps, 4)
    assert res.spikes["sa2"].shape == (1, sim.steps, 0)


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_same_spikes_other_seed_other_spikes(tiny):
    sim = Simulator(tiny.pipeline, tiny.neurons)
    stim = to_stimulus(tiny.stimulus)
    a = sim.run([stim], [11]).spikes
    b = Simulator(tiny.pipeline, tiny.neurons).run([stim], [11]).spikes
    c = sim.run([stim], [12]).spikes
    assert all(torch.equal(a[p], b[p]) for p in a)
    assert any(not torch.equal(a[p], c[p]) for p in a)


def test_a_stimulus_gives_the_same_spikes_alone_or_in_any_batch(tiny):
    sim = Simulator(tiny.pipeline, tiny.neurons)
    base = to_stimulus(tiny.stimulus)
    stims = [dataclasses.replace(base, amplitude=a) for a in (20.0, 40.0, 60.0)]
    together = sim.run(stims, [1, 2, 3]).spikes
    for i, (s, seed) in enumerate(zip(stims, (1, 2, 3))):
        alone = sim.run([s], [seed]).spikes
        assert all(torch.equal(together[p][i], alone[p][0]) for p in alone)
    reversed_ = sim.run(stims[::-1], [3, 2, 1]).spikes
    assert all(torch.equal(together[p], reversed_[p].flip(0)) for p in together)


def test_a_batch_gives_each_stimulus_the_drive_it_gets_alone_bit_for_bit():
    """The batch's pooling and FFTs run in one call each: every stimulus type (separable or not)
    at every batch size and position must get exactly the numbers of its own call, on the
    default time base (MKL takes other paths for other sizes and threads)."""
    cfg = load_config([])
    sim = Simulator(cfg.pipeline, cfg.neurons)
    rng = np.random.default_rng(5)
    stims = []
    for _ in range(2):
        for name in sorted(REGISTRY):
            base = REGISTRY[name]()
            moved = float(rng.uniform(-2, 2))  # every type's position or phase, so no two are alike
            field = next(f for f in ("center_x", "start_x", "phase") if hasattr(base, f))
            stims.append(dataclasses.replace(base, **{field: moved}))
    alone = [sim.linear_drive(s) for s in stims]
    assert any(a[2] is not None for a in alone) and any(a[2] is None for a in alone)  # both kinds
    # a group of separable stimuli takes _courses (all columns at once): the same numbers as the
    # one-stimulus path of _assemble
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for s, got in zip(stims, alone):
            spatial, temporal = sim.factors(s)
            rows = torch.fft.irfft(sim.filters.spectrum(temporal)[None] * sim.transfers[:, None], n=sim.filters.nfft)
            rows = rows[..., : sim.steps].transpose(1, 2).to(sim.dtype).contiguous()
            want = sim._assemble(sim.pool(spatial.reshape(spatial.shape[0], -1)), rows, (spatial, temporal))
            for g, w in zip(got[:3], want[:3]):
                assert (g is None and w is None) or torch.equal(g, w)
    finally:
        torch.set_num_threads(threads)
    for size in (2, 3, 7, len(stims)):
        for start in range(0, len(stims) - size + 1, size):
            together = sim.linear_drives(stims[start : start + size])
            for got, want in zip(together, alone[start : start + size]):
                for g, w in zip(got[:3], want[:3]):
                    assert (g is None and w is None) or torch.equal(g, w)

def test_population_seed_changes_the_layout_not_the_noise_seed(tiny):
    a = Simulator(tiny.pipeline, tiny.neurons)
    cfg = load_config(TINY + ["pipeline.seed=43"])
    b = Simulator(cfg.pipeline, cfg.neurons)
    assert not torch.equal(a.populations[0].positions, b.populations[0].positions)
    assert torch.equal(a.noise([5]), b.noise([5]))


def test_a_new_stimulus_type_is_one_registered_dataclass():
    """What a user writes in one new file of sensoryforge/stimuli/: usable at once as stimulus=ring."""
    from dataclasses import dataclass

    from sensoryforge.core.params import param
    from sensoryforge.core.stimuli import register
    from sensoryforge.core.stimuli.base import RampAndHold

    @register("ring_test")
    @dataclass
    class Ring(RampAndHold):
        amplitude: float = param(20.0, "kPa", ">=0", "peak pressure on the ring")
        radius: float = param(1.5, "mm", ">0", "ring radius")
        width: float = param(0.3, "mm", ">0", "ring width (sd)")

        def profile(self, x, y):
            r = torch.sqrt(x**2 + y**2)
            return self.amplitude * torch.exp(-((r - self.radius) ** 2) / (2 * self.width**2))

    try:
        cfg = load_config([*TINY, "stimulus=ring_test", "stimulus.radius=2.0"])
        stim = to_stimulus(cfg.stimulus)
        assert isinstance(stim, Ring) and stim.radius == 2.0 and stim.type_name == "ring_test"
        res = Simulator(cfg.pipeline, cfg.neurons).run([stim], [0])
        assert sum(int(v.sum()) for v in res.spikes.values()) > 0
        from sensoryforge.core.params import ConfigError

        with pytest.raises(ConfigError, match="stimulus.width=-1.0: must be > 0 mm"):
            to_stimulus(load_config([*TINY, "stimulus=ring_test", "stimulus.width=-1"]).stimulus)
    finally:  # unregistered everywhere it went, so later tests in this worker do not list it
        from hydra.core.config_store import ConfigStore

        from sensoryforge import config

        REGISTRY.pop("ring_test")
        ConfigStore.instance().repo.get("stimulus", {}).pop("ring_test.yaml", None)
        config._STORED.pop("stimulus/ring_test", None)


@pytest.mark.parametrize("order", [2, 3])
def test_higher_order_dynamic_paths_have_the_analytic_gain(order):
    """(tau d/dt)^n of n + 1 low-passes: gain (w tau)^n / (1 + (w tau)^2)^((n + 1) / 2), peak at
    w = sqrt(n) / tau, n x 6 dB per octave below it (the Pacinian path is n = 3)."""
    dt, tau, n = 0.01, 1.0, 40000
    h = velocity_response(tau, dt, n, order)
    assert abs(h.sum()) < 1e-9
    t = np.arange(n) * dt
    for f_hz in (10.0, 1000 * math.sqrt(order) / (2 * math.pi * tau), 600.0):
        w = 2 * math.pi * f_hz / 1000.0
        gain = abs(np.sum(h * np.exp(-1j * w * t)))
        assert gain == pytest.approx((w * tau) ** order / (1 + (w * tau) ** 2) ** ((order + 1) / 2), rel=0.03)
    assert np.array_equal(velocity_response(5.0, 0.5, 100, 1), velocity_response(5.0, 0.5, 100))


def test_saturation_bounds_the_drive_by_tanh():
    stim = ["stimulus=step", "stimulus.amplitude=2000", "stimulus.t_pre=20"]
    lin = quiet(stim)
    sat = quiet(stim + ["neurons.sa.saturation=3"])
    d_lin, _ = Simulator(lin.pipeline, lin.neurons).drive(to_stimulus(lin.stimulus))
    sim = Simulator(sat.pipeline, sat.neurons)
    d_sat, _ = sim.drive(to_stimulus(sat.stimulus))
    sa = slice(0, sim.populations[0].count)
    assert float(d_lin[:, sa].max()) > 10
    assert float(d_sat[:, sa].max()) <= 3.0
    torch.testing.assert_close(d_sat[:, sa], 3 * torch.tanh(d_lin[:, sa] / 3))
    torch.testing.assert_close(d_sat[:, sa.stop:], d_lin[:, sa.stop:])  # only SA saturates


def test_a_restricted_simulator_gives_the_same_afferents_the_same_spikes():
    """The battery simulates only the afferents it reads: they fire exactly as in the whole patch,
    noise included (fields, per-neuron parameters and each afferent's noise numbers are kept)."""
    cfg = load_config(TINY)
    sim = Simulator(cfg.pipeline, cfg.neurons)
    stim = to_stimulus(load_config(TINY + ["stimulus.amplitude=60"]).stimulus)
    whole = sim.run([stim], [0]).spikes
    busiest = whole["sa"][0].sum(0).argsort(descending=True)
    keep = {"sa": [int(busiest[2]), int(busiest[0]), 5], "pc": [1]}  # any order, silent ones too
    sub = sim.restricted(keep)
    assert [p.count for p in sub.populations] == [3, 0, 1, 0]
    part = sub.run([stim], [0]).spikes
    assert whole["sa"][..., keep["sa"]].sum() > 0
    for pop, idx in keep.items():
        assert torch.equal(part[pop], whole[pop][..., idx])
