"""Shared fixtures: run the real command line in a subprocess, tiny configs for speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Small and fast, but every stage of the pipeline still runs: the preset a user can type too
# (conf/debug/tiny.yaml: pipeline=fast, 16 SA, 25 RA, 4 PC, 4 SA2).
TINY = ["debug=tiny"]


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HYDRA_FULL_ERROR"] = "0"
    return env


def run_cli(args: list[str], cwd: Path, module: str = "sensoryforge.run", timeout: float = 600):
    """Run a console command (`sensoryforge` by default) as a user would; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli(tmp_path):
    """cli(args...) -> CompletedProcess, run in a fresh temporary folder."""

    def _run(*args, module: str = "sensoryforge.run", timeout: float = 600):
        return run_cli(list(args), tmp_path, module=module, timeout=timeout)

    return _run
