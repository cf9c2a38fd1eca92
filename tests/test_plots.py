"""Plot labels (units from the schemas), the choice of plot from the swept keys, readable PNGs."""

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from sensoryforge.core.outcome_names import resolve_measures
from sensoryforge.core.params import ConfigError
from sensoryforge.dataset import plots
from sensoryforge.dataset.plots import (
    SMALL_N,
    choose_keys,
    flat_limits,
    key_label,
    measure_label,
    primary_measures,
    sweep_plots,
)


@pytest.mark.parametrize(
    "key, types, label",
    [
        ("stimulus.amplitude", ["gaussian"], "amplitude (kPa)"),
        ("stimulus.sigma", ["gaussian"], "sigma (mm)"),
        ("stimulus.frequency", ["gabor"], "frequency (cycles/mm)"),
        ("stimulus.velocity", ["moving_gaussian"], "velocity (mm/s)"),
        ("stimulus.orientation", ["gabor"], "orientation (deg)"),
        ("neurons.sa.gain", [], "neurons.sa.gain (1/kPa)"),
        ("neurons.ra.filter.tau_dynamic", [], "neurons.ra.filter.tau_dynamic (ms)"),
        ("neurons.sa2.count", [], "neurons.sa2.count (afferents)"),
        ("neurons.pc.filter.tau_dynamic", [], "neurons.pc.filter.tau_dynamic (ms)"),
        ("pipeline.dt", [], "pipeline.dt (ms)"),
        ("outcome.bin", [], "outcome.bin (ms)"),
        ("neurons.sa.innervation", [], "neurons.sa.innervation"),  # dimensionless: no unit
        ("stimulus", [], "stimulus type"),
        ("no.such.key", [], "no.such.key"),
    ],
)
def test_axis_labels_carry_the_schema_units(key, types, label):
    assert key_label(key, types) == label


def test_measure_labels_and_the_primary_measures():
    assert measure_label("sa_rate_mean") == "SA rate, mean (Hz)"
    assert measure_label("sa2_rate_auc") == "SA2 rate, auc (spikes/afferent)"
    assert measure_label("ra_count_time_to_10") == "RA count, time to 10 (ms)"
    assert measure_label("ra_count_final") == "RA count, final (spikes)"
    assert measure_label("pc_rate_peak") == "PC rate, peak (Hz)"
    cols = [f"{p}_{k}_{m}" for p in ("sa", "ra", "pc", "sa2") for k in ("rate", "count") for m in ("mean", "peak")]
    cfg = {"outcome": {"primary": "ra_count_peak", "series": ["sa_rate", "sa_count", "ra_count", "pc_count", "sa2_count"]}}
    assert primary_measures(cols, cfg) == ["ra_count_peak", "sa_count_peak", "pc_count_peak", "sa2_count_peak"]
    default = {"outcome": {"primary": "sa_rate_mean", "series": ["sa_rate", "ra_rate", "pc_rate", "sa2_rate", "sa_count"]}}
    assert primary_measures(cols, default) == ["sa_rate_mean", "ra_rate_mean", "pc_rate_mean", "sa2_rate_mean"]


def grid(**axes) -> pd.DataFrame:
    """A raw table over the product of `axes`, 2 repetitions, with a known measure."""
    keys = list(axes)
    idx = pd.MultiIndex.from_product([*axes.values(), [0, 1]], names=[*keys, "repetition"])
    df = idx.to_frame(index=False)
    df["type"] = "gaussian"
    df["seed"] = 0
    df["sa_rate_mean"] = sum(df[k] for k in keys) + df["repetition"]
    df["ra_rate_mean"] = 2.0
    return df


def test_the_two_keys_with_most_values_are_plotted_and_the_rest_averaged():
    df = grid(**{"stimulus.amplitude": [10, 20, 30, 40], "stimulus.sigma": [0.5, 1.0], "stimulus.center_x": [0, 1, 2]})
    keys = ["stimulus.amplitude", "stimulus.sigma", "stimulus.center_x"]
    assert choose_keys(df, keys, None) == (["stimulus.amplitude", "stimulus.center_x"], ["stimulus.sigma"])
    assert choose_keys(df, keys, ["stimulus.sigma"]) == (["stimulus.sigma"], ["stimulus.amplitude", "stimulus.center_x"])
    with pytest.raises(ConfigError, match="--keys stimulus.nope: not a swept key here"):
        choose_keys(df, keys, ["stimulus.nope"])


