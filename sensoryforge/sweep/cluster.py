"""What the Slurm cluster offers, against what a sweep asks of it.

Before anything is submitted (or written), the request of a Slurm launcher (partition, CPUs per
task times tasks per node, memory, time limit, GPUs, nodes) is compared with the partitions `sinfo`
reports: a request that no node can satisfy would be accepted by sbatch and then pend forever
(reason PartitionConfig, PartitionTimeLimit, ...), so it is refused in one line naming the option
and the largest value the cluster has:

    hydra.launcher.cpus_per_task=4: no node of partition debug has more than 2 CPUs
    hydra.launcher.partition=cpu: no such partition (available: debug)

When no cluster answers (no `sinfo`, no Slurm configuration, the controller down), the request
cannot be checked: one line of warning, and the sweep goes on (its submission fails clearly by
itself); a dry run says so too. Every Slurm command runs under a timeout; a client that has no
configuration retries for a minute, which is cut short at its first complaint.

Also here: the sbatch options a sweep's array gets (for the dry run), and the state of an array's
tasks in the queue (`squeue`) and in the accounting (`sacct`), for sensoryforge-status.
"""

from __future__ import annotations

import functools
import os
import re
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from omegaconf import DictConfig

from sensoryforge.core.params import ConfigError

TIMEOUT_S = 20.0  # a Slurm client with its controller down answers in ~10 s (MessageTimeout)
# partition, CPUs per node, memory per node (MB), time limit, availability, generic resources,
# node count; --exact: one line per distinct node configuration (no "2+" minimums)
SINFO = ["sinfo", "--noheader", "--exact", "--format=%P|%c|%m|%l|%a|%G|%D"]


class Unreachable(Exception):
    """No Slurm cluster answers here; the message says why, in a few words."""


def is_slurm(launcher: DictConfig | None) -> bool:
    """Hydra's submitit Slurm launcher (and the `slurm` preset over it)."""
    return launcher is not None and str(launcher.get("_target_", "")).endswith("SlurmLauncher")


# -- running Slurm's clients ----------------------------------------------------------------------


def run(args: list[str], timeout: float = TIMEOUT_S) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a Slurm client; Unreachable when it is not installed, has no
    configuration (it would retry for a minute: stopped at its first complaint) or does not answer
    within `timeout` seconds."""
    exe = shutil.which(args[0])
    if exe is None:
        raise Unreachable(f"{args[0]} not found")
    proc = subprocess.Popen([exe, *args[1:]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    out, err = bytearray(), bytearray()
    end = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while sel.get_map():
                left = end - time.monotonic()
                if left <= 0:
                    raise Unreachable(f"{args[0]}: no answer in {timeout:.0f} s")
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fileobj)
                    key.data.extend(data)
                if b"retrying in" in err:  # no slurm.conf: it would try for 60 s
                    raise Unreachable(_first_line(args[0], err.decode(errors="replace")))
        rc = proc.wait(max(0.1, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise Unreachable(f"{args[0]}: no answer in {timeout:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return rc, out.decode(errors="replace"), err.decode(errors="replace")


def _first_line(prog: str, stderr: str) -> str:
    """A client's complaint in one line: `sinfo: <what>` without Slurm's prefixes and retry note."""
    line = next((s for s in stderr.strip().splitlines() if s.strip()), "failed")
    line = re.sub(rf"^{re.escape(prog)}: (error: )?", "", line.strip())
    line = re.sub(r",? retrying in .*$", "", line)
    return f"{prog}: {line}"


# -- what the cluster offers ----------------------------------------------------------------------


@dataclass
class Nodes:
    """One node configuration of a partition (sinfo --exact: one line each)."""

    cpus: int
    mem_mb: int
    gpus: int
    count: int


@dataclass
class Partition:
    name: str
    default: bool = False
    up: bool = True
    state: str = "up"
    time_min: float | None = None  # None: no limit
    time_text: str = "infinite"
    nodes: list[Nodes] = field(default_factory=list)

    @property
    def cpus(self) -> int:
        return max((n.cpus for n in self.nodes), default=0)

    @property
    def mem_mb(self) -> int:
        return max((n.mem_mb for n in self.nodes), default=0)

    @property
    def gpus(self) -> int:
        return max((n.gpus for n in self.nodes), default=0)

    @property
    def count(self) -> int:
        return sum(n.count for n in self.nodes)


def slurm_minutes(text: str) -> float | None:
    """Minutes of a Slurm time (`infinite`, `30`, `30:00` (min:s), `2:00:00`, `1-00:00:00`, `1-12`);
    None for no limit. ValueError for anything else."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a", "none", ""):
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")]
        h, m, s = (parts + [0, 0])[:3]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            h, m, s = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, s = 0, parts[0], parts[1]
        else:
            h, m, s = parts[-3:]
    return days * 1440 + h * 60 + m + s / 60


