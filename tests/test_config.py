"""Every config composes and runs; bad input stops with one clear line and writes nothing."""

from pathlib import Path

import pytest
import torch

from sensoryforge.config import CONF_DIR, check, load_config, to_stimulus
from sensoryforge.core.params import ConfigError
from sensoryforge.core.simulator import Simulator
from sensoryforge.core.stimuli import REGISTRY

from conftest import TINY


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


CASES = (
    [("pipeline", o) for o in group_options("pipeline")]
    + [("neurons", o) for o in group_options("neurons")]
    + [("outcome", o) for o in group_options("outcome")]
    + [("experiment", o) for o in group_options("experiment")]
    + [("debug", o) for o in group_options("debug")]
    + [("stimulus", o) for o in sorted(REGISTRY)]
)


@pytest.mark.parametrize("group, option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_option_of_every_group_composes_and_simulates(group, option):
    cfg = load_config([f"{group}={option}", *TINY, "pipeline.duration=60"])
    check(cfg)
    sim = Simulator(cfg.pipeline, cfg.neurons)
    res = sim.run([to_stimulus(cfg.stimulus)], [0])
    counts = {p: cfg.neurons[p].count for p in ("sa", "ra", "pc", "sa2")}
    for pop, n in counts.items():
        assert res.spikes[pop].shape == (1, sim.steps, n)
        assert res.spikes[pop].dtype == torch.bool


def test_neuron_presets_select_their_model():
    for option, model in (("default", "izhikevich"), ("lif", "lif"), ("adex", "adex")):
        cfg = load_config([f"neurons={option}"])
        assert {cfg.neurons[p].model for p in ("sa", "ra", "pc", "sa2")} == {model}


@pytest.mark.parametrize(
    "override, message",
    [
        ("stimulus=nosuch", "stimulus=nosuch: unknown stimulus option; allowed: gabor, gaussian"),
        ("stimulus.sigma=-1", "stimulus.sigma=-1.0: must be > 0 mm"),
        pytest.param("pipeline.grid_size=0", "pipeline.grid_size=0: must be >= 1", marks=pytest.mark.slow),
        ("stimulus.sigmaa=1", "stimulus.sigmaa: unknown key (did you mean 'sigma'?); allowed keys: amplitude"),
        ("pipeline.dt=fast", "pipeline.dt=fast: must be a number"),
        pytest.param("pipeline.device=tpu", "pipeline.device=tpu: must be one of cpu, cuda, mps, auto", marks=pytest.mark.slow),
        pytest.param("neurons.ra.model=hh", "neurons.ra.model=hh: must be one of izhikevich, lif, adex", marks=pytest.mark.slow),
        pytest.param("neurons.sa.count=-3", "neurons.sa.count=-3: must be >= 0", marks=pytest.mark.slow),
        pytest.param("pipeline.duration=0", "pipeline.duration=0.0: must be > 0 ms", marks=pytest.mark.slow),
        pytest.param("outcome.measures=[mean,median]", "outcome.measures: unknown measure 'median'", marks=pytest.mark.slow),
    ],
)
def test_bad_input_gives_one_line_and_no_output(cli, tmp_path, override, message):
    r = cli(override)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"sensoryforge: error: {lines[0].split('error: ', 1)[1]}"]
    assert message in lines[0]
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no outputs/ folder, no result files


def test_sweep_values_are_all_checked_before_anything_runs(cli, tmp_path):
    r = cli("-m", "stimulus.sigma=0.5,-1", "hydra.sweep.dir=sweep", *TINY)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == "sensoryforge: error: stim_0001: stimulus.sigma=-1.0: must be > 0 mm"
    assert not (tmp_path / "sweep").exists()


def test_check_rejects_values_the_schema_types_allow():
    cfg = load_config(["stimulus=vibration", "stimulus.frequency=600"])
    with pytest.raises(ConfigError, match=r"stimulus.frequency=600.0: must be <= 500 Hz at pipeline.dt=0.25 ms"):
        check(cfg)
    with pytest.raises(ConfigError, match="outcome.primary=ra_rate_median"):
        check(load_config(["outcome.primary=ra_rate_median"]))


def test_units_are_documented_on_every_numeric_field():
    import dataclasses

    from sensoryforge.core.schema import FilterParams, PipelineConfig, PopulationConfig

    for cls in (PipelineConfig, PopulationConfig, FilterParams, *REGISTRY.values()):
        for f in dataclasses.fields(cls):
            nested = f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())
            assert nested or f.metadata.get("doc"), f"{cls.__name__}.{f.name} has no doc"
    assert {f.name: f.metadata["unit"] for f in dataclasses.fields(REGISTRY["gaussian"])}["amplitude"] == "kPa"


def test_conf_dir_is_the_repository_conf():
    assert (CONF_DIR / "config.yaml").is_file()
    assert Path(CONF_DIR).name == "conf"
