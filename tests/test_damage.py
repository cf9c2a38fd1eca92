"""Damaged sweep folders: fault injection on a real sweep (job.json, npz files, whole chunk folders,
the plan). Every planned stimulus ends up in the dataset or in failed_stimuli with its reason, the
aggregator never shows a traceback, prints one line per reason and exits 1; a re-run of the sweep
repairs the folder bit for bit."""

import json
import random
import shutil

import numpy as np
import pytest
import torch
from dataset_equal import assert_same_dataset, assert_same_responses, read_dataset

from sensoryforge.cli.aggregate import main
from sensoryforge.core.text import compact_ids
from sensoryforge.dataset.aggregate import problem_lines
from sensoryforge.dataset.jobs import read_records, write_lost

from conftest import TINY, run_cli

pytestmark = pytest.mark.slow  # one real sweep through the command line, and a re-run of it

GRID = ["stimulus.amplitude=20,40", "stimulus.sigma=0.5,1.0", "repetition=range(3)"]  # 12 stimuli
SWEEP = ["-m", *TINY, *GRID, "hydra.sweeper.chunk_size=3", "hydra.sweep.dir=grid"]
IDS = [f"stim_{i:04d}" for i in range(12)]
A, B, C, D = "stim_0000-0002", "stim_0003-0005", "stim_0006-0008", "stim_0009-0011"
CHUNK = {A: IDS[0:3], B: IDS[3:6], C: IDS[6:9], D: IDS[9:12]}
OUTPUTS = ("results.*", "*.csv", "*.png", "batch_metadata.json", "stimulus_index.json")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A real multirun: 12 stimuli in 4 job folders of 3, aggregated by the sweeper."""
    root = tmp_path_factory.mktemp("damage")
    r = run_cli(SWEEP, root)
    assert r.returncode == 0, r.stderr
    grid = root / "grid"
    assert sorted(p.parent.name for p in grid.glob("*/job.json")) == sorted(CHUNK)
    return grid


@pytest.fixture(scope="module")
def reference(sweep):
    return read_dataset(sweep / "results.h5")


def copy_of(sweep, tmp_path, outputs=False):
    """The sweep folder copied (without its dataset unless `outputs`), as `grid` in tmp_path."""
    dst = tmp_path / "grid"
    shutil.copytree(sweep, dst, ignore=None if outputs else shutil.ignore_patterns(*OUTPUTS))
    return dst


# -- the damage ----------------------------------------------------------------------------------


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_middle(path):
    data = bytearray(path.read_bytes())
    at = len(data) // 4  # in the compressed data, before the zip directory at the end
    data[at : at + 16] = bytes(b ^ 0xFF for b in data[at : at + 16])
    path.write_bytes(bytes(data))


def edit_job(path, change):
    job = json.loads(path.read_text())
    change(job)
    path.write_text(json.dumps(job))


def drop_array(path, name):
    with np.load(path) as z:
        kept = {k: z[k] for k in z.files if k != name}
    np.savez_compressed(path, **kept)


def add_intermediates(job_dir):
    """What pipeline.save_intermediates=true adds (arrays that the check only needs whole)."""
    np.savez_compressed(job_dir / "intermediates.npz", **{f"{s}/sa_voltage": np.zeros((200, 16), np.float32)
                                                          for s in CHUNK[job_dir.name]})
    edit_job(job_dir / "job.json", lambda j: j["files"].update(intermediates="intermediates.npz"))


def lose(job_dir):
    write_lost(job_dir, [{"id": sid} for sid in CHUNK[job_dir.name]], "the job ended without writing its results")


def fail_one(job):
    job["stimuli"][1].update(status="failed", error="RuntimeError: boom")


# name -> (damage(grid), expected {id: reason} of the stimuli not in the dataset, a text stderr shows)
CASES = {
    "job.json truncated": (lambda g: truncate(g / B / "job.json"), {s: "damaged" for s in CHUNK[B]},
                           f"{B}/job.json: not valid JSON (truncated?)"),
    "job.json empty": (lambda g: (g / B / "job.json").write_text(""), {s: "damaged" for s in CHUNK[B]},
                       f"{B}/job.json: empty file"),
    "job.json {}": (lambda g: (g / B / "job.json").write_text("{}"), {s: "damaged" for s in CHUNK[B]},
                    f"{B}/job.json: no 'format'"),
    "job.json []": (lambda g: (g / B / "job.json").write_text("[]"), {s: "damaged" for s in CHUNK[B]},
                    f"{B}/job.json: not a JSON object but an array"),
    "job.json binary": (lambda g: (g / B / "job.json").write_bytes(random.Random(0).randbytes(400)),
                        {s: "damaged" for s in CHUNK[B]}, f"{B}/job.json: not valid JSON"),
    "job.json without steps": (lambda g: edit_job(g / B / "job.json", lambda j: j.pop("steps")),
                               {s: "damaged" for s in CHUNK[B]}, f"{B}/job.json: 'steps' is missing"),
    "spikes.npz deleted": (lambda g: (g / A / "spikes.npz").unlink(), {s: "damaged" for s in CHUNK[A]},
                           f"{A}/spikes.npz: missing (deleted?)"),
    "spikes.npz empty": (lambda g: (g / A / "spikes.npz").write_bytes(b""), {s: "damaged" for s in CHUNK[A]},
                         f"{A}/spikes.npz: empty file"),
    "spikes.npz truncated": (lambda g: truncate(g / A / "spikes.npz"), {s: "damaged" for s in CHUNK[A]},
                             f"{A}/spikes.npz: not a zip file (truncated?)"),
    "spikes.npz corrupt": (lambda g: corrupt_middle(g / A / "spikes.npz"), {s: "damaged" for s in CHUNK[A]},
                           f"{A}/spikes.npz: "),
    "spikes.npz lacks an array": (lambda g: drop_array(g / A / "spikes.npz", "stim_0001/ra"),
                                  {"stim_0001": "damaged"}, f"{A}/spikes.npz: no array stim_0001/ra"),
    "series.npz deleted": (lambda g: (g / C / "series.npz").unlink(), {s: "damaged" for s in CHUNK[C]},
                           f"{C}/series.npz: missing (deleted?)"),
    "series.npz corrupt": (lambda g: corrupt_middle(g / C / "series.npz"), {s: "damaged" for s in CHUNK[C]},
                           f"{C}/series.npz: "),
    "intermediates.npz truncated": (lambda g: (add_intermediates(g / D), truncate(g / D / "intermediates.npz")),
                                    {s: "damaged" for s in CHUNK[D]}, f"{D}/intermediates.npz: not a zip file"),
    "chunk folder deleted": (lambda g: shutil.rmtree(g / C), {s: "missing" for s in CHUNK[C]},
                             f"missing 3: {compact_ids(CHUNK[C])}"),
    "job.json deleted": (lambda g: (g / C / "job.json").unlink(), {s: "missing" for s in CHUNK[C]},
                         f"missing 3: {compact_ids(CHUNK[C])}"),
    "lost job": (lambda g: lose(g / D), {s: "lost" for s in CHUNK[D]},
                 "the job ended without writing its results"),
    "failed stimulus": (lambda g: edit_job(g / B / "job.json", fail_one), {"stim_0004": "failed"},
                        "failed 1: stim_0004 (RuntimeError: boom)"),
    "no plan and job.json truncated": (
        lambda g: ((g / "sweep_plan.json").unlink(), truncate(g / B / "job.json")),
        {s: "damaged" for s in CHUNK[B]}, "no sweep_plan.json: aggregating the 9 finished stimuli found"),
    "plan truncated and job.json truncated": (  # the folder's name says which stimuli it held
        lambda g: (truncate(g / "sweep_plan.json"), truncate(g / A / "job.json")),
        {s: "damaged" for s in CHUNK[A]}, "sweep_plan.json: not valid JSON (truncated?): aggregating the 9"),
    "everything at once": (
        lambda g: (truncate(g / A / "spikes.npz"), (g / B / "job.json").write_text("[]"), shutil.rmtree(g / C),
                   lose(g / D)),
        {**{s: "damaged" for s in CHUNK[A] + CHUNK[B]}, **{s: "missing" for s in CHUNK[C]},
         **{s: "lost" for s in CHUNK[D]}}, f"{B}/job.json: not a JSON object"),
}


def problem_kinds(err):
    """reason -> its lines in the aggregator's stderr."""
    kinds = {}
    for line in err.splitlines():
        word = line.strip().split(" ", 1)[0]
        if line.startswith("  ") and word in ("failed", "lost", "missing", "damaged"):
            kinds.setdefault(word, []).append(line)
    return kinds