def _gpus(gres: str) -> int:
    """GPUs per node of a sinfo %G field (`(null)`, `gpu:4`, `gpu:a100:4(S:0-1)`, `gpu:2,mps:100`)."""
    total = 0
    for item in re.sub(r"\([^)]*\)", "", gres).split(","):
        parts = item.strip().split(":")
        if parts[0] == "gpu":
            total += int(parts[-1]) if len(parts) > 1 and parts[-1].isdigit() else 1
    return total


def _int(text: str) -> int:
    m = re.match(r"\d+", text.strip())
    return int(m[0]) if m else 0


def parse_sinfo(text: str) -> dict[str, Partition]:
    """Partitions of `sinfo --format=%P|%c|%m|%l|%a|%G|%D` output, in its order."""
    parts: dict[str, Partition] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 7:
            continue
        name, cpus, mem, limit, avail, gres, count = fields[:7]
        default = name.endswith("*")
        name = name.rstrip("*")
        p = parts.get(name)
        if p is None:
            try:
                minutes = slurm_minutes(limit)
            except ValueError:
                minutes = None
            p = parts[name] = Partition(name, default, avail.strip().lower() == "up", avail.strip(), minutes,
                                        limit.strip())
        p.default = p.default or default
        p.nodes.append(Nodes(_int(cpus), _int(mem), _gpus(gres), _int(count)))
    return parts


@functools.lru_cache(maxsize=4)
def _partitions(conf: str | None) -> dict[str, Partition] | str:
    try:
        rc, out, err = run(SINFO)
    except Unreachable as e:
        return str(e)
    if rc != 0:
        return _first_line("sinfo", err or out)
    parts = parse_sinfo(out)
    return parts or "sinfo: lists no partition"


def partitions() -> dict[str, Partition]:
    """The cluster's partitions (sinfo, once per process and SLURM_CONF); Unreachable if none answers."""
    got = _partitions(os.environ.get("SLURM_CONF"))
    if isinstance(got, str):
        raise Unreachable(got)
    return got


# -- the request against it -----------------------------------------------------------------------


def _opt(launcher: DictConfig, key: str):
    return launcher.get(key, None)


def requested_partition(launcher: DictConfig) -> str | None:
    extra = launcher.get("additional_parameters", None) or {}
    value = extra.get("partition", None) if hasattr(extra, "get") else None
    return str(value) if value is not None else (None if _opt(launcher, "partition") is None
                                                   else str(launcher.partition))


def _mem(mb: float) -> str:
    return f"{mb / 1024:,.1f} GB ({mb:,.0f} MB)"


def _asked(launcher: DictConfig) -> tuple[int, int, float, int]:
    """(CPUs per task, CPUs, MB, GPUs) one node must have for one task of the request."""
    cpus_task = _opt(launcher, "cpus_per_task") or 1
    tasks = _opt(launcher, "tasks_per_node") or 1
    mem_gb = _opt(launcher, "mem_gb")
    gpus = _opt(launcher, "gpus_per_node") or (_opt(launcher, "gpus_per_task") or 0) * tasks
    if not gpus and _opt(launcher, "gres"):
        gpus = _gpus(str(launcher.gres))
    return cpus_task, cpus_task * tasks, mem_gb * 1024 if mem_gb else 0, gpus


