# ruff: noqa: W293 - the documentation's snippets keep their whitespace, as a user pastes them
"""The batch workflow of the older documentation (docs/user_guide/batch_processing.md), word for
word: its YAML files, its five commands (`sensoryforge batch ...`), checkpoint.json, and its
client code pasted unchanged (the snippets below are the documentation's, as a user copies them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from dataset_equal import assert_same_dataset

from conftest import ROOT, cli_env, run_cli

QUICK_START = """\
metadata:
  batch_name: "my_tactile_dataset"
  description: "Gaussian stimulus parameter sweep"

base_config:
  pipeline:
    device: cpu
    grid_size: 80
  neurons:
    sa_neurons: 100
    ra_neurons: 196

batch:
  output_dir: "./batch_results/my_dataset"
  save_format: "pytorch"  # or "hdf5"
  
  stimuli:
    - type: gaussian_sweep
      parameters:
        amplitude: [10, 20, 30, 40, 50]
        sigma: [0.3, 0.5, 0.8, 1.0, 1.5]
      repetitions: 3
"""

MULTI_TYPE = """\
batch:
  stimuli:
    # Gaussian sweep
    - type: gaussian_sweep
      parameters:
        amplitude: [10, 20, 30]
        sigma: [0.5, 1.0]
      repetitions: 2
    
    # Texture sweep
    - type: gabor_sweep
      parameters:
        frequency: [0.5, 1.0, 2.0]
        orientation: [0, 45, 90]
      repetitions: 1
"""

CUSTOM_TYPES = """\
stimuli:
  - type: gabor_sweep
    parameters:
      frequency: [0.5, 1.0, 2.0]
      orientation: [0, 45, 90, 135]
      amplitude: [20, 30]
  
  - type: moving_gaussian_sweep
    parameters:
      velocity: [5.0, 10.0, 20.0]
      direction: [0, 90, 180, 270]
      sigma: [0.5]
"""

PT_LOAD = """\
import torch

# Load results
data = torch.load('batch_results/my_dataset/results.pt')

# Access data
metadata = data['metadata']
results = data['results']

for result in results:
    sa_spikes = result['sa_spikes']  # [T, N_sa]
    ra_spikes = result['ra_spikes']  # [T, N_ra]
    config = result['stimulus_config']
    print(f"Stimulus {config['stimulus_id']}: "
          f"{sa_spikes.sum()} SA spikes")
"""

H5_LOAD = """\
import h5py
import numpy as np

# Load results
with h5py.File('batch_results/my_dataset/results.h5', 'r') as f:
    # Access metadata
    batch_id = f['metadata'].attrs['batch_id']
    
    # Access specific stimulus
    sa_spikes = f['responses/stim_0000/sa_spikes'][:]  # numpy array
    ra_spikes = f['responses/stim_0000/ra_spikes'][:]
    
    # Iterate all stimuli
    for stim_id in f['responses'].keys():
        spikes = f[f'responses/{stim_id}/sa_spikes'][:]
        print(f"{stim_id}: {spikes.sum()} total spikes")
"""

TORCH_DATASET = """\
import torch
from torch.utils.data import Dataset, DataLoader

class SensoryForgeDataset(Dataset):
    \"\"\"Dataset loader for SensoryForge batch results.\"\"\"
    
    def __init__(self, batch_file):
        data = torch.load(batch_file)
        self.results = data['results']
    
    def __len__(self):
        return len(self.results)
    
    def __getitem__(self, idx):
        result = self.results[idx]
        
        # Extract stimulus (if saved)
        stimulus = result.get('stimulus', None)
        
        # Extract responses
        sa_spikes = result['sa_spikes']  # [T, N_sa]
        ra_spikes = result['ra_spikes']  # [T, N_ra]
        
        # Combine population responses
        responses = torch.cat([sa_spikes, ra_spikes], dim=1)
        
        return stimulus, responses

# Usage
dataset = SensoryForgeDataset('batch_results/my_dataset/results.pt')
loader = DataLoader(dataset, batch_size=32, shuffle=True)

for stimuli, responses in loader:
    # Train your model
    loss = model(stimuli, responses)
    loss.backward()
    optimizer.step()
"""

HDF5_DATASET = """\
import h5py
import numpy as np
from torch.utils.data import Dataset

class HDF5Dataset(Dataset):
    \"\"\"Memory-efficient HDF5 dataset loader.\"\"\"
    
    def __init__(self, h5_file):
        self.h5_file = h5_file
        with h5py.File(h5_file, 'r') as f:
            self.num_stimuli = len(f['responses'].keys())
    
    def __len__(self):
        return self.num_stimuli
    
    def __getitem__(self, idx):
        with h5py.File(self.h5_file, 'r') as f:
            stim_id = f'stim_{idx:04d}'
            sa_spikes = torch.from_numpy(
                f[f'responses/{stim_id}/sa_spikes'][:]
            )
            ra_spikes = torch.from_numpy(
                f[f'responses/{stim_id}/ra_spikes'][:]
            )
        
        responses = torch.cat([sa_spikes, ra_spikes], dim=1)
        return responses

