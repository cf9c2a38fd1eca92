#!/usr/bin/env bash
# Installs what the local Slurm test cluster needs (Debian/Ubuntu, as root): slurm-wlm, slurmdbd,
# munge, mariadb-server. Idempotent and quick when they are there already; never interactive.
#   bash scripts/slurm/install.sh
# The packages' own start scripts are not used: scripts/slurm/cluster.py starts private daemons.
set -euo pipefail

need=()
for prog in slurmctld slurmd slurmdbd sbatch sacct munged mariadbd mariadb-install-db; do
    command -v "$prog" >/dev/null 2>&1 || [ -x "/usr/sbin/$prog" ] || need+=("$prog")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "slurm: already installed ($(slurmctld -V 2>/dev/null || echo slurm))"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm: missing ${need[*]}; installing needs root" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "slurm: missing ${need[*]}; no apt-get here: install slurm-wlm, slurmdbd, munge and mariadb-server" >&2
    exit 1
fi
echo "slurm: installing slurm-wlm slurmdbd munge mariadb-server (missing: ${need[*]})"
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
# the packages try to start their services; where that is not allowed the install still succeeds
apt-get update -q </dev/null >/dev/null
apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    slurm-wlm slurmdbd munge mariadb-server </dev/null >/dev/null
echo "slurm: installed in $(( $(date +%s) - start )) s ($(slurmctld -V))"