def _fits(p: Partition, launcher: DictConfig) -> str | None:
    """Why no node of partition `p` can run one task of the request, or None."""
    cpus_task, cpus, mem_mb, gpus = _asked(launcher)
    tasks = _opt(launcher, "tasks_per_node") or 1
    mem_gb = _opt(launcher, "mem_gb")
    nodes = _opt(launcher, "nodes") or 1
    where = f"partition {p.name}"
    if cpus > p.cpus:
        what = (f"hydra.launcher.cpus_per_task={cpus_task}" if tasks == 1 else
                f"hydra.launcher.cpus_per_task={cpus_task} x hydra.launcher.tasks_per_node={tasks} = {cpus} CPUs")
        return f"{what}: no node of {where} has more than {p.cpus} CPU{'s' if p.cpus != 1 else ''}"
    if mem_mb > p.mem_mb:
        return f"hydra.launcher.mem_gb={mem_gb}: no node of {where} has more than {_mem(p.mem_mb)}"
    if gpus > p.gpus:
        key = next(k for k in ("gpus_per_node", "gpus_per_task", "gres") if _opt(launcher, k))
        has = f"more than {p.gpus} GPUs" if p.gpus else "a GPU"
        return f"hydra.launcher.{key}={_opt(launcher, key)}: no node of {where} has {has}"
    able = sum(n.count for n in p.nodes if n.cpus >= cpus and n.mem_mb >= mem_mb and n.gpus >= gpus)
    if not able:
        shown = ", ".join(f"{n.cpus} CPUs with {n.mem_mb / 1024:,.1f} GB" for n in p.nodes[:4])
        return (f"hydra.launcher.cpus_per_task={cpus_task}, mem_gb={mem_gb}"
                f"{f', gpus={gpus}' if gpus else ''}: no node of {where} has all of it (its nodes: {shown})")
    if nodes > able:
        return (f"hydra.launcher.nodes={nodes}: {where} has {able} node{'s' if able != 1 else ''} "
                "that can run a task of this request")
    timeout = _opt(launcher, "timeout_min")
    if timeout and p.time_min is not None and timeout > p.time_min:
        return (f"hydra.launcher.timeout_min={timeout}: {where} allows at most {p.time_min:g} minutes "
                f"per job ({p.time_text})")
    return None


def check_request(launcher: DictConfig, parts: dict[str, Partition]) -> list[str]:
    """The request against the partitions: a ConfigError (one line) when no node can run a task of
    it; returns warnings (a partition that is down: the array would wait until it is up)."""
    asked = requested_partition(launcher)
    available = ", ".join(parts)
    if asked is None:
        names = [n for n, p in parts.items() if p.default]
        if not names:
            raise ConfigError(f"hydra.launcher.partition=null: this cluster has no default partition; "
                              f"choose one (available: {available})")
    else:
        names = [n.strip() for n in asked.split(",") if n.strip()]  # sbatch takes a list: the first that fits
        unknown = [n for n in names if n not in parts]
        if unknown:
            which = f" {', '.join(unknown)}" if len(names) > 1 else ""
            raise ConfigError(f"hydra.launcher.partition={asked}: no such partition{which} (available: {available})")
    why = [_fits(parts[n], launcher) for n in names]
    if all(w is not None for w in why):
        raise ConfigError(why[0])
    fit = [parts[n] for n, w in zip(names, why) if w is None]
    if all(not p.up for p in fit):
        return [f"partition {fit[0].name} is {fit[0].state}: the array will wait until it is up"]
    return []


def check_cluster(launcher: DictConfig, dry_run: bool = False) -> list[str]:
    """Before anything is submitted or written: a Slurm launcher's request against the cluster
    (ConfigError, one line, when no node can run it). Returns the warnings to log: no cluster
    answers here (not checked), the partition is down. A dry run returns none: cluster_lines
    says them."""
    if not is_slurm(launcher):
        return []
    timeout, delay = _opt(launcher, "timeout_min"), _opt(launcher, "signal_delay_s")
    if timeout and delay and timeout * 60 <= delay:  # submitit asks each task to stop that long before its limit
        raise ConfigError(f"hydra.launcher.timeout_min={timeout}: submitit tells a task to stop "
                          f"hydra.launcher.signal_delay_s={delay} s before its time limit, so every task would "
                          f"stop as it starts; ask for more than {delay / 60:g} minutes (or a smaller signal_delay_s)")
    try:
        parts = partitions()
    except Unreachable as e:
        if dry_run:
            return []  # the dry run says so (cluster_lines)
        return [f"hydra/launcher=slurm: no Slurm cluster answers here ({e}): the request is not checked "
                "against its nodes"]
    warnings = check_request(launcher, parts)
    return [] if dry_run else warnings


