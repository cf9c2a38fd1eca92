"""`sensoryforge-aggregate A --compare B` on real sweeps (tiny config): a sweep against itself,
against the same sweep with another SA gain, against a one-point sweep, pooled when no point
matches; Welch, Cohen's d and Holm against hand computations."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sensoryforge.dataset.compare import holm, welch

from conftest import TINY, run_cli

NOISY = [f"neurons.{p}.noise_std=0.4" for p in ("sa", "ra", "pc", "sa2")]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    runs = {
        "A": ["stimulus.amplitude=30,50", "repetition=range(6)"],
        "B": ["stimulus.amplitude=30,50", "repetition=range(6)", "neurons.sa.gain=0.6"],
        "one": ["stimulus.amplitude=50", "repetition=range(6)", "neurons.sa.gain=0.6"],
        "other": ["stimulus.amplitude=45", "repetition=range(4)"],
    }
    for name, args in runs.items():
        r = run_cli(["-m", *TINY, *NOISY, *args, f"hydra.sweep.dir={name}"], root)
        assert r.returncode == 0, r.stderr
    return root


def compare(root, a, b, *extra):
    out = root / f"cmp_{a}_{b}"
    r = run_cli([str(root / a), "--compare", str(root / b), "-o", str(out), *extra], root,
                module="sensoryforge.cli.aggregate")
    assert r.returncode == 0, r.stderr
    return pd.read_csv(out / "compare.csv"), r.stdout


@pytest.mark.slow
def test_a_sweep_compared_with_itself_finds_nothing(sweeps):
    table, text = compare(sweeps, "A", "A")
    assert set(table["mode"]) == {"matched"} and len(table) == 2 * 40  # 2 points x 40 measures (4 populations x 2 series x 5)
    tested = table[table["p"].notna()]
    assert len(tested) > 40 and (tested["p"] == 1.0).all() and (tested["diff"] == 0).all()
    assert not table["significant"].any()
    assert "0 significant" in text and "matched on type, stimulus.amplitude: 2 points in both" in text


@pytest.mark.slow
def test_another_sa_gain_gives_p_values_and_effect_sizes(sweeps):
    table, text = compare(sweeps, "A", "B", "--bootstrap", "400")
    raw_a = pd.read_csv(sweeps / "A" / "raw.csv")
    raw_b = pd.read_csv(sweeps / "B" / "raw.csv")
    # the gain acts on SA only; RA, PC and SA2 see the same drive and noise: identical spikes
    ra = table[table["measure"].str.startswith(("ra_", "pc_", "sa2_"))]
    assert ra["diff"].notna().sum() > 20 and (ra["diff"].dropna() == 0).all()
    assert (ra["p"].dropna() == 1.0).all() and not ra["significant"].any()
    row = table[(table["measure"] == "sa_count_final") & (table["stimulus.amplitude"] == 50)].iloc[0]
    a = raw_a.loc[raw_a["stimulus.amplitude"] == 50, "sa_count_final"].to_numpy(float)
    b = raw_b.loc[raw_b["stimulus.amplitude"] == 50, "sa_count_final"].to_numpy(float)
    assert a.std() > 0 and b.mean() > a.mean()
    assert row["n_a"] == row["n_b"] == 6
    assert row["p"] == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
    sp = math.sqrt((5 * a.var(ddof=1) + 5 * b.var(ddof=1)) / 10)
    assert row["cohen_d"] == pytest.approx((b.mean() - a.mean()) / sp, rel=1e-9) and row["cohen_d"] > 1
    assert row["diff_ci95_low"] <= row["diff"] <= row["diff_ci95_high"]
    assert row["significant"] and row["p_holm"] < 0.05
    np.testing.assert_allclose(table["p_holm"], holm(table["p"].to_numpy()), equal_nan=True)
    assert "sa_count_final" in text and "significant" in text


@pytest.mark.slow
def test_a_one_point_sweep_matches_that_point_of_a_grid(sweeps):
    table, text = compare(sweeps, "A", "one")
    assert set(table["stimulus.amplitude"]) == {50.0}
    assert "1 point in both (1 of A's and 0 of B's have no match, left out)" in text
    # one matched point: the printed table has one line per measure, with both means
    line = next(x for x in text.splitlines() if x.startswith("sa_count_final"))
    row = table[table["measure"] == "sa_count_final"].iloc[0]
    assert f"{row['mean_a']:.4g}" in line and f"{row['mean_b']:.4g}" in line


@pytest.mark.slow
def test_no_common_point_pools_every_stimulus(sweeps):
    table, text = compare(sweeps, "A", "other")
    assert set(table["mode"]) == {"pooled"} and len(table) == 40 and "pooled" in text
    assert table["n_b"].max() == 4
    row = table[table["measure"] == "sa_rate_mean"].iloc[0]
    assert row["n_a"] == 12 and row["n_b"] == 4


def test_holm_and_degenerate_tests_by_hand():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm(np.array([0.2, np.nan, 0.01])), [0.2, np.nan, 0.02], equal_nan=True)
    same = welch(np.array([2.0, 2.0, 2.0]), np.array([2.0, 2.0]))
    assert (same["p"], same["cohen_d"]) == (1.0, 0.0)
    certain = welch(np.array([1.0, 1.0]), np.array([3.0, 3.0, 3.0]))
    assert certain["p"] == 0.0 and certain["cohen_d"] == math.inf and certain["diff"] == 2.0
    rounding = welch(np.array([0.1 + 0.2, 0.3, 0.3]), np.array([0.3, 0.3]))
    assert rounding["p"] == 1.0
    few = welch(np.array([1.0]), np.array([1.0, 2.0]))
    assert math.isnan(few["p"]) and few["n_a"] == 1
    nan = welch(np.array([1.0, np.nan, 3.0]), np.array([2.0, 4.0, 6.0]))
    assert nan["n_a"] == 2 and nan["p"] == pytest.approx(stats.ttest_ind([2, 4, 6], [1, 3], equal_var=False).pvalue)
