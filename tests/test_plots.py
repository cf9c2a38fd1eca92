"""Plot labels (units from the schemas), the choice of plot from the swept keys, readable PNGs."""

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from sensoryforge.core.params import ConfigError
from sensoryforge.dataset.plots import (
    choose_keys,
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
    with pytest.raises(ConfigError, match="--measures sa_rate_nope: unknown"):
        sweep_plots(tmp_path, one, ["stimulus.amplitude"], meta, measures=["sa_rate_nope"])
    assert not list(tmp_path.rglob(".*tmp*"))  # atomic writes leave nothing behind


def test_heatmap_cells_hold_the_mean_over_repetitions(tmp_path, monkeypatch):
    """The value written in each cell is the mean of its stimuli (checked on the text artists)."""
    import matplotlib.pyplot as plt

    from sensoryforge.dataset import plots

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
