"""The aggregator on real Hydra multiruns (tiny config): dataset layout, arrays equal to the job
folders, tables against hand computations, plots, several and copied folders, mixed batches with
intermediates, errors, --validate."""

import json
import math
import shutil
import sys
import types

import h5py
import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import DictConfig

from sensoryforge.cli.aggregate import main
from sensoryforge.core.response import decode
from sensoryforge.dataset.aggregate import aggregate

from conftest import TINY, run_cli

pytestmark = pytest.mark.slow  # every test here runs real sweeps through the command line

COUNTS = {"sa": 16, "ra": 25, "pc": 4, "sa2": 4}
T = 200  # pipeline=fast: 200 ms at dt 1 ms
NOISY = [f"neurons.{p}.noise_std=0.4" for p in ("sa", "ra", "pc", "sa2")]
GRID = ["stimulus.amplitude=20,40", "stimulus.sigma=0.5,1.0", "repetition=range(3)"]  # 12 stimuli
T_975_DF2 = 4.302652729911275  # t distribution, 97.5% quantile, 2 degrees of freedom


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real multirun: 2 x 2 points x 3 repetitions in 3 job folders."""
    root = tmp_path_factory.mktemp("agg")
    r = run_cli(["-m", *TINY, *NOISY, *GRID, "hydra.sweep.dir=grid", "hydra.sweeper.chunk_size=5"], root)
    assert r.returncode == 0, r.stderr
    return root / "grid"


def job_spikes(folder):
    """stimulus id -> population -> [T, N] bool, read straight from the job folders."""
    out = {}
    for jf in sorted(folder.glob("*/job.json")):
        job = json.loads(jf.read_text())
        with np.load(jf.parent / "spikes.npz") as z:
            for s in job["stimuli"]:
                out[s["id"]] = {p: decode(z[f"{s['id']}/{p}"], job["steps"], n) for p, n in job["counts"].items()}
    return out


def test_hdf5_has_the_design_layout_and_the_job_folders_spikes(sweep):
    spikes = job_spikes(sweep)
    assert len(spikes) == 12 and len(list(sweep.glob("stim_*/job.json"))) == 3
    with h5py.File(sweep / "results.h5", "r") as f:
        assert set(f) == {"metadata", "grid", "stimuli", "responses", "stimuli_table"}
        m = f["metadata"].attrs
        assert m["batch_id"] == "grid" and m["num_stimuli"] == 12
        cfg = json.loads(m["config"])
        assert cfg["neurons"]["sa"]["count"] == 16 and cfg["pipeline"]["dt"] == 1.0
        assert json.loads(m["failed_stimuli"]) == []
        assert json.loads(m["swept"]) == ["stimulus.amplitude", "stimulus.sigma", "repetition"]
        assert f["grid"].attrs["size"] == 40 and f["grid"].attrs["spacing"] == 0.3
        ids = [f"stim_{i:04d}" for i in range(12)]
        assert sorted(f["stimuli"]) == ids and sorted(f["responses"]) == ids
        a = f["stimuli/stim_0007"].attrs
        # Hydra's order: the last key varies fastest -> stim_0007 = amplitude 40, sigma 0.5, rep 1
        assert (a["type"], a["amplitude"], a["sigma"], a["repetition"], a["seed"]) == ("gaussian", 40.0, 0.5, 1, 0)
        assert a["t_plateau"] == 700.0 and a["source"] == "grid/stim_0007"
        for sid in ids:
            g = f["responses"][sid]
            assert set(g) == {"sa_spikes", "ra_spikes", "pc_spikes", "sa2_spikes"}  # no intermediates asked
            for pop, n in COUNTS.items():
                d = g[f"{pop}_spikes"]
                assert d.shape == (T, n) and d.dtype == bool
                assert d.compression == "gzip"
                np.testing.assert_array_equal(d[()], spikes[sid][pop])
        # the columnar twin of stimuli/: a row per stimulus, a column per attribute
        table = f["stimuli_table"][()]
        assert [x.decode() for x in table["stimulus_id"]] == ids
        for row in table:
            attrs = f["stimuli"][row["stimulus_id"].decode()].attrs
            assert set(table.dtype.names) == {"stimulus_id", *attrs}
            for k in attrs:
                v = row[k].decode() if isinstance(row[k], bytes) else row[k]
                assert v == attrs[k] and np.asarray(v).dtype.kind == np.asarray(attrs[k]).dtype.kind, k
    assert sum(s["sa"].sum() + s["ra"].sum() for s in spikes.values()) > 0  # not a vacuous comparison


def test_ragged_layout_holds_the_same_spikes(sweep, tmp_path):
    from sensoryforge.dataset.torch_datasets import H5SpikeDataset

    spikes = job_spikes(sweep)
    meta = aggregate([sweep], tmp_path, fmt="hdf5", plots=False, layout="ragged")
    assert meta["num_stimuli"] == 12
    with h5py.File(tmp_path / "results.h5", "r") as f, h5py.File(sweep / "results.h5", "r") as g:
        assert set(f) == {"metadata", "grid", "spikes", "stimuli_table"} and f["metadata"].attrs["layout"] == "ragged"
        np.testing.assert_array_equal(f["stimuli_table"][()], g["stimuli_table"][()])
        ids = [x.decode() for x in f["stimuli_table"]["stimulus_id"]]
        steps = f["spikes/steps"][()]
        assert list(steps) == [T] * 12
        for pop, n in COUNTS.items():
            index, offsets = f[f"spikes/{pop}/index"][()], f[f"spikes/{pop}/offsets"][()]
            assert offsets[0] == 0 and offsets[-1] == index.size and list(f[f"spikes/{pop}/afferents"]) == [n] * 12
            for i, sid in enumerate(ids):
                np.testing.assert_array_equal(decode(index[offsets[i]:offsets[i + 1]], T, n), spikes[sid][pop])
    # the lazy dataset reads either layout alike
    a, b = H5SpikeDataset(sweep / "results.h5"), H5SpikeDataset(tmp_path / "results.h5")
    assert a.ids == b.ids and a.params == b.params and a.label_keys == b.label_keys
    for i in range(len(a)):
        for pop in COUNTS:
            assert torch.equal(a[i]["spikes"][pop], b[i]["spikes"][pop])


def test_results_pt_loads_with_plain_torch_load_and_matches(sweep):
    data = torch.load(sweep / "results.pt")
    meta = data["metadata"]
    assert meta["batch_id"] == "grid" and meta["num_stimuli"] == 12 and meta["failed_stimuli"] == []
    assert meta["config"]["neurons"]["ra"]["count"] == 25 and meta["counts"] == COUNTS
    spikes = job_spikes(sweep)
    assert [r["stimulus_config"]["stimulus_id"] for r in data["results"]] == [f"stim_{i:04d}" for i in range(12)]
    for r in data["results"]:
        sid = r["stimulus_config"]["stimulus_id"]
        for pop, n in COUNTS.items():
            x = r[f"{pop}_spikes"]
            assert x.layout == torch.sparse_coo and x.dtype == torch.bool and tuple(x.shape) == (T, n)
            np.testing.assert_array_equal(x.to_dense().numpy(), spikes[sid][pop])
    c = data["results"][7]["stimulus_config"]
    assert {k: c[k] for k in ("type", "amplitude", "sigma", "repetition", "seed")} == {
        "type": "gaussian", "amplitude": 40.0, "sigma": 0.5, "repetition": 1, "seed": 0}


def test_index_metadata_and_no_half_written_files(sweep):
    index = json.loads((sweep / "stimulus_index.json").read_text())
    assert list(index) == [f"stim_{i:04d}" for i in range(12)]
    assert index["stim_0011"] == {
        "type": "gaussian", "t_pre": 100.0, "t_ramp": 50.0, "t_plateau": 700.0, "amplitude": 40.0, "sigma": 1.0,
        "center_x": 0.0, "center_y": 0.0, "seed": 0, "repetition": 2,
        "noise_seed": index["stim_0011"]["noise_seed"], "source": "grid/stim_0011",
    }
    meta = json.loads((sweep / "batch_metadata.json").read_text())
    assert meta["num_stimuli"] == 12 and meta["num_failed"] == 0 and meta["steps"] == T and meta["dt"] == 1.0
    assert set(meta["files"]) >= {"results.h5", "results.pt", "stimulus_index.json", "raw.csv", "summary.csv",
                                  "consensus.csv", "heatmap.png", "batch_metadata.json"}
    assert all((sweep / f).exists() for f in meta["files"])
    assert not list(sweep.glob(".*tmp*"))


def test_summary_rows_n_and_t_intervals_match_a_hand_computation(sweep):
    raw = pd.read_csv(sweep / "raw.csv")
    summary = pd.read_csv(sweep / "summary.csv")
    assert len(raw) == 12 and list(raw["stimulus_id"]) == [f"stim_{i:04d}" for i in range(12)]
    assert len(summary) == 4
    assert list(summary.columns[:3]) == ["stimulus.amplitude", "stimulus.sigma", "n_stimuli"]
    spread = 0
    for _, row in summary.iterrows():
        amp, sig = row["stimulus.amplitude"], row["stimulus.sigma"]
        g = raw[(raw["stimulus.amplitude"] == amp) & (raw["stimulus.sigma"] == sig)]
        assert row["n_stimuli"] == 3 and sorted(g["repetition"]) == [0, 1, 2]
        for m in ("sa_rate_mean", "ra_rate_peak", "sa_count_final", "ra_rate_auc"):
            x = [float(v) for v in g[m]]
            mean = sum(x) / 3
            sd = math.sqrt(sum((v - mean) ** 2 for v in x) / 2)
            half = T_975_DF2 * sd / math.sqrt(3)
            assert row[f"{m}_n"] == 3
            assert row[f"{m}_mean"] == pytest.approx(mean, abs=1e-12)
            assert row[f"{m}_std"] == pytest.approx(sd, abs=1e-12)
            assert row[f"{m}_ci95_low"] == pytest.approx(mean - half, abs=1e-9)
            assert row[f"{m}_ci95_high"] == pytest.approx(mean + half, abs=1e-9)
            spread += sd > 0
    assert spread > 0  # the noise makes repetitions differ: the CI check is not only 0 == 0
    # time_to_10 is undefined (NaN) for stimuli that never reach 10: n counts the defined ones
    for _, row in summary.iterrows():
        g = raw[(raw["stimulus.amplitude"] == row["stimulus.amplitude"]) & (raw["stimulus.sigma"] == row["stimulus.sigma"])]
        assert row["sa_count_time_to_10_n"] == g["sa_count_time_to_10"].notna().sum()


def test_consensus_is_mean_and_std_of_the_series_over_repetitions(sweep):
    cons = pd.read_csv(sweep / "consensus.csv")
    bins = T // 10
    assert len(cons) == 4 * bins and set(cons["n"]) == {3}
    series = {}
    for jf in sorted(sweep.glob("*/job.json")):
        with np.load(jf.parent / "series.npz") as z:
            times = z["times"]
            series.update({k: z[k] for k in z.files if k != "times"})
    # point (40, 1.0) = stim_0009..0011
    part = cons[(cons["stimulus.amplitude"] == 40) & (cons["stimulus.sigma"] == 1.0)]
    np.testing.assert_allclose(part["time_ms"], times)
    for s in ("sa_rate", "ra_rate", "pc_rate", "sa2_count"):
        x = np.stack([series[f"stim_{i:04d}/{s}"] for i in (9, 10, 11)])
        np.testing.assert_allclose(part[f"{s}_mean"], x.mean(0), atol=1e-9)
        np.testing.assert_allclose(part[f"{s}_std"], x.std(0, ddof=1), atol=1e-9)


def test_two_swept_keys_give_a_readable_heatmap(sweep):
    assert (sweep / "heatmap.png").exists() and not (sweep / "sweep.png").exists()
    img = mpimg.imread(sweep / "heatmap.png")
    assert img.shape[0] > 250 and img.shape[1] > 600 and img[..., :3].std() > 0.05


def test_cli_plot_one_stimulus_and_errors_are_one_line(sweep, tmp_path, capsys):
    out = tmp_path / "plots"
    r = run_cli([str(sweep), "--plot", "stim_0007", "-o", str(out)], tmp_path, module="sensoryforge.cli.aggregate")
    assert r.returncode == 0, r.stderr
    for name in ("stim_0007_raster.png", "stim_0007_rate.png"):
        img = mpimg.imread(out / name)
        assert img.shape[0] > 250 and img[..., :3].std() > 0.05
    assert not (out / "results.h5").exists()  # --plot only plots

    empty = tmp_path / "empty"
    (empty / "stim_0000").mkdir(parents=True)
    nested = tmp_path / "multirun" / "2026-01-01" / "12-00-00"  # Hydra's layout, passed too high
    shutil.copytree(sweep / "stim_0000-0004", nested / "stim_0000-0004")
    cases = [
        ([str(tmp_path / "nope")], f"{tmp_path / 'nope'}: no such folder"),
        ([str(empty)], f"{empty}: no finished jobs (no job.json in it or its sub-folders)"),
        ([str(sweep), "--plot", "stim_0099", "-o", str(out)],
         "--plot stim_0099: unknown stimulus id; the dataset has 12: stim_0000 ... stim_0011"),
        ([str(tmp_path / "multirun")], f"sweep folders below it: {nested} (pass those)"),
        # refused before the dataset is written, not after it (the plots read the measures last)
        ([str(sweep), "--measures", "sa_rate_median", "-o", str(tmp_path / "bad")],
         "--measures sa_rate_median: unknown measure; computed: "),
    ]
    for args, msg in cases:
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("sensoryforge-aggregate: error: ") and msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit) as e:
        main([str(sweep), str(sweep)])
    assert e.value.code == 2 and "-o/--out is required with several folders" in capsys.readouterr().err


def test_several_folders_and_a_folder_copied_elsewhere(sweep, tmp_path, monkeypatch):
    copy = tmp_path / "far" / "copy"
    # only the job folders travel (as from a cluster): no dataset, no plan, no absolute paths
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("results.*", "*.csv", "*.json", "*.png", "multirun.yaml"),
                    dirs_exist_ok=False)
    for jf in sweep.glob("*/job.json"):
        shutil.copy(jf, copy / jf.parent.name / "job.json")
    monkeypatch.chdir(tmp_path / "far")
    meta = aggregate(["copy"], "copy", plots=False)
    assert meta["num_stimuli"] == 12
    with h5py.File(sweep / "results.h5") as a, h5py.File(copy / "results.h5") as b:
        for sid in a["responses"]:
            for k in a["responses"][sid]:
                np.testing.assert_array_equal(a["responses"][sid][k][()], b["responses"][sid][k][()])
            assert b["stimuli"][sid].attrs["source"] == f"copy/{sid}"

    both = tmp_path / "both"
    meta = aggregate([sweep, copy], both, plots=False)
    assert meta["num_stimuli"] == 24 and meta["sources"] == ["grid", "copy"]
    index = json.loads((both / "stimulus_index.json").read_text())
    assert list(index) == [f"stim_{i:04d}" for i in range(24)]
    assert index["stim_0000"]["source"] == "grid/stim_0000" and index["stim_0013"]["source"] == "copy/stim_0001"
    with h5py.File(both / "results.h5") as f, h5py.File(sweep / "results.h5") as g:
        np.testing.assert_array_equal(f["responses/stim_0019/ra_spikes"][()], g["responses/stim_0007/ra_spikes"][()])
        assert f["stimuli/stim_0019"].attrs["source"] == "copy/stim_0007"
    summary = pd.read_csv(both / "summary.csv")
    assert len(summary) == 4 and set(summary["sa_rate_mean_n"]) == {6}  # the two folders pooled per point


def test_job_folders_from_before_pc_aggregate_with_no_pc_afferents(sweep, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(sweep, old, ignore=shutil.ignore_patterns("results.*", "*.csv", "*.png"))
    for jf in old.glob("*/job.json"):  # what a job folder written before the PC population holds
        job = json.loads(jf.read_text())
        del job["counts"]["pc"], job["config"]["neurons"]["pc"]
        series = job["config"]["outcome"]["series"]
        job["config"]["outcome"]["series"] = [x for x in series if not x.startswith("pc_")]
        for s in job["stimuli"]:
            del s["spike_counts"]["pc"]
            s["measures"] = {k: v for k, v in s["measures"].items() if not k.startswith("pc_")}
        jf.write_text(json.dumps(job))
        for kind in ("spikes", "series"):
            with np.load(jf.parent / f"{kind}.npz") as z:
                kept = {k: z[k] for k in z.files if not k.split("/")[-1].startswith("pc")}
            np.savez(jf.parent / f"{kind}.npz", **kept)
    meta = aggregate([old], old, plots=False)
    assert meta["num_stimuli"] == 12 and meta["counts"] == {**COUNTS, "pc": 0}
    with h5py.File(sweep / "results.h5") as a, h5py.File(old / "results.h5") as b:
        for sid in a["responses"]:
            assert set(b["responses"][sid]) == {"sa_spikes", "ra_spikes", "pc_spikes", "sa2_spikes"}
            assert b["responses"][sid]["pc_spikes"].shape == (T, 0)
            for k in ("sa_spikes", "ra_spikes", "sa2_spikes"):
                np.testing.assert_array_equal(a["responses"][sid][k][()], b["responses"][sid][k][()])
    pt = torch.load(old / "results.pt")
    assert pt["results"][0]["pc_spikes"].shape == (T, 0)


def test_failed_stimuli_are_listed_and_exit_1(sweep, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(sweep, broken)
    jf = sorted(broken.glob("*/job.json"))[0]
    job = json.loads(jf.read_text())
    job["stimuli"][2].update(status="failed", error="RuntimeError: boom")
    jf.write_text(json.dumps(job))
    with pytest.raises(SystemExit) as e:
        main([str(broken), "--no-plots"])
    assert e.value.code == 1
    assert "  failed 1: stim_0002 (RuntimeError: boom)" in capsys.readouterr().err
    meta = json.loads((broken / "batch_metadata.json").read_text())
    assert meta["num_stimuli"] == 11 and meta["failed_stimuli"] == [
        {"stimulus_id": "stim_0002", "error": "RuntimeError: boom", "reason": "failed"}
    ]
    with h5py.File(broken / "results.h5") as f:
        assert "stim_0002" not in f["responses"] and len(f["responses"]) == 11
    # the earlier aggregation's heatmap was not rewritten (--no-plots): removed, not left stale
    assert (sweep / "heatmap.png").exists() and not (broken / "heatmap.png").exists()


def test_mixed_batch_keeps_each_types_parameters_and_the_intermediates(tmp_path):
    r = run_cli(["-m", "experiment=mixed", *TINY, "pipeline.save_intermediates=true", "hydra.sweep.dir=mixed"], tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "mixed"
    index = json.loads((out / "stimulus_index.json").read_text())
    assert len(index) == 21
    assert [index[k]["type"] for k in sorted(index)] == ["gaussian"] * 12 + ["gabor"] * 9
    assert "frequency" not in index["stim_0000"] and index["stim_0000"]["sigma"] == 0.5
    assert index["stim_0020"]["frequency"] == 2.0 and index["stim_0020"]["orientation"] == 90.0
    assert index["stim_0020"]["wavelength"] is None
    inter = {}
    for jf in out.glob("*/job.json"):
        with np.load(jf.parent / "intermediates.npz") as z:
            inter.update({k: z[k] for k in z.files})
    with h5py.File(out / "results.h5") as f:
        assert "frequency" not in f["stimuli/stim_0003"].attrs and f["stimuli/stim_0003"].attrs["type"] == "gaussian"
        g = f["stimuli/stim_0013"].attrs
        assert (g["type"], g["frequency"], g["orientation"]) == ("gabor", 0.5, 45.0)
        assert g["wavelength"] == "null"
        r13 = f["responses/stim_0013"]
        names = {f"{p}_{k}" for p in COUNTS for k in ("spikes", "drive", "voltage", "currents", "voltages")}
        assert set(r13) == names | {"stimulus_spatial", "stimulus_temporal", "stimulus", "stimulus_times"}
        assert all(r13[f"{p}_currents"].id == r13[f"{p}_drive"].id for p in COUNTS)  # documented names: links
        for pop, n in COUNTS.items():
            assert r13[f"{pop}_drive"].shape == (T, n) and r13[f"{pop}_voltage"].shape == (T, n)
            np.testing.assert_array_equal(r13[f"{pop}_voltage"][()], inter[f"stim_0013/{pop}_voltage"])
        assert r13["stimulus_spatial"].shape == (1, 40, 40) and r13["stimulus_temporal"].shape == (T, 1)
        assert r13["sa_drive"].attrs["unit"] == "rheobase units" and r13["stimulus_spatial"].attrs["unit"] == "kPa"
        table = f["stimuli_table"][()]  # what a type lacks: NaN in a number column
        assert np.isnan(table["frequency"][3]) and table["frequency"][13] == 0.5
        assert table["wavelength"][13] == b"null" and table["type"][3] == b"gaussian"
    # the ragged layout: the same parameters (from stimuli_table) and intermediates
    from sensoryforge.dataset.torch_datasets import H5SpikeDataset

    aggregate([out], tmp_path / "ragged", fmt="hdf5", plots=False, layout="ragged")
    a, b = (H5SpikeDataset(p / "results.h5", intermediates=True) for p in (out, tmp_path / "ragged"))
    assert a.ids == b.ids and a.params == b.params and b.params[20]["wavelength"] is None
    from sensoryforge.dataset.torch_datasets import _py

    with h5py.File(out / "results.h5") as f:  # the table says what the attributes say
        assert a.params == [{k: _py(v) for k, v in f["stimuli"][sid].attrs.items()} for sid in a.ids]
    for i in (3, 13):
        x, y = a[i], b[i]
        assert all(torch.equal(x["spikes"][p], y["spikes"][p]) for p in COUNTS)
        assert sorted(x["intermediates"]) == sorted(y["intermediates"])
        assert all(torch.equal(x["intermediates"][k], y["intermediates"][k]) for k in x["intermediates"])
    data = torch.load(out / "results.pt")
    e = data["results"][13]
    assert e["stimulus_config"]["type"] == "gabor" and e["stimulus_config"]["frequency"] == 0.5
    np.testing.assert_array_equal(e["ra_drive"].numpy(), inter["stim_0013/ra_drive"])
    assert data["metadata"]["intermediates"]["included"] is True
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 6 + 9 and list(summary["n_stimuli"]) == [2] * 6 + [1] * 9
    assert (out / "heatmap_gaussian.png").exists() and (out / "heatmap_gabor.png").exists()


def test_validate_calls_the_battery_with_the_datasets_config(sweep, tmp_path, monkeypatch, capsys):
    import sensoryforge

    # as if not installed: `from sensoryforge import physiology` reads the package attribute first
    monkeypatch.delattr(sensoryforge, "physiology", raising=False)
    monkeypatch.setitem(sys.modules, "sensoryforge.physiology", None)
    with pytest.raises(SystemExit) as e:
        main([str(sweep), "-o", str(tmp_path / "v0"), "--validate"])
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        "sensoryforge-aggregate: error: --validate: the physiology battery (sensoryforge.physiology) is not installed\n"
    )
    assert not (tmp_path / "v0").exists()  # stopped before any work

    calls = []
    fake = types.ModuleType("sensoryforge.physiology")
    fake.result = False
    fake.run_battery = lambda cfg, out_dir: calls.append((cfg, out_dir)) or fake.result
    monkeypatch.setitem(sys.modules, "sensoryforge.physiology", fake)
    monkeypatch.setattr(sensoryforge, "physiology", fake, raising=False)
    with pytest.raises(SystemExit) as e:
        main([str(sweep), "-o", str(tmp_path / "v1"), "--validate", "--no-plots", "--format", "hdf5"])
    assert e.value.code == 1 and "validation: FAIL" in capsys.readouterr().out
    cfg, out_dir = calls[-1]
    assert isinstance(cfg, DictConfig) and cfg.neurons.sa.count == 16 and cfg.pipeline.duration == 200.0
    assert out_dir == tmp_path / "v1" and (out_dir / "results.h5").exists()
    fake.result = True
    main([str(sweep), "-o", str(tmp_path / "v2"), "--validate", "--no-plots", "--format", "hdf5"])  # no exit
    assert "validation: PASS" in capsys.readouterr().out


def test_the_tables_csv_writer_gives_pandas_bytes(tmp_path):
    """write_csv formats each distinct value once; the file must be pandas' to_csv byte for byte,
    whatever the dtypes and the values that need care (signs of zero, exponents, quoting)."""
    from sensoryforge.dataset.tables import write_csv

    floats = [0.0, -0.0, 0.1 + 0.2, 1e-5, 1e16, 123456789.125, math.nan, math.inf, -math.inf, 2.5]
    df = pd.DataFrame({
        "stimulus.amplitude": floats,
        "n": np.arange(10, dtype=np.int64) - 3,
        "f32": np.array(floats, np.float32),
        "flag": [True, False] * 5,
        "u8": np.arange(10, dtype=np.uint8),
        'odd, "name"': ["a,b", 'say "hi"', "line\nbreak", None, math.nan, 1.5, "", "x", [1, 2], "y"],
    })
    for frame in (df, df.iloc[:0], df[["n"]], pd.DataFrame()):
        write_csv(frame, tmp_path / "ours.csv")
        frame.to_csv(tmp_path / "pandas.csv", index=False)
        assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "pandas.csv").read_bytes()