def _room(p: Partition, launcher: DictConfig) -> int:
    """Tasks of the request that partition `p`'s nodes hold at once (CPUs, memory and GPUs)."""
    _, cpus, mem_mb, gpus = _asked(launcher)
    room = 0
    for n in p.nodes:
        fit = [n.cpus // max(cpus, 1)] + ([int(n.mem_mb // mem_mb)] if mem_mb else []) + (
            [n.gpus // gpus] if gpus else [])
        room += n.count * max(0, min(fit))
    return room


def _targets(launcher: DictConfig, parts: dict[str, Partition]) -> list[Partition]:
    asked = requested_partition(launcher)
    names = [n for n, p in parts.items() if p.default] if asked is None else [n.strip() for n in asked.split(",")]
    return [parts[n] for n in names if n in parts]


def capacity(launcher: DictConfig) -> int | None:
    """Array tasks of a Slurm request that the cluster's nodes run at once (an empty cluster, this
    sweep alone), or None when unknown (no Slurm launcher, no cluster answering)."""
    if not is_slurm(launcher):
        return None
    try:
        parts = partitions()
    except Unreachable:
        return None
    room = sum(_room(p, launcher) for p in _targets(launcher, parts))
    return room or None


def cluster_lines(launcher: DictConfig) -> list[str]:
    """For the dry run: the partitions the request goes to, as sinfo reports them, and any
    warning; or that no cluster answers here."""
    try:
        parts = partitions()
    except Unreachable as e:
        return [f"cluster: none answers here ({e}): the request is not checked against its nodes"]
    out = []
    for p in _targets(launcher, parts):
        limit = "no time limit" if p.time_min is None else f"at most {p.time_text} per job"
        room = _room(p, launcher)
        out.append(f"cluster: partition {p.name}{' (default)' if p.default else ''}, {p.state}: {p.count} "
                   f"node{'s' if p.count != 1 else ''}, up to {p.cpus} CPUs, {p.mem_mb / 1024:,.1f} GB"
                   f"{f', {p.gpus} GPUs' if p.gpus else ''} per node, {limit}: room for {room} "
                   f"task{'s' if room != 1 else ''} at a time (sinfo)")
    return out + [f"warning: {w}" for w in check_request(launcher, parts)]


def sbatch_options(launcher: DictConfig, n_tasks: int) -> list[str]:
    """The sbatch options of the sweep's array as submitit writes them (those that matter here):
    partition (none: the cluster's default), account, qos, nodes, tasks, CPUs, memory, time,
    GPUs, the array, and the additional_parameters."""
    part = requested_partition(launcher)
    out = [] if part is None else [f"--partition={part}"]  # none: the cluster's default partition
    for key, flag in (("account", "account"), ("qos", "qos"), ("nodes", "nodes"),
                      ("tasks_per_node", "ntasks-per-node"), ("cpus_per_task", "cpus-per-task")):
        v = _opt(launcher, key)
        if v is not None:
            out.append(f"--{flag}={v}")
    mem = _opt(launcher, "mem_gb")
    if mem is not None:
        out.append(f"--mem={int(mem)}GB" if mem == int(mem) else f"--mem={int(mem * 1024)}MB")
    if _opt(launcher, "timeout_min") is not None:
        out.append(f"--time={launcher.timeout_min}")
    for key in ("gpus_per_node", "gpus_per_task", "gres", "constraint", "exclude", "mem_per_cpu", "mem_per_gpu"):
        v = _opt(launcher, key)
        if v is not None:
            out.append(f"--{key.replace('_', '-')}={v}")
    parallel = int(_opt(launcher, "array_parallelism") or 256)
    out.append(f"--array=0-{max(n_tasks, 1) - 1}%{min(max(n_tasks, 1), parallel)}")
    for k, v in (launcher.get("additional_parameters", None) or {}).items():
        out.append(f"--{str(k).replace('_', '-')}" + ("" if v is True else f"={v}"))
    return out


# -- an array's tasks in the queue and the accounting -----------------------------------------------


def task_states(job_id: str) -> dict[str, dict]:
    """Slurm task id (`123_4`) -> {state, reason, elapsed, node, source} of an array job: the
    queue's view (squeue) for tasks still in it, else the accounting's (sacct). Unreachable when
    Slurm does not answer here; tasks neither knows are absent."""
    out: dict[str, dict] = {}
    rc, text, err = run(["squeue", "--noheader", "--array", f"--jobs={job_id}", "--format=%i|%T|%r|%M|%N"])
    if rc == 0:
        for line in text.splitlines():
            f = line.strip().split("|")
            if len(f) >= 5:
                out[f[0]] = {"state": f[1], "reason": "" if f[2] in ("None", "(null)") else f[2],
                             "elapsed": f[3], "node": f[4], "source": "squeue"}
    elif "Invalid job id" not in err:  # an array that has left the queue is no error
        raise Unreachable(_first_line("squeue", err))
    try:
        rc, text, err = run(["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={job_id}",
                             "--format=JobID,State,Reason,Elapsed,NodeList"])
    except Unreachable:
        return out  # no accounting: the queue is all there is
    if rc == 0:
        for line in text.splitlines():
            f = line.strip().split("|")
            if len(f) >= 5 and f[0] not in out and "[" not in f[0]:
                out[f[0]] = {"state": f[1], "reason": "" if f[2] in ("None", "(null)") else f[2],
                             "elapsed": f[3], "node": "" if f[4] == "None assigned" else f[4],
                             "source": "sacct"}
    return out
