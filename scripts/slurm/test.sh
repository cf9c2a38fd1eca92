#!/usr/bin/env bash
# The Slurm tests as CI runs them: installs Debian's Slurm packages if they are missing (root,
# non-interactive, quick when present), then runs tests/test_slurm.py, which must run, not skip.
#   bash scripts/slurm/test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/slurm/install.sh
export SENSORYFORGE_REQUIRE_SLURM=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec python -m pytest -q tests/test_slurm.py "$@"
