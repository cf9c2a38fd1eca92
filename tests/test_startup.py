"""Start-up and planning at scale: what only simulating needs (torch, plots, tables) is not loaded
to print help, a config or a dry run; a sweep is planned per distinct value and job config, never
per stimulus; its plan is one small header, the fingerprints those of the first plan format (so
older sweep folders resume), and a job reads only its own slice of it."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import OmegaConf

from sensoryforge.config import CONF_DIR, build_stimulus, result_config, stimulus_value, to_stimulus
from sensoryforge.core.params import ConfigError
from sensoryforge.core.stimuli import REGISTRY
from sensoryforge.dataset.jobs import PLAN_FILE, PLAN_FINGERPRINTS, Damaged, read_plan
from sensoryforge.sweep import plan as planning
from sensoryforge.sweep.launchers import ComposedOnce

from conftest import TINY, cli_env

HEAVY = ("torch", "matplotlib", "pandas", "h5py")

# runs the command line in this process, then says which of HEAVY it loaded
PROBE = """
import sys
sys.argv = ["sensoryforge", *sys.argv[1:]]
from sensoryforge.run import main
try:
    main()
finally:
    print("LOADED", [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["--help"],
    ["--cfg", "job"],
    [*TINY, "dry_run=true"],
    ["-m", "experiment=quickstart", "dry_run=true", "hydra.sweep.dir=qs"],
], ids=["help", "cfg", "dry-run", "sweep-dry-run"])
def test_help_config_and_dry_runs_load_no_torch_nor_plots(tmp_path, args):
    r = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], cwd=tmp_path,
                       env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "LOADED []"
    assert list(tmp_path.iterdir()) == []  # and nothing written


