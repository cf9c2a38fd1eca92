"""The half-space skin stage and the displacement stimuli against Sneddon's flat-punch solution."""

import math

import pytest
import torch

from sensoryforge.core.grid import Grid
from sensoryforge.core.params import ConfigError
from sensoryforge.core.skin import effective_modulus, punch_force, punch_pressure
from sensoryforge.core.stimuli import REGISTRY
from sensoryforge.core.stimuli.indentation import Indentation, Vibrotactile

E_STAR = 200.0 / (1 - 0.5**2)  # the defaults: E = 200 kPa, nu = 0.5


def total_force(p, grid):
    return float(p.sum()) * grid.spacing**2


def test_registered():
    assert REGISTRY["indentation"] is Indentation and REGISTRY["vibrotactile"] is Vibrotactile


def test_force_formula():
    assert effective_modulus() == pytest.approx(E_STAR)
    assert punch_force(0.5, 1.0) == pytest.approx(2 * E_STAR * 0.5 * 1.0)
    assert punch_force(1.0, 1.0, modulus=100.0, poisson=0.0) == pytest.approx(200.0)


@pytest.mark.parametrize("grid", [Grid(80, 0.15), Grid(41, 0.07)])
@pytest.mark.parametrize("centre", [(0.0, 0.0), (0.23, -0.41)])
def test_total_force_on_any_grid(grid, centre):
    x, y = grid.coords()
    for radius, depth in [(0.5, 0.5), (1.0, 1.0), (0.3, 0.2)]:
        f = total_force(punch_pressure(x, y, *centre, radius, depth), grid)
        assert f == pytest.approx(2 * E_STAR * radius * depth, rel=1e-9)


def test_probe_smaller_than_a_cell_keeps_its_force():
    grid = Grid(20, 0.3)
    x, y = grid.coords()
    p = punch_pressure(x, y, 0.01, 0.02, 0.05, 1.0)
    assert int((p > 0).sum()) == 1
    assert total_force(p, grid) == pytest.approx(punch_force(0.05, 1.0), rel=1e-9)


def test_probe_off_the_patch_puts_only_its_share_there():
    grid = Grid(40, 0.1)  # patch edge at x = 2 mm
    x, y = grid.coords()
    f = total_force(punch_pressure(x, y, 2.0, 0.0, 0.8, 1.0), grid)
    assert 0.4 < f / punch_force(0.8, 1.0) < 0.6


def test_linear_in_depth_and_radius():
    grid = Grid(80, 0.1)
    x, y = grid.coords()
    p1 = punch_pressure(x, y, 0.0, 0.0, 1.0, 0.4)
    assert torch.allclose(punch_pressure(x, y, 0.0, 0.0, 1.0, 1.2), 3 * p1, rtol=1e-12, atol=0)
    assert torch.count_nonzero(punch_pressure(x, y, 0.0, 0.0, 1.0, 0.0)) == 0
    f = [total_force(punch_pressure(x, y, 0.0, 0.0, a, 0.5), grid) for a in (0.5, 1.0, 2.0)]
    assert f[1] / f[0] == pytest.approx(2.0, rel=1e-9) and f[2] / f[0] == pytest.approx(
        4.0, rel=1e-9
    )


def test_pressure_profile_matches_sneddon():
    grid = Grid(200, 0.02)  # radius 1 mm = 50 cells
    x, y = grid.coords()
    radius, depth = 1.0, 1.0
    p = punch_pressure(x, y, 0.0, 0.0, radius, depth)
    r = torch.hypot(x, y)
    inside = r < radius
    assert torch.count_nonzero(p[~inside]) == 0 and bool((p[inside] > 0).all())
    force = 2 * E_STAR * radius * depth
    centre = p[r < 0.05].mean()
    assert float(centre) == pytest.approx(force / (2 * math.pi * radius**2), rel=0.02)
    mean = float(p[inside].mean())
    assert mean == pytest.approx(2 * E_STAR * depth / (math.pi * radius), rel=0.02)
    assert mean == pytest.approx(169.8, abs=2.0)  # the docstring's figure: 2 E* delta / (pi a)
    # p(r) = F / (2 pi a sqrt(a^2 - r^2)) at mid-radius, and it rises towards the edge
    mid = (r - 0.5).abs() < 0.011
    assert float(p[mid].mean()) == pytest.approx(
        force / (2 * math.pi * radius * math.sqrt(0.75)), rel=0.02
    )
    assert float(p[(r > 0.9) & inside].min()) > float(p[mid].max())