def read_png(path):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert img[..., :3].std() > 0.05  # not blank
    return img


def test_one_key_gives_sweep_png_two_give_heatmap_png_three_say_what_was_averaged(tmp_path):
    meta = {"batch_id": "t", "config": {"outcome": {"primary": "sa_rate_mean", "series": ["sa_rate", "ra_rate"]}}}
    one = grid(**{"stimulus.amplitude": [10, 20, 30]})
    files, notes = sweep_plots(tmp_path, one, ["stimulus.amplitude", "repetition"], meta)
    assert files == ["sweep.png"] and notes == []
    read_png(tmp_path / "sweep.png")

    two = grid(**{"stimulus.amplitude": [10, 20, 30], "stimulus.sigma": [0.5, 1.0]})
    (tmp_path / "2").mkdir()
    files, notes = sweep_plots(tmp_path / "2", two, ["stimulus.amplitude", "stimulus.sigma"], meta)
    assert files == ["heatmap.png"] and not (tmp_path / "2" / "sweep.png").exists()
    read_png(tmp_path / "2" / "heatmap.png")

    three = grid(**{"stimulus.amplitude": [10, 20, 30], "stimulus.sigma": [0.5, 1.0], "stimulus.t_plateau": [100, 200, 300, 400]})
    (tmp_path / "3").mkdir()
    files, notes = sweep_plots(tmp_path / "3", three, ["stimulus.amplitude", "stimulus.sigma", "stimulus.t_plateau"], meta)
    assert files == ["heatmap.png"]
    assert notes == [
        "plots: 3 swept keys; plotting stimulus.amplitude x stimulus.t_plateau (most values) and averaging "
        "over stimulus.sigma; choose others with --keys"
    ]
    with pytest.raises(ConfigError, match="--measures sa_rate_nope: unknown measure; computed: mean of sa_rate, ra_rate"):
        sweep_plots(tmp_path, one, ["stimulus.amplitude"], meta, measures=["sa_rate_nope"])
    assert not list(tmp_path.rglob(".*tmp*"))  # atomic writes leave nothing behind


def test_heatmap_cells_hold_the_mean_over_repetitions(tmp_path, monkeypatch):
    """The value written in each cell is the mean of its stimuli (checked on the text artists)."""
    import matplotlib.pyplot as plt

    shown = {}

    def keep(fig, path):
        shown[path.name] = [t.get_text() for ax in fig.axes for t in ax.texts]
        plt.close(fig)

    monkeypatch.setattr(plots, "save", keep)
    df = grid(**{"stimulus.amplitude": [10, 20], "stimulus.sigma": [0.5, 1.0]})
    meta = {"config": {"outcome": {"primary": "sa_rate_mean", "series": ["sa_rate"]}}}
    sweep_plots(tmp_path, df, ["stimulus.amplitude", "stimulus.sigma"], meta)
    # rows: sigma 0.5, 1.0; columns: amplitude 10, 20; value = amplitude + sigma + mean(0, 1)
    expected = [f"{a + s + 0.5:.3g}" for s in (0.5, 1.0) for a in (10, 20)]
    assert shown["heatmap.png"] == expected
    assert np.isclose(float(expected[0]), 11.0)


# -- what a mean cannot show ----------------------------------------------------------------------

COLS = [f"{p}_{k}_{m}" for p in ("sa", "ra", "pc", "sa2") for k in ("rate", "count") for m in ("mean", "auc", "time_to_10")]


def test_short_measure_names_take_every_series_that_has_them():
    assert resolve_measures(["sa_rate_mean"], COLS) == (["sa_rate_mean"], [])
    got, notes = resolve_measures(["time_to_10", "rate_auc"], COLS)
    assert got == [f"{p}_{k}_time_to_10" for p in ("sa", "ra", "pc", "sa2") for k in ("rate", "count")] + [
        "sa_rate_auc", "ra_rate_auc", "pc_rate_auc", "sa2_rate_auc"]
    assert notes[1] == "--measures rate_auc: sa_rate_auc, ra_rate_auc, pc_rate_auc, sa2_rate_auc"
    assert resolve_measures(["sa2_auc", "sa2_rate_auc"], COLS)[0] == ["sa2_rate_auc", "sa2_count_auc"]  # once each
    assert resolve_measures(["sa_auc"], COLS)[0] == ["sa_rate_auc", "sa_count_auc"]  # sa2 is not sa
    with pytest.raises(ConfigError) as e:
        resolve_measures(["time_to_50", "auc"], COLS)
    assert str(e.value).startswith(
        "--measures time_to_50: unknown measure; computed: mean, auc, time_to_10 of sa_rate, sa_count, ra_rate, "
        "ra_count, pc_rate, pc_count, sa2_rate, sa2_count (a full name")
    assert "\n" not in str(e.value)


