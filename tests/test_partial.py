"""A running job saves its stimuli in segments (dataset/partial.py): a kill loses at most the
stimuli since the last save, a requeued job (same folder) starts from its first unsaved stimulus,
and a resumed sweep keeps what jobs cut short had saved; the dataset is the uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dataset_equal import assert_same_dataset

from conftest import TINY, cli_env, run_cli

# one job of 320 stimuli in batches of 2, a segment after every batch: 160 segments at ~7 ms each
# on the reference machine, so the job still runs a second after the few segments a kill waits for
N, BATCH = 320, 2
GRID = [*TINY, "stimulus.amplitude=10,20,30,40", f"repetition=range({N // 4})", f"hydra.sweeper.chunk_size={N}",
        f"pipeline.batch_size={BATCH}", "dataset.format=hdf5"]
CHUNK = f"stim_0000-{N - 1:04d}"


def killed_mid_job(tmp_path, monkeypatch, folder: str, segments: int = 4):
    """The sweep into `folder`, killed (-9, with its job) once `segments` segments are saved."""
    monkeypatch.setenv("SENSORYFORGE_SEGMENT_S", "0")
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *GRID, f"hydra.sweep.dir={folder}"],
                         cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    part = tmp_path / folder / CHUNK / "partial"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and len(list(part.glob("seg_*/job.json"))) < segments:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (tmp_path / folder / CHUNK / "job.json").exists(), "the job ended before the kill"
    saved = {r["id"] for j in part.glob("seg_*/job.json") for r in json.loads(j.read_text())["stimuli"]}
    assert len(saved) >= BATCH * segments
    return saved


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    assert run_cli(["-m", *GRID, "hydra.sweep.dir=sw"], folder).returncode == 0
    return folder / "sw" / "results.h5"


@pytest.mark.slow
def test_a_resumed_sweep_keeps_what_the_killed_job_saved(tmp_path, monkeypatch, clean):
    saved = killed_mid_job(tmp_path, monkeypatch, "sw")
    r = run_cli(["-m", *GRID, "hydra.sweep.dir=sw"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert f"kept {len(saved)} stimuli saved by jobs that were cut short" in out
    assert f"resume: {len(saved)} of {N} stimuli already finished" in out
    job = json.loads((tmp_path / "sw" / CHUNK / "job.json").read_text())
    assert job["salvaged"] is True and {s["id"] for s in job["stimuli"]} == saved
    assert not (tmp_path / "sw" / CHUNK / "partial").exists()
    assert_same_dataset(tmp_path / "sw" / "results.h5", clean)


@pytest.mark.slow
def test_a_requeued_job_starts_from_its_first_unsaved_stimulus(tmp_path, monkeypatch, clean):
    saved = killed_mid_job(tmp_path, monkeypatch, "sw")
    # what Slurm's requeue runs: the same job (its chunk) into the same folder, under the same plan
    r = run_cli(["-m", *GRID[:1], f"pipeline.batch_size={BATCH}", f"chunk={CHUNK}", "hydra/sweeper=basic",
                 "hydra.sweep.dir=sw", f"hydra.sweep.subdir={CHUNK}"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{len(saved)} of {N} stimuli restored from this job's saved segments" in r.stdout + r.stderr
    job = json.loads((tmp_path / "sw" / CHUNK / "job.json").read_text())
    assert job["restored"] == len(saved) and len(job["stimuli"]) == N
    assert not (tmp_path / "sw" / CHUNK / "partial").exists()
    agg = run_cli(["sw", "--format", "hdf5"], tmp_path, module="sensoryforge.cli.aggregate")
    assert agg.returncode == 0, agg.stderr[-2000:]
    assert_same_dataset(tmp_path / "sw" / "results.h5", clean)


def test_a_finished_job_removes_its_segments(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSORYFORGE_SEGMENT_S", "0")
    r = run_cli(["-m", *TINY, "stimulus.amplitude=10,20,30", "pipeline.batch_size=1", "hydra.sweeper.chunk_size=3",
                 "hydra.sweep.dir=sw"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list((tmp_path / "sw").glob("*/partial"))
    (ledger,) = (tmp_path / "sw").glob("*/progress.jsonl")
    entries = [json.loads(ln) for ln in ledger.read_text().splitlines()]
    # three batches; a segment after each but the last (the job's own files follow it)
    assert [e.get("ok", e.get("saved")) for e in entries] == [["stim_0000"], ["stim_0000"], ["stim_0001"],
                                                              ["stim_0001"], ["stim_0002"]]
    assert ["saved" in e for e in entries] == [False, True, False, True, False]