def test_indentation_follows_the_envelope():
    grid = Grid(30, 0.1)
    x, y = grid.coords()
    t = torch.arange(0, 1000, 1.0, dtype=torch.float64)
    stim = Indentation(depth=0.8, radius=0.6, t_pre=100.0, t_ramp=50.0, t_plateau=500.0)
    spatial, temporal = stim.factors(x, y, t)
    assert torch.equal(spatial[0], punch_pressure(x, y, 0.0, 0.0, 0.6, 0.8))
    assert float(temporal[:100].abs().max()) == 0 and float(temporal[150:650].min()) == 1.0


def _plateau(stim, t):
    return (t >= stim.t_pre + stim.t_ramp) & (t < stim.t_pre + stim.t_ramp + stim.t_plateau)


def test_vibrotactile_peak_to_peak_is_twice_the_amplitude():
    grid = Grid(30, 0.1)
    x, y = grid.coords()
    t = torch.arange(0, 1000, 0.25, dtype=torch.float64)
    stim = Vibrotactile(amplitude=80.0, frequency=50.0, preload=0.3, radius=0.5)
    spatial, temporal = stim.factors(x, y, t)
    assert bool((spatial >= 0).all()) and bool((temporal >= 0).all())
    per_mm = punch_pressure(x, y, 0.0, 0.0, 0.5, 1.0)
    assert torch.equal(spatial[0], per_mm)
    hold = temporal[_plateau(stim, t), 0]
    assert float(hold.max() - hold.min()) == pytest.approx(2 * 80.0 / 1000, rel=1e-6)
    assert float(hold.mean()) == pytest.approx(0.3, rel=1e-3)
    pressure = hold[:, None] * per_mm.flatten()[None]  # kPa on every receptor over the hold
    swing = pressure.max(0).values - pressure.min(0).values
    assert torch.allclose(swing, 2 * 80.0 / 1000 * per_mm.flatten(), rtol=1e-6, atol=1e-9)


def test_vibrotactile_clips_when_the_probe_leaves_the_skin():
    t = torch.arange(0, 1000, 0.25, dtype=torch.float64)
    stim = Vibrotactile(amplitude=200.0, frequency=20.0, preload=0.1)
    hold = stim.waveform(t)[_plateau(stim, t)]
    assert float(hold.min()) == 0.0 and float(hold.max()) == pytest.approx(0.3, rel=1e-6)
    assert 0.25 < float((hold == 0).double().mean()) < 0.45  # asin(0.5): a third of each cycle
    assert float(Vibrotactile(preload=0.0).waveform(t).min()) == 0.0


def test_vibrotactile_refuses_past_a_quarter_nyquist():
    Vibrotactile(frequency=125.0).check(dt=1.0, duration=200.0)
    with pytest.raises(
        ConfigError, match=r"stimulus.frequency=300.0: must be <= 125 Hz at pipeline.dt=1.0 ms"
    ):
        Vibrotactile(frequency=300.0).check(dt=1.0, duration=200.0)


def test_field_checks():
    from sensoryforge.core.params import check_fields

    with pytest.raises(ConfigError, match=r"^stimulus.radius=-1.0: must be > 0 mm$"):
        check_fields(Indentation(radius=-1.0), "stimulus")
    with pytest.raises(ConfigError, match=r"^stimulus.poisson=0.7: must be between 0 and 0.5$"):
        check_fields(Vibrotactile(poisson=0.7), "stimulus")


@pytest.fixture(scope="module")
def simulator():
    from sensoryforge.core.schema import PipelineConfig
    from sensoryforge.core.simulator import Simulator

    return Simulator(PipelineConfig(grid_size=40, spacing=0.3, dt=1.0, duration=200.0))


def test_simulator_runs_both(simulator):
    pressed, vib = simulator.simulate(
        [Indentation(depth=1.0), Vibrotactile(amplitude=100.0, frequency=40.0)]
    )
    assert pressed.spikes["sa"].sum() > 0  # counts are left to the neuron tests (being retuned)
    assert all(s.shape[0] == 200 for s in vib.spikes.values())
