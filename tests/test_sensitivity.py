"""experiment=sensitivity: SALib's sample becomes the sweep's points exactly, the analysis maps the
results back to it and ranks the parameters (known rankings of synthetic measures), failures and
undefined measures are left out and said, bad sections are one line before anything runs, and a
tiny screen runs end to end and resumes without computing anything."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from sensoryforge.config import load_config
from sensoryforge.core.params import ConfigError
from sensoryforge.sweep import sensitivity as sens

from conftest import TINY

KEYS = ["x.a", "x.b", "x.c"]


def section(method="morris", **kw) -> dict:
    return {"method": method, "parameters": {k: [0.0, 1.0] for k in KEYS}, "trajectories": 10, "levels": 4,
            "samples": 64, "seed": 0, "resamples": 200, **kw}


def parsed(blocks: list[dict]) -> list[dict]:
    """The blocks' values as Hydra parses their override lines (what the jobs get)."""
    parser = OverridesParser.create()
    return [{o.key_or_group: o.value() for o in parser.parse_overrides([f"{k}={v}" for k, v in b.items()])}
            for b in blocks]


def fake_sweep(folder, spec, f, per=1, drop=(), nan=None):
    """A sweep folder as the sweeper leaves it: the plan's count, sensitivity.json and raw.csv with
    measures f(a, b, c) -> {name: value} for every stimulus (minus `drop`)."""
    points = parsed(sens.blocks_of(spec))
    rows = []
    for p, point in enumerate(points):
        for r in range(per):
            i = p * per + r
            if i in drop:
                continue
            values = [point[k] for k in KEYS]
            row = {"stimulus_id": f"stim_{i:04d}", "source": "x", "type": "gaussian", **point, "seed": 0,
                   "repetition": r, **f(*values, r)}
            if nan is not None and nan(*values):
                row["sa_rate_time_to_10"] = math.nan
            rows.append(row)
    folder.mkdir(exist_ok=True)
    (folder / "sweep_plan.json").write_text(json.dumps({"n_stimuli": len(points) * per}))
    pd.DataFrame(rows).to_csv(folder / "raw.csv", index=False)
    sens.keep_spec(folder, spec)


def linear(a, b, c, r=0):
    return {"sa_rate_mean": 10 * a + 1 * b + 0 * c, "ra_rate_mean": 5.0, "sa_rate_time_to_10": 3 * a}


def table(folder) -> pd.DataFrame:
    return pd.read_csv(folder / sens.CSV_FILE).set_index(["measure", "parameter"])


def test_the_sample_reaches_the_points_exactly_in_its_order():
    spec = sens.spec_of(section())
    x = sens.sample(spec)
    assert x.shape == (10 * 4, 3) and spec.n_points == 40
    points = parsed(sens.blocks_of(spec, x))
    assert np.array_equal(np.array([[p[k] for k in KEYS] for p in points]), x)  # bit for bit, row order
    assert np.array_equal(sens.sample(sens.spec_of(section())), x)  # the same seed, the same sample
    assert not np.array_equal(sens.sample(sens.spec_of(section(seed=1))), x)
    assert all(b["repetition"] == "range(3)" for b in sens.blocks_of(sens.spec_of(section(repetitions=3))))


def test_morris_ranks_a_linear_measure_and_reports_constants_and_undefined(tmp_path):
    spec = sens.spec_of(section())
    fake_sweep(tmp_path, spec, linear, nan=lambda a, b, c: a == 0.0)
    lines, notes = sens.analyze(tmp_path)
    t = table(tmp_path)
    m = t.loc["sa_rate_mean"]
    assert m["rank"].to_dict() == {"x.a": 1, "x.b": 2, "x.c": 3}
    assert m.loc["x.a", "mu_star"] == pytest.approx(10) and m.loc["x.b", "mu_star"] == pytest.approx(1)
    assert m.loc["x.c", "mu_star"] == pytest.approx(0, abs=1e-12)
    assert m.loc["x.a", "sigma"] == pytest.approx(0, abs=1e-9)  # linear: no interaction
    assert (m["trajectories"] == 10).all()
    assert (t.loc["ra_rate_mean", ["mu_star", "mu_star_conf", "sigma", "mu"]] == 0).all().all()  # constant
    undefined = t.loc["sa_rate_time_to_10"]
    assert 0 <= undefined["trajectories"].iloc[0] < 10  # trajectories touching a = 0 are left out
    assert any("undefined (NaN)" in n and "sa_rate_time_to_10" in n for n in notes)
    assert len(t) == 3 * 3 and (tmp_path / sens.PNG_FILE).stat().st_size > 0
    assert "sa_rate_mean (mu_star): x.a 10 > x.b 1 > x.c 0" in lines[1]


