"""A wheel, built from a copy of the checkout and installed into a fresh virtual environment outside
it, runs the default simulation and a dry-run sweep from an empty folder: the configs travel with
the package (conf/ -> sensoryforge.conf), nothing is read from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def run(cmd, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the venv's bin folder, an environment without the checkout on any path)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "src"  # build from a copy: the checkout gets no build/ or egg-info of its own
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "outputs", "multirun", "validation", "__pycache__", ".*_cache"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", src])
    (wheel,) = (root / "dist").glob("sensoryforge-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for f in ("sensoryforge/conf/config.yaml", "sensoryforge/conf/experiment/quickstart.yaml",
              "sensoryforge/conf/hydra/launcher/slurm.yaml", "sensoryforge/conf/debug/tiny.yaml",
              "hydra_plugins/sensoryforge_sweeper/sensoryforge_sweeper.py", "sensoryforge/core/schema.py"):
        assert f in names, f"{f} is not in the wheel"
    # the dependencies (torch, hydra, ...) come from this interpreter's site-packages; the package
    # itself only from the wheel
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--system-site-packages", venv])
    bin_dir = venv / "bin"
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return bin_dir, env


def test_the_wheel_carries_its_configs_and_imports_from_the_venv(installed, tmp_path):
    bin_dir, env = installed
    r = run([bin_dir / "python", "-c",
             "import sensoryforge, sensoryforge.config as c; print(sensoryforge.__file__); print(c.CONF_DIR)"],
            cwd=tmp_path, env=env)
    package, conf = r.stdout.split()
    venv = str(bin_dir.parent)
    assert package.startswith(venv) and conf.startswith(venv), r.stdout
    assert conf.endswith(os.path.join("sensoryforge", "conf")) and str(ROOT) not in r.stdout


def test_the_installed_command_runs_the_default_simulation_and_a_dry_run_sweep(installed, tmp_path):
    bin_dir, env = installed
    r = run([bin_dir / "sensoryforge", "hydra.run.dir=out"], cwd=tmp_path, env=env)
    assert "gaussian:" in r.stdout and "100 afferents" in r.stdout and "196 afferents" in r.stdout and f"output: {tmp_path / 'out'}" in r.stdout
    assert (tmp_path / "out" / "job.json").is_file()
    r = run([bin_dir / "sensoryforge", "-m", "experiment=quickstart", "dry_run=true"], cwd=tmp_path, env=env)
    assert "stimuli: 75 (75 to run, 0 already finished)" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the dry run wrote nothing
