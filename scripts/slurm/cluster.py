#!/usr/bin/env python3
"""A throwaway single-node Slurm cluster on this machine, for tests and for trying the launcher.

    python scripts/slurm/cluster.py start DIR    # starts it; prints `export SLURM_CONF=...`
    python scripts/slurm/cluster.py stop DIR     # cancels its jobs, stops its daemons by PID

Needs root and Debian's slurm-wlm, slurmdbd, munge and mariadb-server (scripts/slurm/install.sh).
Everything lives under DIR: a private munged (own socket and key), a private MariaDB
datadir listening on 127.0.0.1, slurmdbd (accounting: without it submitit never learns that a
cancelled job ended), slurmctld and one slurmd whose node is this machine with all its cores.
Ports are picked free at start, so it never meets another Slurm or MariaDB on the machine.
Daemons run in the foreground as children of the starter; DIR/pids.json records them, and stop
signals only those PIDs (after checking that each still runs the program it started).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROGRAMS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
STOP_ORDER = ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged")
DB_PASSWORD = "sensoryforge"  # a private database on 127.0.0.1 that lives as long as the cluster


class Unavailable(RuntimeError):
    """Slurm cannot be started here (not root, packages missing); the message says why."""


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if os.name != "posix" or os.geteuid() != 0:
        return "starting the local Slurm cluster needs root (its daemons run as root and munge)"
    absent = [p for p in PROGRAMS if _which(p) is None]
    if absent:
        return (
            f"Slurm is not installed ({', '.join(absent)} not found); "
            "run `bash scripts/slurm/install.sh` as root (Debian: slurm-wlm slurmdbd munge mariadb-server)"
        )
    return None


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, ok, timeout: float, cluster: Cluster, log: str | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return
        for name, proc in cluster.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{cluster.log_tail(name)}")
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}\n" + (cluster.log_tail(log) if log else ""))


def _quiet(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)


class Cluster:
    """A running single-node cluster under `root`. Use `start()`, then `env` for clients, `stop()`."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "etc" / "slurm.conf"
        self.node = socket.gethostname().split(".")[0]

    @property
    def env(self) -> dict:
        """The environment for Slurm clients (sbatch, squeue, sacct, submitit) of this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def log_tail(self, name: str | None, lines: int = 15) -> str:
        """The last lines of a daemon's log file and of its captured output."""
        out = []
        for path in (self.root / "log" / f"{name}.log", self.root / "log" / f"{name}.out"):
            if name and path.exists() and path.stat().st_size:
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(out)

    def _spawn(self, name: str, cmd: list[str], **kw) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "ab")  # noqa: SIM115 - kept by the child
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)
        log.close()
        self.procs[name] = proc
        self._save_pids()
        return proc

    def _save_pids(self) -> None:
        pids = {n: {"pid": p.pid, "exe": os.path.realpath(p.args[0])} for n, p in self.procs.items()}
        (self.root / "pids.json").write_text(json.dumps(pids, indent=1))

    def start(self, timeout: float = 60) -> Cluster:
        reason = missing()
        if reason:
            raise Unavailable(reason)
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout: float) -> None:
        root = self.root
        for sub in ("etc", "log", "state", "spool", "run", "db"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        # munged checks that every folder up to its socket is searchable by all, and that its
        # key sits in a folder nobody else can write to
        root.chmod(0o755)
        munge = root / "munge"
        (munge / "private").mkdir(parents=True, exist_ok=True)
        (munge / "private" / "munge.key").write_bytes(os.urandom(1024))  # this cluster's own key
        shutil.chown(munge, "munge", "munge")
        for p in (munge / "private", munge / "private" / "munge.key"):
            shutil.chown(p, "munge", "munge")
        munge.chmod(0o755)
        (munge / "private").chmod(0o700)
        (munge / "private" / "munge.key").chmod(0o400)
        sock = munge / "munge.socket"
        self._spawn("munged", [
            _which("munged"), "--foreground", f"--socket={sock}",
            f"--key-file={munge}/private/munge.key", f"--pid-file={munge}/private/munged.pid",
            f"--log-file={munge}/private/munged.log", f"--seed-file={munge}/private/munged.seed",
        ], user="munge", group="munge")
        _wait("munged", sock.exists, timeout, self)

        db_port, dbd_port, ctld_port, d_port = _free_ports(4)
        data = root / "db" / "data"
        done = _quiet([_which("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
                       "--auth-root-authentication-method=socket", "--skip-test-db",
                       "--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M"])
        if done.returncode:
            raise RuntimeError(f"mariadb-install-db failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        init = root / "db" / "init.sql"
        init.write_text("".join(
            f"CREATE USER IF NOT EXISTS 'slurm'@'{h}' IDENTIFIED BY '{DB_PASSWORD}';\n"
            f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{h}';\n"
            for h in ("127.0.0.1", "localhost")
        ))
        init.chmod(0o600)
        self._spawn("mariadbd", [
            _which("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
            f"--socket={root}/db/mysqld.sock", f"--port={db_port}", "--bind-address=127.0.0.1",
            f"--log-error={root}/log/mariadbd.log", f"--init-file={init}",
            "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M", "--skip-log-bin",
            "--performance-schema=OFF", "--skip-name-resolve",
        ])
        _wait("MariaDB", lambda: _listening(db_port), timeout, self, "mariadbd")

        self._write_conf(sock, db_port, dbd_port, ctld_port, d_port)
        env = self.env
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"], env=env)
        _wait("slurmdbd", lambda: _listening(dbd_port), timeout, self, "slurmdbd")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", str(self.conf)], env=env)
        _wait("slurmctld", lambda: _quiet(["scontrol", "ping"], env).stdout.count("UP") > 0,
              timeout, self, "slurmctld")
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.node], env=env)
        _wait("the node to become idle",
              lambda: _quiet(["sinfo", "-h", "-N", "-o", "%T"], env).stdout.strip().startswith("idle"),
              timeout, self, "slurmd")
        # the cluster registers itself in the accounting database; sacct answers once it has
        _wait("accounting (sacct)", lambda: _quiet(["sacct", "-n", "-X"], env).returncode == 0,
              timeout, self, "slurmdbd")

    def _write_conf(self, sock: Path, db_port: int, dbd_port: int, ctld_port: int, d_port: int) -> None:
        root = self.root
        cpus = os.cpu_count() or 1
        mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        self.conf.write_text(f"""\
# single-node test cluster written by scripts/slurm/cluster.py
ClusterName=sensoryforge
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
KillWait=3
InactiveLimit=0
MinJobAge=300
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={sock}
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={max(1, int(mem_mb * 0.9))} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        dbd = self.conf.parent / "slurmdbd.conf"  # slurmdbd reads it beside $SLURM_CONF
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={sock}
DbdHost={self.node}
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=slurm
StoragePass={DB_PASSWORD}
StorageLoc=slurm_acct_db
PidFile={root}/run/slurmdbd.pid
LogFile={root}/log/slurmdbd.log
DebugLevel=info
""")
        dbd.chmod(0o600)

    def stop(self, timeout: float = 20) -> None:
        """Cancel the cluster's jobs, then stop its daemons by PID (TERM, then KILL)."""
        pids = self._running_pids()
        if "slurmctld" in pids and "slurmd" in pids:
            env = self.env
            try:
                _quiet(["scancel", "--full", "--user=root", "--quiet"], env)
                end = time.monotonic() + timeout
                while time.monotonic() < end and _quiet(["squeue", "-h"], env).stdout.strip():
                    time.sleep(0.2)
            except (subprocess.SubprocessError, OSError):
                pass
        for name in STOP_ORDER:
            pid = pids.get(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + timeout
            while time.monotonic() < end and _alive(pid, self.procs.get(name)):
                time.sleep(0.05)
            if _alive(pid, self.procs.get(name)):
                os.kill(pid, signal.SIGKILL)
                _alive(pid, self.procs.get(name), wait=5)
        (self.root / "pids.json").unlink(missing_ok=True)
        self.procs.clear()

    def _running_pids(self) -> dict[str, int]:
        """name -> pid of this cluster's daemons that still run (from the Popen objects, else from
        pids.json, checking that the PID still runs the same program)."""
        if self.procs:
            return {n: p.pid for n, p in self.procs.items() if p.poll() is None}
        path = self.root / "pids.json"
        if not path.exists():
            return {}
        out = {}
        for name, rec in json.loads(path.read_text()).items():
            try:
                exe = os.path.realpath(os.readlink(f"/proc/{rec['pid']}/exe"))
            except OSError:
                continue
            if exe == rec["exe"]:
                out[name] = rec["pid"]
        return out


def _alive(pid: int, proc: subprocess.Popen | None, wait: float = 0) -> bool:
    if proc is not None:
        try:
            proc.wait(timeout=wait or 0.001)
            return False
        except subprocess.TimeoutExpired:
            return True
    end = time.monotonic() + wait
    while True:
        try:  # gone, or a zombie whose parent (the starter) is gone and nobody reaps
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
        except (OSError, IndexError):
            return False
        if time.monotonic() >= end:
            return True
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    cluster = Cluster(Path(argv[1]))
    if argv[0] == "stop":
        cluster.stop()
        print(f"stopped the cluster in {cluster.root}")
        return 0
    try:
        t0 = time.monotonic()
        cluster.start()
    except Unavailable as e:
        print(f"cluster.py: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"cluster.py: could not start the cluster: {e}", file=sys.stderr)
        return 1
    print(f"# single-node Slurm cluster up in {time.monotonic() - t0:.1f} s ({cluster.root}); stop with:")
    print(f"#   python {sys.argv[0]} stop {cluster.root}")
    print(f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
