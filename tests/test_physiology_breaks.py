"""Each check of the physiology battery fails on a model broken in that one respect (and only
the seed check fails when the noise ignores its seed). A module of its own so that the test
workers share the battery runs (pytest-xdist hands out whole modules)."""

import pytest
import torch

from sensoryforge import physiology
from sensoryforge.config import load_config


def swapped_filters() -> list[str]:
    """Overrides that give SA the RA filter block and RA the SA one."""
    n = load_config().neurons
    out = []
    for to, frm in (("sa", "ra"), ("ra", "sa")):
        out += [f"neurons.{to}.filter.{k}={v}" for k, v in n[frm].filter.items()]
    return out


# (check, what is broken, overrides): each must make that check FAIL
BREAKS = [
    (1, "SA and RA filters swapped (SA silent in the hold)", swapped_filters()),
    (2, "SA and RA filters swapped (RA fires through the hold)", swapped_filters()),
    (3, "SA without velocity path and with a slow static path",
     ["neurons.sa.filter.w_on=0", "neurons.sa.filter.tau_static=200"]),
    (3, "RA made sustained (static path, no velocity)",
     ["neurons.ra.filter.w_static=1", "neurons.ra.filter.w_on=0", "neurons.ra.filter.w_off=0"]),
    (4, "RA velocity filter 40x too slow (tuned to ~1 Hz)", ["neurons.ra.filter.tau_dynamic=100"]),
    (4, "PC with RA's velocity path (tuned to ~60 Hz)", ["neurons.pc.filter.order=1", "neurons.pc.filter.tau_dynamic=2.5"]),
    (4, "RA that cannot fire fast (strong slow recovery: steep roll-off)",
     ["neurons.ra.izhikevich.a=0.02", "neurons.ra.izhikevich.d=50"]),
    (5, "RA without its fast recovery current (plain regular spiking)",
     ["neurons.ra.izhikevich.a=0.02", "neurons.ra.izhikevich.d=8"]),
    (6, "input noise far too strong", ["neurons.sa.noise_std=1.0", "neurons.ra.noise_std=1.0"]),
    (6, "RA noise off: identical RA trials", ["neurons.ra.noise_std=0", "neurons.ra.noise_scaling=0"]),
    (7, "SA and RA fields far too small", ["neurons.sa.rf_sigma=0.5", "neurons.ra.rf_sigma=0.5"]),
    (7, "SA2 fields as small as SA fields", ["neurons.sa2.rf_sigma=1.4", "neurons.sa2.innervation=0.3"]),
    (7, "PC fields as small as SA fields", ["neurons.pc.rf_sigma=1.4", "neurons.pc.innervation=0.3"]),
    (8, "SA gain 5x too low (no graded population response)", ["neurons.sa.gain=0.05"]),
    (9, "no refractory period", [f"neurons.{p}.refractory=0" for p in ("sa", "ra", "pc", "sa2")]),
    (10, "SA count 3x too high (SA:RA 3:2)", ["neurons.sa.count=300"]),
    (10, "SA2 missing", ["neurons.sa2.count=0"]),
    (10, "PC missing", ["neurons.pc.count=0"]),
    (11, "PC 100x less sensitive (not the most sensitive at 128-400 Hz)", ["neurons.pc.gain=25"]),
    (11, "RA 10x less sensitive (not the most sensitive at 16-32 Hz)", ["neurons.ra.gain=0.7"]),
    (12, "PC full-wave rectified (two spikes per cycle)", ["neurons.pc.filter.w_off=1"]),
    (12, "PC 30x less sensitive (RA respond first at 250 Hz)", ["neurons.pc.gain=80"]),
    (13, "SA without a dynamic path (unlocked at 40-80 Hz)", ["neurons.sa.filter.w_on=0"]),
    (14, "SA noise that does not grow with the drive (clock-like SA1)", ["neurons.sa.noise_scaling=0"]),
    (14, "SA2 noisier than SA1 (irregular SA2)", ["neurons.sa2.noise_scaling=0.6", "neurons.sa2.noise_tau=10"]),
    (15, "no saturation (SA rate climbs to the refractory ceiling)", ["neurons.sa.saturation=0"]),
    (15, "SA without spike-frequency adaptation", ["neurons.sa.izhikevich.d=0"]),
    (16, "PC fields as small as RA fields (recruited locally)", ["neurons.pc.rf_sigma=1.4", "neurons.pc.innervation=0.3"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("number, why, overrides", BREAKS, ids=[f"{n}-{w}" for n, w, _ in BREAKS])
def test_a_broken_model_fails_the_check(number, why, overrides):
    (c,) = physiology.battery(load_config(overrides), [number])
    assert not c.passed, f"{why}:\n" + "\n".join(physiology.report_lines(c))
    assert c.loss > 0


@pytest.mark.slow
def test_noise_that_ignores_its_seed_fails_check_6(monkeypatch):
    """Seed handling broken: the trial noise comes from global random state."""

    from sensoryforge.core import noise

    def unseeded(seed):  # the Philox key drawn from global random state, not from the seed
        return tuple(int(x) for x in torch.randint(0, 2**32, (2,)))

    monkeypatch.setattr(noise, "key_words", unseeded)
    # the global state fixed, so that the keys drawn do not depend on what ran before in this
    # process: about 1 in 40 key sets also moves the SA first-spike jitter out of its range
    with torch.random.fork_rng():
        torch.manual_seed(0)
        (c,) = physiology.battery(load_config(), [6])
    assert not c.passed
    bad = [k.label for k in c.criteria if not k.passed]
    assert bad == ["trials reproduced bit-identically from their seed"], bad
