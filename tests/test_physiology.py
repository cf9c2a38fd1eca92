"""The physiology battery (sensoryforge/physiology): the default config passes every check, each
check fails when the model is broken on purpose, the command line, and calibration (the task's
validation objective, and a tiny Optuna calibration that improves a mis-set start)."""

import csv

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir

from sensoryforge import physiology
from sensoryforge.config import CONF_DIR, load_config

from conftest import TINY, run_cli


@pytest.fixture(scope="module")
def default_results():
    """The whole battery on the default config, once for the module (~30 s on 2 cores)."""
    return {c.number: c for c in physiology.battery(load_config())}


@pytest.mark.slow
@pytest.mark.parametrize("number", sorted(physiology.CHECKS))
def test_default_config_passes_the_check(default_results, number):
    c = default_results[number]
    assert c.passed, "\n".join(physiology.report_lines(c))
    assert c.criteria and all(k.loss == 0 for k in c.criteria)


@pytest.mark.slow
def test_default_validation_loss_is_zero(default_results):
    assert sum(c.loss for c in default_results.values()) == 0.0


def test_criterion_loss_grows_with_the_distance_from_the_range():
    inside = physiology.Criterion("x", 0.5, lo=0.0, hi=1.0)
    assert inside.passed and inside.loss == 0
    near, far = (physiology.Criterion("x", v, lo=0.9, scale=0.1) for v in (0.85, 0.5))
    assert 0 < near.loss < far.loss
    logd = physiology.Criterion("x", 0.2, hi=0.05, scale=0.3, log=True)
    assert logd.loss == pytest.approx(np.log10(0.2 / 0.05) / 0.3)
    assert physiology.Criterion("x", float("nan"), lo=1).loss == physiology.MISSING_LOSS
    assert not physiology.Criterion("x", float("nan"), lo=1).passed


def test_run_battery_writes_csv_and_png_from_a_plain_dict_config(tmp_path):
    """`sensoryforge-aggregate --validate` hands over a dataset's stored config (a plain dict)."""
    from omegaconf import OmegaConf

    stored = OmegaConf.to_container(load_config(), resolve=True)
    stored["stimulus"] = {"type": "gaussian", **stored["stimulus"]}
    assert physiology.run_battery(stored, tmp_path / "v", checks=[8, 10], quiet=True) is True
    rows = list(csv.DictReader(open(tmp_path / "v" / "validation.csv")))
    assert {r["check"] for r in rows} == {"8", "10"}
    assert all(r["passed"] == "True" for r in rows)
    assert (tmp_path / "v" / "validation.png").stat().st_size > 10_000
    bad = dict(stored, neurons={**stored["neurons"], "sa": {**stored["neurons"]["sa"], "count": 300}})
    assert physiology.run_battery(OmegaConf.create(bad), tmp_path / "w", checks=[10], quiet=True) is False


@pytest.mark.slow
def test_cli_prints_pass_fail_and_exits_by_the_result(tmp_path):
    ok = run_cli(["--checks", "8,10", "-o", str(tmp_path / "ok")], tmp_path, module="sensoryforge.cli.validate")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "[PASS]  8." in ok.stdout and "[PASS] 10." in ok.stdout
    assert "Vega-Bermudez & Johnson 1999" in ok.stdout and "expected" in ok.stdout
    assert (tmp_path / "ok" / "validation.csv").exists() and (tmp_path / "ok" / "validation.png").exists()

    bad = run_cli(["neurons.sa.count=300", "--checks", "10", "-o", str(tmp_path / "bad")], tmp_path,
                  module="sensoryforge.cli.validate")
    assert bad.returncode == 1
    assert "[FAIL] 10." in bad.stdout and "SA density: 208" in bad.stdout

    default_out = run_cli(["--checks", "10"], tmp_path, module="sensoryforge.cli.validate")
    assert default_out.returncode == 0
    assert len(list((tmp_path / "validation").glob("*/validation.csv"))) == 1


@pytest.mark.parametrize("args, message", [
    (["neurons.sa.gainn=1"], "neurons.sa.gainn"),
    (["pipeline.dt=-1"], "pipeline.dt=-1.0: must be > 0 ms"),
    (["--checks", "17"], "unknown check"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    r = run_cli([*args, "-o", str(tmp_path / "v")], tmp_path, module="sensoryforge.cli.validate")
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "v").exists()


def test_task_returns_the_validation_loss_with_objective_validation(tmp_path):
    r = run_cli(["objective=validation", "validation_checks=[10]", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "validation loss 0.0000: 1/1 checks passed" in r.stdout
    assert (tmp_path / "run" / "validation.csv").exists()
    r = run_cli(["objective=validation", "validation_checks=[99]", f"hydra.run.dir={tmp_path / 'x'}"], tmp_path)
    assert r.returncode != 0 and "unknown check" in r.stderr


CAL = ["pipeline=fast", *TINY, "validation_checks=[2,8]"]


@pytest.mark.slow
def test_a_tiny_calibration_improves_the_mis_set_start(tmp_path):
    """experiment=calibrate with Optuna: 4 trials on a tiny config beat the deliberately mis-set
    starting point on checks 2 and 8."""
    start = sum(c.loss for c in physiology.objective_results(load_config(["experiment=calibrate", *CAL])))
    assert start > 1.0  # the start is mis-set on purpose
    sweep = tmp_path / "cal"
    r = run_cli(["-m", "experiment=calibrate", *CAL, "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}"],
                tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    best = yaml.safe_load(open(sweep / "optimization_results.yaml"))
    assert best["best_value"] < start
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        searched = compose("config", ["experiment=calibrate"], return_hydra_config=True).hydra.sweeper.params
    assert set(best["best_params"]) == set(searched) and len(searched) >= 3
    assert len(list(sweep.glob("*/validation.csv"))) == 4
    # the report recomputes the start from the sweep's command line and compares the trials
    report = physiology.calibration_report(sweep, quiet=True)
    assert report["start_loss"] == pytest.approx(start)
    assert report["best"]["loss"] == pytest.approx(best["best_value"])
    assert (sweep / "calibration.png").exists() and (sweep / "calibration.csv").exists()


def test_entrained_reads_spikes_per_cycle_and_vector_strength():
    from sensoryforge.physiology.experiments import entrained

    dt, f = 0.25, 100.0  # 10 ms cycles = 40 steps
    locked = np.zeros(4000, bool)
    locked[np.arange(8, 4000, 40)] = True  # one spike per cycle, always at the same phase
    per, vs = entrained(locked, f, 0.0, dt)
    assert per == pytest.approx(1.0) and vs == pytest.approx(1.0)
    twice = locked.copy()
    twice[np.arange(28, 4000, 40)] = True  # a second spike half a cycle later cancels the first
    per, vs = entrained(twice, f, 0.0, dt)
    assert per == pytest.approx(2.0) and vs < 1e-6
    rng = np.random.default_rng(0)
    unrelated = rng.random(4000) < 0.02  # Poisson-like firing, no phase preference
    assert entrained(unrelated, f, 0.0, dt)[1] < 0.2
    assert np.isnan(entrained(np.zeros(4000, bool), f, 0.0, dt)[1])
    # from t0 on: spikes before it are not counted
    per, _ = entrained(locked, f, 500.0, dt)
    assert per == pytest.approx(1.0)