def check_accounted(grid, expected, err, reference):
    """failed_stimuli is exactly `expected`, the dataset holds exactly the others (as the undamaged
    sweep made them), stderr has one line per reason with its count."""
    meta = json.loads((grid / "batch_metadata.json").read_text())
    assert {f["stimulus_id"]: f["reason"] for f in meta["failed_stimuli"]} == expected
    assert meta["num_failed"] == len(expected) and meta["num_stimuli"] == 12 - len(expected)
    assert all(f["error"] for f in meta["failed_stimuli"])
    kept = [s for s in IDS if s not in expected]
    data = read_dataset(grid / "results.h5")
    assert sorted(data["responses"]) == sorted(data["stimuli"]) == kept
    assert {s: data["stimuli"][s] for s in kept} == {s: reference["stimuli"][s] for s in kept}
    assert_same_responses(data, reference, kept)
    assert json.loads(json.dumps(data["failed_stimuli"])) == meta["failed_stimuli"]
    kinds = problem_kinds(err)
    reasons = sorted(set(expected.values()))
    assert sorted(kinds) == reasons, err
    for reason in reasons:
        (line,) = kinds[reason]
        assert line.startswith(f"  {reason} {sum(v == reason for v in expected.values())}: "), line
    assert "Traceback" not in err