def figures(monkeypatch):
    """The figures sweep_plots would save, by file name, open for inspection."""
    import matplotlib.pyplot as plt

    kept = {}
    monkeypatch.setattr(plots, "save", lambda fig, path: kept.__setitem__(path.name, fig))
    yield kept
    for fig in kept.values():
        plt.close(fig)


@pytest.fixture
def kept(monkeypatch):
    yield from figures(monkeypatch)


def uneven() -> pd.DataFrame:
    """amplitude 10..40 x sigma 0.5, 1.0, 5 repetitions, but (40, 1.0) has one stimulus and
    (10, 0.5) two; sa_rate_mean = amplitude, +1000 in the one-stimulus cell (noise that would
    stretch the scale); ra_rate_mean all 0 (no spikes); sa_count_time_to_10 never reached at
    amplitude 10, reached by 3 of 5 at 20."""
    rows = []
    for a in (10, 20, 30, 40):
        for s_ in (0.5, 1.0):
            reps = {(40, 1.0): 1, (10, 0.5): 2}.get((a, s_), 5)
            for r in range(reps):
                lat = np.nan if a == 10 or (a == 20 and r < 2) else 60.0 - a + r
                rows.append({"stimulus.amplitude": a, "stimulus.sigma": s_, "repetition": r, "seed": 0,
                             "type": "gaussian", "sa_rate_mean": a + r + (1000 if reps == 1 else 0),
                             "ra_rate_mean": 0.0, "sa_count_time_to_10": lat})
    return pd.DataFrame(rows)


def panels(fig):
    """measure title -> (its heatmap axes, its image)."""
    return {ax.get_title(): (ax, ax.images[0]) for ax in fig.axes if ax.images}


def test_heatmap_marks_small_n_never_reached_and_scales_flat_panels_from_zero(tmp_path, kept):
    files, notes = sweep_plots(tmp_path, uneven(), ["stimulus.amplitude", "stimulus.sigma"], {"config": {}},
                               measures=["sa_rate_mean", "ra_rate_mean", "time_to_10"])
    assert files == ["heatmap.png"] and notes == []
    fig = kept["heatmap.png"]
    got = panels(fig)
    assert list(got) == ["SA rate, mean", "RA rate, mean", "SA count, time to 10"]  # every one asked for

    # small n: the n = 1 cell (1040) and the n = 2 cell are framed and kept out of the colour scale
    ax, im = got["SA rate, mean"]
    assert im.get_clim() == (12.0, 42.0)  # the cells with n >= 3: mean 10 + 2 at (10, 1.0) ... 40 + 2
    frames = [c for c in ax.collections if c.get_linestyle()[0][1] is not None]  # the dashed ones
    assert len(frames) == 1 and len(frames[0].get_paths()) == 2
    texts = [t.get_text() for t in ax.texts]
    assert "1.04e+03\nn=1" in texts and "10.5\nn=2" in texts

    # all zero: 0..1, not -0.1..0.1
    _, im = got["RA rate, mean"]
    assert im.get_clim() == (0.0, 1.0) and tuple(im.colorbar.ax.get_ylim()) == (0.0, 1.0)

    # time_to_10: never reached at amplitude 10 (grey, hatched, "never"), 3 of 5 at 20
    ax, im = got["SA count, time to 10"]
    hatched = [c for c in ax.collections if c.get_hatch() == "//"]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == 2
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("never") == 2
    assert sum(t.endswith("\n3/5") for t in texts) == 2
    assert np.ma.getmaskarray(im.get_array())[:, 0].all()  # no colour under the hatch

    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [f"n < {SMALL_N} values: not in the colour scale",
                      "never reached (by none of the cell's stimuli)", "k/n: reached in k of n stimuli"]
    assert fig.legends[0].legend_handles[1].get_hatch() == "//"


