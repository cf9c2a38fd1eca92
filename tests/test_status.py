"""`sensoryforge-status DIR`: the counts of a sweep folder while it runs, after it finished, after
a kill and with failures, and its exit status for each."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

from conftest import TINY, cli_env, run_cli

LONG = [*TINY, "stimulus.amplitude=10,20,30,40", "repetition=range(150)", "hydra.sweeper.chunk_size=300",
        "pipeline.batch_size=2"]  # 600 stimuli, 2 jobs
COUNTS = re.compile(r"  done (\d+), running (\d+) \((\d+) computed, not yet saved\), pending (\d+), failed 0, missing 0")


def status(folder, cwd):
    return run_cli([str(folder), "--jobs"], cwd, module="sensoryforge.cli.status")


def test_running_then_complete(tmp_path, monkeypatch):
    monkeypatch.setenv("SENSORYFORGE_SEGMENT_S", "0")
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *LONG, "hydra.sweep.dir=sw"], cwd=tmp_path,
                         env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ledger = tmp_path / "sw" / "stim_0000-0299" / "progress.jsonl"
        deadline = time.time() + 300
        while time.time() < deadline and p.poll() is None and len(ledger.read_text().splitlines() if ledger.exists() else []) < 4:
            time.sleep(0.05)
        # asked again while no job runs (between the two jobs, whose gap a fast first job can fall in)
        for _ in range(10):
            r = status("sw", tmp_path)
            lines = r.stdout.splitlines()
            m = COUNTS.fullmatch(lines[1]) if len(lines) > 1 else None
            if r.returncode != 3 or m is None or int(m.group(2)) > 0 or p.poll() is not None:
                break
        assert r.returncode == 3, r.stdout + r.stderr
        assert m, lines[1]
        done, running, _, pending = (int(x) for x in m.groups())
        assert done + running + pending == 600 and running > 0 and done < 600
        assert lines[0] == f"sweep sw: {done} of 600 stimuli done"
        assert "the sweep command holds the folder (" in r.stdout and "ETA " in r.stdout
        states = re.findall(r"^  stim_\d{4}-\d{4}: (\w+(?: \w+)?), (\d+) of 300 done", r.stdout, re.M)
        assert len(states) == 2 and "running" in {s for s, _ in states}
        assert sum(int(k) for _, k in states) == done
    finally:
        assert p.wait(timeout=600) == 0
    r = status("sw", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[:2] == ["sweep sw: 600 of 600 stimuli done, complete",
                                         "  done 600, interrupted 0, failed 0, missing 0"]


def test_killed_sweep_is_interrupted_and_counts_what_was_saved(tmp_path, monkeypatch):
    """Killed a few segments into its first job (LONG: 150 segments of 2 stimuli a job, so the job
    still runs a second after the kill is due)."""
    monkeypatch.setenv("SENSORYFORGE_SEGMENT_S", "0")
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "-m", *LONG, "hydra.sweep.dir=sw"], cwd=tmp_path,
                         env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    part = tmp_path / "sw" / "stim_0000-0299" / "partial"
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and len(list(part.glob("seg_*/job.json"))) < 3:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (part.parent / "job.json").exists(), "the first job ended before the kill"
    saved = {r["id"] for j in part.glob("seg_*/job.json") for r in json.loads(j.read_text())["stimuli"]}
    r = status("sw", tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"sweep sw: {len(saved)} of 600 stimuli done"
    assert lines[1] == f"  done {len(saved)}, interrupted {600 - len(saved)}, failed 0, missing 0"
    assert "run the same sweep command again" in lines[2]
    assert f"  stim_0000-0299: interrupted, {len(saved)} of 300 done, 0 failed" in r.stdout
    assert "  stim_0300-0599: not started, 0 of 300 done, 0 failed" in r.stdout


def test_failures_and_a_folder_that_is_no_sweep(tmp_path):
    r = run_cli(["-m", *TINY, "stimulus.amplitude=10,20,30", "fail_stimuli=[stim_0001]", "hydra.sweep.dir=sw"], tmp_path)
    assert r.returncode == 1
    r = status("sw", tmp_path)
    assert r.returncode == 1 and r.stdout.splitlines()[:2] == ["sweep sw: 2 of 3 stimuli done",
                                                               "  done 2, interrupted 0, failed 1, missing 0"]
    (tmp_path / "empty").mkdir()
    r = status("empty", tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "empty: no sweep_plan.json: not a sweep folder (or its plan was not written yet)"