@pytest.mark.parametrize("case", list(CASES))
def test_damage_is_accounted_for(case, sweep, reference, tmp_path, capsys):
    damage, expected, text = CASES[case]
    grid = copy_of(sweep, tmp_path)
    damage(grid)
    with pytest.raises(SystemExit) as e:
        main([str(grid), "--no-plots", "--format", "hdf5"])
    err = capsys.readouterr().err
    assert e.value.code == 1, err
    assert text in err, err
    check_accounted(grid, expected, err, reference)
    assert not list(grid.glob(".*tmp*"))


def test_the_command_line_says_it_in_one_line_per_reason(sweep, reference, tmp_path):
    damage, expected, _ = CASES["everything at once"]
    grid = copy_of(sweep, tmp_path)
    damage(grid)
    r = run_cli([str(grid)], tmp_path, module="sensoryforge.cli.aggregate")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    check_accounted(grid, expected, r.stderr, reference)
    assert r.stderr.splitlines() == [
        "12 of 12 stimuli not in the dataset (batch_metadata.json: failed_stimuli):",
        "  lost 3: stim_0009..stim_0011 (the job ended without writing its results)",
        "  missing 3: stim_0006..stim_0008",
        f"  damaged 6: stim_0000..stim_0005 ({A}/spikes.npz: not a zip file (truncated?); "
        f"{B}/job.json: not a JSON object but an array)",
    ]
    assert "0 stimuli (12 not in the dataset)" in r.stdout
    pt = torch.load(grid / "results.pt", weights_only=True)
    assert pt["metadata"]["failed_stimuli"] == json.loads((grid / "batch_metadata.json").read_text())["failed_stimuli"]


def test_no_plan_aggregates_what_is_there_and_says_so(sweep, reference, tmp_path, capsys):
    grid = copy_of(sweep, tmp_path)
    (grid / "sweep_plan.json").unlink()
    main([str(grid), "--no-plots", "--format", "hdf5"])  # nothing found is wrong: exit 0
    err = capsys.readouterr().err
    assert err == (f"{grid}: no sweep_plan.json: aggregating the 12 finished stimuli found; "
                   "planned stimuli cannot be checked\n")
    assert_same_dataset(sweep / "results.h5", grid / "results.h5")
    assert json.loads((grid / "batch_metadata.json").read_text())["num_planned"] is None


def test_a_damaged_folder_repaired_elsewhere_is_no_problem(sweep, tmp_path, capsys):
    grid = copy_of(sweep, tmp_path)
    shutil.copytree(grid / A, grid / f"{A}.r2")  # as a re-run that redid it
    truncate(grid / A / "spikes.npz")
    (grid / B / "job.json").write_text("{")
    shutil.copytree(sweep / B, grid / f"{B}.r2")
    main([str(grid), "--no-plots", "--format", "hdf5"])
    assert capsys.readouterr().err == ""
    assert_same_dataset(sweep / "results.h5", grid / "results.h5")


def test_read_records_marks_damage_not_ok_for_a_resume(sweep, tmp_path):
    grid = copy_of(sweep, tmp_path)
    (grid / A / "spikes.npz").unlink()
    (grid / B / "job.json").write_bytes(b"\x00\xff" * 50)
    records = read_records(grid)
    assert sorted(records) == IDS
    assert [s for s, r in records.items() if not r.ok] == CHUNK[A] + CHUNK[B]
    assert records["stim_0004"].record["error"] == f"damaged: {B}/job.json: not valid JSON"
    assert records["stim_0000"].reason == "damaged" and records["stim_0000"].record["error"] == (
        f"damaged: {A}/spikes.npz: missing (deleted?)")