def test_a_failed_stimulus_leaves_its_trajectory_out_and_says_so(tmp_path):
    spec = sens.spec_of(section())
    fake_sweep(tmp_path, spec, linear, drop={5})  # stim_0005: trajectory 1 (4 points each)
    _, notes = sens.analyze(tmp_path)
    assert notes[0].startswith("sensitivity: 1 of 10 trajectories incomplete") and "trajectories 1, counted from 0)" in notes[0]
    t = table(tmp_path)
    assert (t["trajectories"] == 9).all() and t.loc[("sa_rate_mean", "x.a"), "rank"] == 1


def test_repetitions_are_averaged_per_point(tmp_path):
    spec = sens.spec_of(section(repetitions=2))
    # the noise of repetition r adds r * c: averaged it is half c, a true effect of c
    fake_sweep(tmp_path, spec, lambda a, b, c, r: {"sa_rate_mean": 10 * a + b + r * c}, per=2)
    sens.analyze(tmp_path)
    assert table(tmp_path).loc[("sa_rate_mean", "x.c"), "mu_star"] == pytest.approx(0.5)


def test_results_of_another_sample_are_refused_in_one_line(tmp_path):
    spec = sens.spec_of(section())
    fake_sweep(tmp_path, spec, linear)
    sens.keep_spec(tmp_path, sens.spec_of(section(seed=3)))  # another sample than the rows hold
    with pytest.raises(sens.SensitivityError, match=r"stim_0000: x\.a=.* in raw.csv, the sample"):
        sens.analyze(tmp_path)
    sens.keep_spec(tmp_path, sens.spec_of(section(trajectories=7)))
    with pytest.raises(sens.SensitivityError, match="not a multiple of the sample's 28 points"):
        sens.analyze(tmp_path)


def test_sobol_first_order_and_total_indices_rank_a_linear_measure(tmp_path):
    spec = sens.spec_of(section("sobol", samples=256))
    assert spec.n_points == 256 * 5
    fake_sweep(tmp_path, spec, linear)
    sens.analyze(tmp_path)
    m = table(tmp_path).loc["sa_rate_mean"]
    assert m["rank"].to_dict() == {"x.a": 1, "x.b": 2, "x.c": 3}
    # variances 100/12 and 1/12: S1 = ST = 100/101 and 1/101, c nothing
    assert m.loc["x.a", "S1"] == pytest.approx(100 / 101, abs=0.05) and m.loc["x.a", "ST"] == pytest.approx(100 / 101, abs=0.05)
    assert m.loc["x.b", "ST"] == pytest.approx(1 / 101, abs=0.01) and m.loc["x.c", "ST"] == pytest.approx(0, abs=1e-9)
    assert (table(tmp_path).loc["ra_rate_mean", ["S1", "ST"]] == 0).all().all()