def test_heatmap_of_single_values_everywhere_marks_nothing(tmp_path, kept):
    df = grid(**{"stimulus.amplitude": [10, 20, 30], "stimulus.sigma": [0.5, 1.0]})
    df = df[df["repetition"] == 0]  # n = 1 in every cell: the title says so, nothing to set apart
    sweep_plots(tmp_path, df, ["stimulus.amplitude", "stimulus.sigma"], {"config": {}}, measures=["sa_rate_mean"])
    fig = kept["heatmap.png"]
    ax, im = panels(fig)["SA rate, mean"]
    assert im.get_clim() == (10.5, 31.0) and not ax.collections and not fig.legends
    assert "(n = 1 stimuli)" in fig._suptitle.get_text()


def test_cells_without_stimuli_say_so(tmp_path, kept):
    df = grid(**{"stimulus.amplitude": [10, 20], "stimulus.sigma": [0.5, 1.0]})
    df = df[~((df["stimulus.amplitude"] == 20) & (df["stimulus.sigma"] == 1.0))]
    sweep_plots(tmp_path, df, ["stimulus.amplitude", "stimulus.sigma"], {"config": {}}, measures=["sa_rate_mean"])
    fig = kept["heatmap.png"]
    ax, _ = panels(fig)["SA rate, mean"]
    assert [t.get_text() for t in ax.texts][-1] == "n/a" and ax.texts[-1].get_color() != "white"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["n/a: no stimulus"]


def test_sweep_plot_marks_small_n_never_reached_and_flat_panels(tmp_path, kept):
    df = uneven()
    df = df[df["stimulus.sigma"] == 1.0].drop(columns="stimulus.sigma")
    files, notes = sweep_plots(tmp_path, df, ["stimulus.amplitude"], {"config": {}},
                               measures=["rate_mean", "time_to_10"])
    assert files == ["sweep.png"] and notes == ["plots: --measures rate_mean: sa_rate_mean, ra_rate_mean"]
    sa, ra, lat = kept["sweep.png"].axes[:3]
    assert [ax.get_ylabel() for ax in (sa, ra, lat)] == [
        "SA rate, mean (Hz)", "RA rate, mean (Hz)", "SA count, time to 10 (ms)"]
    assert [t.get_text() for t in sa.get_legend().get_texts()] == [f"n < {SMALL_N}"]
    hollow = next(line for line in sa.lines if line.get_label() == f"n < {SMALL_N}")
    assert list(hollow.get_xdata()) == [40.0] and hollow.get_markerfacecolor() == "white"
    lo, hi = ra.get_ylim()
    assert lo < 0 < 1 < hi and hi - lo == pytest.approx(1.1)  # 0..1 and a margin, not -0.055..0.055
    assert [t.get_text() for t in lat.get_legend().get_texts()] == [f"n < {SMALL_N}", "never reached",
                                                                    "k/n: reached in k of n"]
    never = next(line for line in lat.lines if line.get_label() == "never reached")
    assert list(never.get_xdata()) == [10.0]
    assert [t.get_text() for t in lat.texts] == ["3/5"]


def test_flat_limits_are_zero_based():
    assert flat_limits(0.0) == (0.0, 1.0)
    assert flat_limits(float("nan")) == (0.0, 1.0)
    assert flat_limits(0.25) == (0.0, 1.0)
    assert flat_limits(7.0) == (0.0, 7.0)
    assert flat_limits(-3.0) == (-3.0, 0.0)


def test_the_consensus_plot_says_measures_are_not_for_it(tmp_path):
    df = grid(**{"stimulus.amplitude": [10]})
    pd.DataFrame({"time_ms": [0.0, 1.0], "sa_rate_mean": [0.0, 1.0], "sa_rate_std": [0.0, 0.1], "n": [2, 2]}).to_csv(
        tmp_path / "consensus.csv", index=False)
    files, notes = sweep_plots(tmp_path, df, ["stimulus.amplitude"], {"config": {}}, measures=["sa_rate_mean"])
    assert files == ["consensus.png"]
    assert notes == ["plots: nothing swept besides seeds; consensus.png shows the consensus over time "
                     "(of the rate series; --measures is for sweep and heatmap plots)"]