def test_help_explains_sweeps_batch_dry_run_resume_outputs_and_every_preset(tmp_path, loader):
    r = subprocess.run([sys.executable, "-m", "sensoryforge.run", "--help"], cwd=tmp_path, env=cli_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    for said in ("sensoryforge -m ", "sensoryforge batch CONFIG.yml [--dry-run] [--resume PATH]", "dry_run=true",
                 "Resume:", "checkpoint.json", "results.h5", "hydra/launcher=slurm", "--hydra-help"):
        assert said in text, said
    for group in ("experiment", "neurons", "pipeline", "stimulus", "debug"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{group}: "))
        assert line == f"{group}: " + ", ".join(sorted(loader.get_group_options(group))), line


def test_bare_help_is_hydras_page_without_hydra(tmp_path):
    """`sensoryforge --help` prints the page itself (cli/help.py): the same bytes as Hydra's
    (which an override sends through Hydra), and Hydra is not even imported."""
    fast = subprocess.run([sys.executable, "-c", PROBE.format(heavy=("hydra", *HEAVY)), "--help"], cwd=tmp_path,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    hydras = subprocess.run([sys.executable, "-m", "sensoryforge.run", "--help", "hydra.job.chdir=false"],
                            cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert fast.returncode == 0 and hydras.returncode == 0, fast.stderr + hydras.stderr
    assert fast.stderr.strip().splitlines()[-1] == "LOADED []"
    assert fast.stdout == hydras.stdout and "stimulus: " in fast.stdout


@pytest.fixture(scope="module")
def loader():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def planned(loader, args, blocks=None):
    sweep = planning.expand({}, blocks, args, loader)
    planning.check_sweep(sweep, lambda ov: compose("config", overrides=ov))
    return sweep


def test_a_million_stimuli_are_planned_without_anything_per_stimulus(loader):
    sweep = planned(loader, ["stimulus.amplitude=range(0,1000)", "seed=range(0,1000)"])
    assert sweep.n == 1_000_000 and sweep.id(999_999) == "stim_999999"
    assert sweep.runs == [(0, 1_000_000, 0)] and len(sweep.configs) == 1  # one job config, composed once
    header = json.dumps(sweep.header())
    assert len(header) < 50_000  # the axes' values, nothing per stimulus
    chunks = planning.make_chunks(sweep, [], 256, Path("/nonexistent"))
    assert len(chunks) == 3907 and chunks["stim_999936-999999"].ranges == [[999_936, 1_000_000]]
    plan = sweep.reader(chunks)
    assert plan.point(1001) == {"stimulus.amplitude": 1, "seed": 1}
    assert planning.swept_keys(sweep) == ["stimulus.amplitude", "seed"]


def test_a_constant_job_override_after_the_axes_does_not_walk_the_points(loader):
    """pipeline.dt=0.5 after the stimulus axes is one job config for every point: 10^12 points are
    planned as one run (walking them, as planning once did for a job override after the axes,
    would never end; the alarm turns that into a failure)."""
    def never(*_):
        raise AssertionError("planning walked the points")

    old = signal.signal(signal.SIGALRM, never)
    signal.alarm(120)
    try:
        sweep = planning.expand({}, None, ["stimulus.amplitude=range(0,1000000)", "seed=range(0,1000000)",
                                           "pipeline.dt=0.5"], loader)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert sweep.n == 10**12 and sweep.runs == [(0, 10**12, 0)] and sweep.jobs == [("pipeline.dt=0.5",)]
    # a job axis of several values after the stimulus axes changes the job config at every point
    sweep = planning.expand({}, None, ["stimulus.amplitude=1,2", "neurons.sa.gain=0.2,0.3", "pipeline.dt=0.5"], loader)
    assert sweep.runs == [(0, 1, 0), (1, 2, 1), (2, 3, 0), (3, 4, 1)]
    assert sweep.jobs == [("neurons.sa.gain=0.2", "pipeline.dt=0.5"), ("neurons.sa.gain=0.3", "pipeline.dt=0.5")]


MIXED = [{"stimulus": "gaussian", "stimulus.sigma": "0.5,1.0", "repetition": "range(2)", "neurons.sa.gain": "0.2,0.3"},
         {"stimulus": "gabor", "stimulus.wavelength": "null,2", "stimulus.amplitude": "1,20"},
         {"stimulus": "vibration", "stimulus.offset": "null,5", "seed": "3,4"}]


def test_fingerprints_are_those_of_the_first_plan_format(loader):
    """sha1 of [result config without the stimulus, type, parameters, seed, repetition], as format
    1 made it point by point: finished records of older sweep folders still match."""
    sweep = planned(loader, TINY, MIXED)
    fingerprints = planning.compute_fingerprints(sweep)
    plan = sweep.reader()
    for i in range(sweep.n):
        g = next(g for lo, hi, g in sweep.runs if lo <= i < hi)
        cfg = sweep.configs[g]
        values = plan.values(i)
        stim = build_stimulus(cfg.stimulus, {k: stimulus_value(type(to_stimulus(cfg.stimulus)), k[9:], v)
                                             for k, v in values.items() if k.startswith("stimulus.")})
        base = result_config(cfg)
        base.pop("stimulus")
        old = planning.fingerprint([base, stim.type_name, stim.params(), values.get("seed", cfg.seed),
                                    values.get("repetition", cfg.repetition)])
        assert fingerprints[8 * i : 8 * i + 8].hex() == old, sweep.id(i)


def test_the_plan_on_disk_is_one_reader_and_a_job_reads_its_slice(loader, tmp_path):
    sweep = planned(loader, TINY, MIXED)
    done = [1, 2, 7]
    chunks = planning.make_chunks(sweep, done, 3, tmp_path)
    planning.write_plan(tmp_path, sweep, chunks)
    plan = read_plan(tmp_path)
    assert plan.ids == [sweep.id(i) for i in range(sweep.n)] and plan.note == ""
    assert plan.chunks == {name: [sweep.id(i) for lo, hi in c.ranges for i in range(lo, hi)]
                           for name, c in chunks.items()}
    assert sorted({s for ids in plan.chunks.values() for s in ids} | {sweep.id(i) for i in done}) == plan.ids
    memory = sweep.reader(chunks)
    for name in chunks:
        assert plan.entries(name) == memory.entries(name)
    first, last = list(chunks)[0], list(chunks)[-1]
    assert plan.entries(first)[0] == {"id": "stim_0000", "values": {"stimulus.sigma": 0.5, "repetition": 0},
                                      "point": {"stimulus": "gaussian", "stimulus.sigma": 0.5, "repetition": 0,
                                                "neurons.sa.gain": 0.2, "debug": "tiny"},
                                      "fingerprint": sweep.fingerprints[:8].hex()}
    # a job reads the header and its chunk's slice of the fingerprints, nothing beyond it
    cut = chunks[first].ranges[-1][1] * 8
    (tmp_path / PLAN_FINGERPRINTS).write_bytes(sweep.fingerprints[:cut])
    assert read_plan(tmp_path).entries(first) == memory.entries(first)
    with pytest.raises(Damaged, match="truncated"):
        read_plan(tmp_path).entries(last)


def test_a_plan_of_the_first_format_is_still_read(tmp_path):
    stimuli = [{"id": f"stim_{i:04d}", "job": [], "values": {"seed": i}, "point": {"seed": i}, "fingerprint": "ab" * 8}
               for i in range(3)]
    (tmp_path / PLAN_FILE).write_text(json.dumps({"format": "sensoryforge-plan/1", "started": 5.0, "n_stimuli": 3,
                                                  "swept": ["seed"], "stimuli": stimuli,
                                                  "chunks": {"stim_0000-0001": ["stim_0000", "stim_0001"],
                                                             "stim_0002": ["stim_0002"]}}))
    plan = read_plan(tmp_path)
    assert plan.ids == ["stim_0000", "stim_0001", "stim_0002"] and plan.n_chunks == 2 and plan.started == 5.0
    assert plan.entries("stim_0002") == [stimuli[2]]


def test_a_damaged_header_keeps_what_it_can(loader, tmp_path):
    sweep = planned(loader, ["stimulus.amplitude=1,2,3"])
    planning.write_plan(tmp_path, sweep, planning.make_chunks(sweep, [], 2, tmp_path))
    header = json.loads((tmp_path / PLAN_FILE).read_text())
    (tmp_path / PLAN_FILE).write_text(json.dumps({**header, "chunks": {"x": [[0, 9]]}, "blocks": "?"}))
    plan = read_plan(tmp_path)
    assert plan.ids == ["stim_0000", "stim_0001", "stim_0002"] and plan.chunks == {}  # ids still good
    (tmp_path / PLAN_FILE).write_text(json.dumps({**header, "n_stimuli": "3"}))
    assert read_plan(tmp_path).ids is None and "n_stimuli" in read_plan(tmp_path).note


def test_each_chunk_reuses_its_job_config_as_composition_makes_it(loader):
    master = loader.load_configuration("config", overrides=["stimulus.amplitude=1,2", *TINY],
                                       run_mode=RunMode.MULTIRUN)
    job = [*TINY, "neurons.sa.gain=0.2"]
    reused = ComposedOnce(loader, {tuple(job): loader.load_sweep_config(master, job)})
    for name in ("stim_0000-0003", "stim_0004.r2"):
        overrides = [*job, f"chunk={name}", f"hydra.sweep.subdir={name}"]
        assert OmegaConf.to_yaml(reused.load_sweep_config(master, overrides)) == \
            OmegaConf.to_yaml(loader.load_sweep_config(master, overrides))


@pytest.mark.parametrize("cls", sorted(REGISTRY.values(), key=lambda c: c.type_name), ids=lambda c: c.type_name)
def test_values_are_typed_as_composition_types_them(cls):
    node = OmegaConf.structured(cls)
    for f in dataclasses.fields(cls):
        for value in (3, 2.5, 0, True, None, "4.5", "abc", [1, 2]):
            try:
                expected = OmegaConf.to_container(OmegaConf.merge(node, {f.name: value}))[f.name]
            except Exception:  # noqa: BLE001 - composition refuses it: so must the fast path
                with pytest.raises(ConfigError, match=f"stimulus.{f.name}="):
                    stimulus_value(cls, f.name, value)
                continue
            got = stimulus_value(cls, f.name, value)
            assert (type(got), got) == (type(expected), expected), (f.name, value)


def test_torch_free_copies_agree_with_the_modules_that_need_torch():
    from sensoryforge.core import skin
    from sensoryforge.core.stimuli import indentation

    assert (indentation.MODULUS, indentation.POISSON) == (skin.MODULUS, skin.POISSON)
