"""`sensoryforge-aggregate A --compare B` on real sweeps (tiny config): a sweep against itself,
against the same sweep with another SA gain, against a one-point sweep, pooled when no point
matches; Welch, Cohen's d and Holm against hand computations."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sensoryforge.dataset import compare as compare_mod
from sensoryforge.dataset.compare import bootstrap_ci, holm, welch

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
    # RA, PC and SA2 are identical on both sides: nothing to resample, said per row and in the digest
    const = table[(table["std_a"] == 0) & (table["std_b"] == 0)]
    assert len(const) and const["diff_ci95_low"].isna().all()
    assert (const["diff_ci95_note"] == "no interval: both sides constant").all()
    assert "bootstrap 95% CI of diff: BCa, 400 resamples per test" in text
    assert f"  {len(const)} tests: no interval: both sides constant" in text and "(diff_ci95_note in compare.csv)" in text
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
    # short names: every population's measure, said first
    table, text = compare(sweeps, "A", "one", "--measures", "count_final,sa_rate_mean")
    assert list(table["measure"]) == ["sa_count_final", "ra_count_final", "pc_count_final", "sa2_count_final",
                                      "sa_rate_mean"]
    assert text.startswith("--measures count_final: sa_count_final, ra_count_final, pc_count_final, sa2_count_final\n")
    r = run_cli([str(sweeps / "A"), "--compare", str(sweeps / "one"), "--measures", "time_to_50"], sweeps,
                module="sensoryforge.cli.aggregate")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "--measures time_to_50: unknown measure; computed in both: mean, peak, final, auc, time_to_10 of" in r.stderr


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


def test_bootstrap_interval_is_scipys_bca_seeded_and_right():
    gen = np.random.default_rng(1)
    a, b = gen.normal(10.0, 2.0, 40), gen.normal(13.0, 2.0, 40)  # true difference 3
    first = bootstrap_ci(a, b, 2000, np.random.default_rng(7))
    assert first == bootstrap_ci(a, b, 2000, np.random.default_rng(7))  # the same seed, the same interval
    assert first != bootstrap_ci(a, b, 2000, np.random.default_rng(8))
    lo, hi, note = first
    assert note == "" and lo < 3.0 < hi and lo < b.mean() - a.mean() < hi
    ref = stats.bootstrap((a, b), lambda x, y, axis=-1: y.mean(axis) - x.mean(axis), n_resamples=2000,
                          vectorized=True, method="BCa", rng=np.random.default_rng(7)).confidence_interval
    assert (lo, hi) == (ref.low, ref.high)
    # normal data: close to Welch's t interval of the difference (the bootstrap's is a little narrower)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    dof = se**4 / ((a.var(ddof=1) / a.size) ** 2 / (a.size - 1) + (b.var(ddof=1) / b.size) ** 2 / (b.size - 1))
    half = stats.t.ppf(0.975, dof) * se
    mid = b.mean() - a.mean()
    assert lo == pytest.approx(mid - half, abs=0.15 * half) and hi == pytest.approx(mid + half, abs=0.15 * half)
    assert 0.8 < (hi - lo) / (2 * half) < 1.05


def test_bootstrap_degenerate_samples_give_nan_and_a_note_without_warnings(recwarn):
    rng = np.random.default_rng(0)
    cases = {
        "no interval: n < 2 on a side": (np.array([1.0]), np.array([2.0, 3.0])),
        "no interval: both sides constant": (np.array([2.0, 2.0, 2.0]), np.array([5.0, 5.0])),
    }
    for note, (a, b) in cases.items():
        lo, hi, got = bootstrap_ci(a, b, 500, rng)
        assert math.isnan(lo) and math.isnan(hi) and got == note
    # NaN (time_to_N never reached) is left out: two finite values on each side are enough
    lo, hi, note = bootstrap_ci(np.array([1.0, np.nan, 2.0]), np.array([4.0, 5.0, np.nan]), 500, rng)
    assert note == "" and lo <= 3.0 <= hi
    lo, hi, note = bootstrap_ci(np.array([1.0, np.nan]), np.array([4.0, 5.0]), 500, rng)
    assert math.isnan(lo) and note == "no interval: n < 2 on a side"
    # rounding noise is no spread (as in welch)
    lo, hi, note = bootstrap_ci(np.array([0.1 + 0.2, 0.3, 0.3]), np.array([0.3, 0.3]), 500, rng)
    assert math.isnan(lo) and note == "no interval: both sides constant"
    # one side constant, the other not: a real interval
    lo, hi, note = bootstrap_ci(np.array([1.0, 1.0, 1.0]), np.array([2.0, 3.0, 4.0]), 500, rng)
    assert note == "" and 1.0 <= lo <= 2.0 <= hi <= 3.0
    assert not recwarn.list


def test_bootstrap_falls_back_to_the_percentile_interval_where_bca_is_undefined(monkeypatch):
    real = stats.bootstrap

    def bca_fails(*args, **kw):
        res = real(*args, **kw)
        if kw.get("method") == "BCa":
            res.confidence_interval = type(res.confidence_interval)(math.nan, math.nan)
        return res

    monkeypatch.setattr(compare_mod.stats, "bootstrap", bca_fails)
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 6.0, 7.0])
    lo, hi, note = bootstrap_ci(a, b, 999, np.random.default_rng(3))
    assert note == "percentile interval: BCa undefined (ties)" and lo < 2.5 < hi
    dist = real((a, b), lambda x, y, axis=-1: y.mean(axis) - x.mean(axis), n_resamples=999, vectorized=True,
                method="percentile", rng=np.random.default_rng(3)).confidence_interval
    assert (lo, hi) == pytest.approx((dist.low, dist.high))