# Efficient for large datasets (doesn't load all into RAM)
dataset = HDF5Dataset('batch_results/my_dataset/results.h5')
"""

METADATA = """\
import json

# Batch metadata (full config + runtime info)
with open('batch_results/my_dataset/batch_metadata.json') as f:
    metadata = json.load(f)
    print(f"Batch ID: {metadata['batch_id']}")
    print(f"Num stimuli: {metadata['num_stimuli']}")

# Stimulus index (lookup table)
with open('batch_results/my_dataset/stimulus_index.json') as f:
    index = json.load(f)
    config = index['stim_0000']
    print(f"Stimulus 0: {config['type']}, "
          f"amplitude={config['amplitude']}, "
          f"sigma={config['sigma']}")
"""

INTERMEDIATES = """\
result = results[0]
sa_currents = result['sa_currents']   # Filtered SA currents
ra_currents = result['ra_currents']   # Filtered RA currents
sa_voltages = result['sa_voltages']   # SA membrane voltages
stimulus = result['stimulus']         # Full stimulus tensor
"""

FAILURES = """\
data = torch.load('results.pt')
failed = data['metadata'].get('failed_stimuli', [])
if failed:
    print(f"Failed stimuli: {failed}")
"""

# what the user adds to the Quick Start to follow the intermediates and HDF5 sections; the
# duration only keeps the test short (the documentation's code does not depend on it)
WITH_INTERMEDIATES = QUICK_START.replace('save_format: "pytorch"  # or "hdf5"',
                                         'save_format: "both"\n  save_intermediates: true')
SHORT = ["pipeline.duration=200"]


def batch(args: list[str], cwd: Path, **kw):
    return run_cli(["batch", *args], cwd, **kw)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    """The Quick Start with intermediates, run by the documented command."""
    folder = tmp_path_factory.mktemp("doc")
    (folder / "config.yml").write_text(WITH_INTERMEDIATES)
    r = batch(["config.yml", *SHORT], folder)
    assert r.returncode == 0, r.stderr[-3000:]
    return folder, r


def test_the_documented_header_and_checkpoint(quick_start):
    folder, r = quick_start
    out = r.stdout + r.stderr
    assert ("Starting batch execution: my_tactile_dataset\nTotal stimuli: 75\n"
            "Output directory: batch_results/my_dataset\n") in out
    ck = json.loads((folder / "batch_results/my_dataset/checkpoint.json").read_text())
    assert ck["batch_id"] == "my_tactile_dataset" and ck["complete"] is True
    assert (ck["num_planned"], ck["num_completed"], ck["num_failed"], ck["num_unsaved"]) == (75, 75, 0, 0)
    assert ck["completed"] == [f"stim_{i:04d}" for i in range(75)] and ck["failed"] == []


def test_the_documented_client_code_runs_unchanged(quick_start, monkeypatch, capsys):
    folder, _ = quick_start
    monkeypatch.chdir(folder)
    weight = torch.nn.Parameter(torch.zeros(()))

    def model(stimuli, responses):  # the user's; the documentation leaves it to them
        assert stimuli.shape[1:] == (20, 80, 80) and responses.shape[1:] == (800, 296)
        return weight * stimuli.mean() + responses.float().mean()

    ns = {"model": model, "optimizer": torch.optim.SGD([weight], lr=0.1)}
    for code in (PT_LOAD, H5_LOAD, TORCH_DATASET, HDF5_DATASET, METADATA, INTERMEDIATES):
        exec(compile(code, "batch_processing.md", "exec"), ns)  # noqa: S102 - the documentation's code
    printed = capsys.readouterr().out
    assert "Stimulus stim_0074: " in printed and "stim_0074: " in printed
    assert "Batch ID: my_tactile_dataset\nNum stimuli: 75\nStimulus 0: gaussian, amplitude=10" in printed
    assert weight.grad is not None  # the training loop ran: loss.backward() through the batches

    # what the snippets read is the dataset: spikes, intermediates under both names, the stimulus
    results, first = ns["results"], ns["results"][0]
    assert len(results) == 75 and first["sa_currents"] is first["sa_drive"]
    assert first["sa_spikes"].dtype == torch.bool and first["sa_spikes"].shape == (800, 100)
    frames, times = first["stimulus"], first["stimulus_times"]
    assert frames.shape == (20, 80, 80) and torch.equal(times, torch.arange(0, 200, 10, dtype=torch.float32))
    exact = (first["stimulus_temporal"] @ first["stimulus_spatial"].reshape(1, -1)).reshape(800, 80, 80)
    assert torch.allclose(frames, exact[::40], rtol=1e-6, atol=1e-6) and float(frames.max()) > 9.0
    loader = torch.utils.data.DataLoader(ns["dataset"], batch_size=8)  # HDF5Dataset, the last one
    batches = list(loader)
    assert len(batches) == 10 and batches[0].shape == (8, 800, 296)
    assert torch.equal(batches[0][0], torch.cat([first["sa_spikes"], first["ra_spikes"]], dim=1))
    with h5py.File("batch_results/my_dataset/results.h5") as f:
        g = f["responses/stim_0000"]
        assert g["sa_currents"].id == g["sa_drive"].id  # a hard link, not a copy
        assert g["stimulus"].shape == (20, 80, 80) and g["stimulus"].attrs["unit"] == "kPa"
    monkeypatch.chdir(folder / "batch_results/my_dataset")
    exec(compile(FAILURES, "batch_processing.md", "exec"), ns)  # noqa: S102
    assert ns["failed"] == {} or ns["failed"] == []


def test_dry_run_counts_the_documented_files_and_creates_nothing(tmp_path):
    cases = {"quick.yml": (QUICK_START, 75), "multi.yml": (MULTI_TYPE, 21),
             "custom.yml": ("batch:\n" + "".join(f"  {ln}\n" for ln in CUSTOM_TYPES.splitlines()), 36)}
    for name, (text, n) in cases.items():
        (tmp_path / name).write_text(text)
        r = batch([name, "--dry-run"], tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"stimuli: {n} ({n} to run, 0 already finished)" in r.stdout, r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(cases)


def test_the_shipped_example_is_the_template_the_documentation_describes(tmp_path):
    path = ROOT / "examples" / "batch_config.yml"
    doc = yaml.safe_load(path.read_text())
    types = [b["type"] for b in doc["batch"]["stimuli"]]
    assert {"gaussian_sweep", "gabor_sweep", "moving_gaussian_sweep"} <= set(types)
    assert any(b.get("repetitions", 1) >= 20 and all(not isinstance(v, list) or len(v) == 1
                                                     for v in b["parameters"].values())
               for b in doc["batch"]["stimuli"])  # a single stimulus with many noise realizations
    assert path.read_text().count("#") > 30  # commented
    r = batch([str(path), "--dry-run"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "stimuli: 104 (104 to run" in r.stdout and "output folder: batch_results/example_battery" in r.stdout
    assert not any(tmp_path.iterdir())


def test_options_map_onto_the_sweep(tmp_path):
    (tmp_path / "config.yml").write_text(QUICK_START)
    r = batch(["config.yml", "--dry-run", "--output", "./my_results", "--device", "cpu"], tmp_path)
    assert r.returncode == 0 and "output folder: my_results" in r.stdout
    r = batch(["config.yml", "--device", "tpu"], tmp_path)
    assert r.returncode == 2 and "argument --device: invalid choice: 'tpu'" in r.stderr
    r = batch(["nothere.yml"], tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "sensoryforge: error: batch nothere.yml: no such file"
    r = batch(["config.yml", "--resume", "batch_results/my_dataset/checkpoint.json"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().endswith("--resume batch_results/my_dataset/checkpoint.json: no such file or folder")
    (tmp_path / "empty").mkdir()
    r = batch(["config.yml", "--resume", "empty"], tmp_path)
    assert r.returncode == 2 and "no checkpoint.json (nor sweep_plan.json) in this folder" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yml", "empty"]


@pytest.mark.slow
def test_kill_then_resume_from_the_checkpoint_gives_the_uninterrupted_dataset(tmp_path):
    text = QUICK_START.replace('"pytorch"  # or "hdf5"', '"both"')
    (tmp_path / "config.yml").write_text(text)
    # 15 jobs of 5: the stimuli finish over ~2.5 s, so checkpoint.json (rewritten at most once a
    # second) is seen partly done before the last job ends
    args = ["config.yml", *SHORT, "hydra.sweeper.chunk_size=5"]
    p = subprocess.Popen([sys.executable, "-m", "sensoryforge.run", "batch", *args], cwd=tmp_path, env=cli_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    out = tmp_path / "batch_results/my_dataset"

    def saved() -> int:  # checkpoint.json is replaced atomically: always whole
        path = out / "checkpoint.json"
        return json.loads(path.read_text())["num_completed"] if path.exists() else 0

    deadline = time.time() + 300
    while saved() < 20 and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    ck = json.loads((out / "checkpoint.json").read_text())
    records = [*out.glob("*/job.json"), *out.glob("*/partial/seg_*/job.json")]  # finished jobs, saved segments
    finished = {r["id"] for j in records for r in json.loads(j.read_text())["stimuli"]}
    # what the checkpoint calls completed is saved (it may lag a second behind the job folders)
    assert not ck["complete"] and 20 <= ck["num_completed"] < 75 and set(ck["completed"]) <= finished
    r = batch([*args, "--resume", "batch_results/my_dataset/checkpoint.json"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resume: {len(finished)} of 75 stimuli already finished" in r.stdout + r.stderr
    assert batch([*args, "--output", "clean"], tmp_path).returncode == 0
    assert_same_dataset(out / "results.h5", tmp_path / "clean" / "results.h5")