def test_a_rerun_repairs_the_folder_bit_for_bit(sweep, tmp_path):
    grid = copy_of(sweep, tmp_path, outputs=True)
    (grid / A / "spikes.npz").unlink()
    truncate(grid / B / "job.json")
    shutil.rmtree(grid / C)
    untouched = (grid / D / "job.json").stat().st_mtime_ns
    r = run_cli(SWEEP, tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "resume: 3 of 12 stimuli already finished" in r.stderr + r.stdout
    assert (grid / D / "job.json").stat().st_mtime_ns == untouched  # finished work is not redone
    assert (grid / f"{A}.r2" / "job.json").exists() and (grid / f"{B}.r2" / "job.json").exists()
    assert_same_dataset(sweep / "results.h5", grid / "results.h5")
    assert all(r.ok for r in read_records(grid).values())


# -- the formatting ------------------------------------------------------------------------------


def test_problem_lines_and_compact_ids():
    failed = [{"stimulus_id": f"stim_{i:04d}", "error": "damaged: x/spikes.npz: not a zip file", "reason": "damaged"}
              for i in range(19)]
    failed += [{"stimulus_id": f"stim_{i:04d}", "error": "missing: no job folder recorded it", "reason": "missing"}
               for i in range(38, 57)]
    failed += [{"stimulus_id": "stim_0060", "error": "RuntimeError: a"}, {"stimulus_id": "stim_0062", "error": "b"},
               {"stimulus_id": "stim_0063", "error": "c", "reason": "failed"}]
    assert problem_lines(failed) == [
        "failed 3: stim_0060, stim_0062..stim_0063 (RuntimeError: a; b; and 1 other errors)",
        "missing 19: stim_0038..stim_0056",
        "damaged 19: stim_0000..stim_0018 (x/spikes.npz: not a zip file)",
    ]
    assert problem_lines([{"stimulus_id": "a/stim_0001", "error": "e"}, {"stimulus_id": "b/stim_0002", "error": "e"}]) \
        == ["failed 2: a/stim_0001; b/stim_0002 (e)"]
    assert compact_ids([]) == "none"
    assert compact_ids(["stim_0003", "stim_0001", "stim_0002", "stim_0007"]) == "stim_0001..stim_0003, stim_0007"
    assert compact_ids([f"stim_{i:04d}" for i in range(0, 20, 2)]) == \
        "stim_0000, stim_0002, stim_0004, ..., stim_0016, stim_0018"
    assert compact_ids(["12-00-00", "stim_0001"]) == "stim_0001, 12-00-00"


# -- the npz writer and reader of job folders (dataset/files.py) ----------------------------------


def test_npz_files_round_trip_with_numpy_both_ways(tmp_path):
    from sensoryforge.dataset.files import Npz, write_npz

    arrays = {"stim_0000/sa": np.arange(10, dtype=np.int32), "times": np.linspace(0, 1, 5),
              "empty": np.zeros(0, np.int32), "m": np.ones((3, 4), np.float32), "b": np.array([True, False]),
              "scalar": np.array(3.5), "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "text": np.array(["ab", "c"])}
    for level in (0, 1):
        write_npz(tmp_path / "a.npz", arrays, level)
        with np.load(tmp_path / "a.npz") as z:  # numpy reads what the writer wrote
            assert z.files == list(arrays)
            for k, v in arrays.items():
                assert z[k].dtype == v.dtype and z[k].shape == v.shape and np.array_equal(z[k], v), k
        np.savez_compressed(tmp_path / "b.npz", **arrays)  # and the reader what numpy wrote
        for name in ("a.npz", "b.npz"):
            z = Npz(tmp_path / name)
            z.check()
            assert z.files == list(arrays)
            for k, v in arrays.items():
                assert z[k].dtype == v.dtype and z[k].shape == v.shape and np.array_equal(z[k], v), k
    write_npz(tmp_path / "c.npz", {"x": np.arange(4)})
    write_npz(tmp_path / "d.npz", {"x": np.arange(4)})
    assert (tmp_path / "c.npz").read_bytes() == (tmp_path / "d.npz").read_bytes()  # no time stamps


def test_npz_damage_is_always_an_npz_error(tmp_path):
    from sensoryforge.dataset.files import Npz, NpzError, write_npz

    rng = np.random.default_rng(0)
    arrays = {f"stim_{i:04d}/{p}": np.unique(rng.integers(0, 10**5, 50)).astype(np.int32)
              for i in range(4) for p in ("sa", "ra")}
    r = random.Random(1)
    found = 0
    for level in (0, 1):
        write_npz(tmp_path / "a.npz", arrays, level)
        data = (tmp_path / "a.npz").read_bytes()
        for trial in range(400):
            d = bytearray(data)
            if trial % 3 == 0:
                d = d[: r.randrange(len(d))]
            else:
                at, n = r.randrange(len(d)), r.randint(1, 16)
                d[at : at + n] = bytes(b ^ 0xFF for b in d[at : at + n])
            (tmp_path / "d.npz").write_bytes(bytes(d))
            try:
                z = Npz(tmp_path / "d.npz")
                z.check()
                for k in z.files:
                    z[k]
            except NpzError:
                found += 1
    assert found > 600  # the rest flipped bytes that nothing reads (dates, versions)
    with pytest.raises(NpzError, match="missing"):
        Npz(tmp_path / "nope.npz")
    (tmp_path / "e.npz").write_bytes(b"")
    with pytest.raises(NpzError, match="empty file"):
        Npz(tmp_path / "e.npz")