BAD = [
    ({"method": "fast"}, "sensitivity.method=fast: must be one of morris, sobol"),
    ({"parameters": {"x.a": [1.0, 0.5]}}, "sensitivity.parameters.x.a=[1.0, 0.5]: must be [low, high], finite numbers with low < high"),
    ({"parameters": {"x.a": [0.0, math.inf]}}, "sensitivity.parameters.x.a=[0.0, inf]: must be [low, high]"),
    ({"parameters": {"x.a": [0.0]}}, "sensitivity.parameters.x.a=[0.0]: must be [low, high]"),
    ({"parameters": {"seed": [0, 3]}}, "sensitivity.parameters.seed: not a parameter to screen"),
    ({"parameters": {"x.a": None}}, "sensitivity.parameters: no parameter to screen"),
    ({"levels": 3}, "sensitivity.levels=3: must be an even number >= 2"),
    ({"method": "sobol", "samples": 100}, "sensitivity.samples=100: must be a power of 2"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_sections_are_one_line(change, message):
    with pytest.raises(ConfigError) as e:
        sens.spec_of({**section(), **change})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_preset_composes_with_its_schema_and_a_dict_override_adds_or_drops():
    cfg = load_config(["experiment=sensitivity", "++sensitivity.parameters={stimulus.t_ramp:[10,200],neurons.ra.gain:null}"])
    spec = sens.spec_of(cfg.sensitivity)
    assert spec.keys[-1] == "stimulus.t_ramp" and "neurons.ra.gain" not in spec.keys and spec.n_points == 70
    with pytest.raises(ConfigError, match="sensitivity.trajectories=1: must be >= 2"):
        sens.spec_of(load_config(["experiment=sensitivity", "sensitivity.trajectories=1"]).sensitivity)
    assert load_config([]).sensitivity is None


# -- through the command line ------------------------------------------------------------------

# a small screen: three parameters (the preset's others left out), 2 trajectories = 8 points
SMALL = ["experiment=sensitivity", *TINY,
         "sensitivity.parameters={neurons.sa.rf_sigma:null,neurons.sa.noise_std:null,neurons.ra.gain:null}",
         "sensitivity.trajectories=2"]


CLI_BAD = [
    (["sensitivity.method=fast"], "sensitivity.method=fast: must be one of morris, sobol"),
    (["sensitivity.parameters={neurons.sa.gain:[0.5,0.1]}"], "sensitivity.parameters.neurons.sa.gain=[0.5, 0.1]: must be"),
    (["++sensitivity.parameters={neurons.sa.gainn:[0.1,0.5]}"],
     "sensitivity.parameters.neurons.sa.gainn=[0.1, 0.5]: "),
    (["++sensitivity.parameters={neurons.sa.count:[4,16]}"],
     "sensitivity.parameters.neurons.sa.count=[4, 16]: neurons.sa.count=4.0: must be an integer"),
    (["sensitivity.measures=[sa_rate_median]"], "sensitivity.measures sa_rate_median: unknown measure"),
    (["stimulus.amplitude=30"], "stimulus.amplitude: screened by sensitivity.parameters.stimulus.amplitude"),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", CLI_BAD, ids=[a[0] for a, _ in CLI_BAD])
def test_bad_screens_are_one_line_exit_2_and_write_nothing(cli, tmp_path, args, message):
    r = cli("-m", *SMALL, *args, "hydra.sweep.dir=sw")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("[")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "sw").exists()


@pytest.mark.slow
def test_dry_run_reports_the_points_and_writes_nothing(cli, tmp_path):
    r = cli("-m", *SMALL, "dry_run=true", "hydra.sweep.dir=sw")
    assert r.returncode == 0, r.stderr
    assert "stimuli: 8 (8 to run, 0 already finished)" in r.stdout
    assert "sensitivity: morris over 3 parameters (stimulus.amplitude, stimulus.sigma, neurons.sa.gain), " \
           "2 trajectories on 4 levels: 8 points (1 stimuli per point)" in r.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_tiny_screen_ranks_its_parameters_and_resumes_without_computing(cli, tmp_path):
    args = ["-m", *SMALL, "sensitivity.measures=[sa_rate_mean,ra_count_final]", "hydra.sweep.dir=sw"]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    sw = tmp_path / "sw"
    t = pd.read_csv(sw / sens.CSV_FILE)
    assert list(t.columns) == ["measure", "parameter", "mu_star", "mu_star_conf", "sigma", "mu", "rank", "trajectories"]
    assert len(t) == 2 * 3 and set(t["measure"]) == {"sa_rate_mean", "ra_count_final"}
    assert (t["trajectories"] == 2).all() and t["rank"].min() == 1
    ra = t[t["measure"] == "ra_count_final"].set_index("parameter")
    assert ra.loc["neurons.sa.gain", "mu_star"] == 0  # SA's gain cannot move RA
    log = r.stdout + r.stderr
    assert (sw / sens.PNG_FILE).stat().st_size > 0 and "sensitivity: morris over 3 parameters" in log
    first = (sw / sens.CSV_FILE).read_bytes()
    again = cli(*args)
    assert again.returncode == 0, again.stderr
    log = again.stdout + again.stderr
    assert "resume: 8 of 8 stimuli already finished" in log and "stimuli to run" not in log
    assert (sw / sens.CSV_FILE).read_bytes() == first
