"""Issue 13's speed figures, each beside its target and a floor measured on this machine.

    python benchmarks/run.py                              # every row (long: W2 is 10,000 stimuli)
    python benchmarks/run.py --quick                      # small sizes, about a minute or two
    python benchmarks/run.py --only help,W3,marginal      # some rows
    python benchmarks/run.py --set pipeline.dt=0.5        # a Hydra override for every workload
    python benchmarks/run.py --compare pipeline.dt=0.5    # every row at the defaults and at dt 0.5
    python benchmarks/run.py --set pipeline.device=cuda   # on a GPU

Rows (--only) and the floor each is divided by (defaults; --quick and the size options shrink them):

    help      `sensoryforge --help` wall, median of 5          `python -c pass`
    dryrun    dry run of 1000 x 1000 stimuli: CPU-s, peak RSS  `python -c "import hydra"`: CPU, RSS
    W3        one run of 12,000 afferents, 1 s: simulate and   sim_floor(steps x afferents); build
              build from its job.json, median of 3 runs        has none
    W1        `sensoryforge -m experiment=quickstart`, wall    e2e_floor
    marginal  sweeps of 100 and 1,000 stimuli, (x_1000 -       sim_floor + write_floor, sim_floor,
              x_100) / 900 of wall, simulate, write+aggregate  write_floor, per stimulus
    duration  marginal wall per stimulus at 0.5, 1, 2, 5 s     as marginal, at that duration
              over (duration x that at 1 s)
    W2        10,000 gaussians end to end: wall, peak RSS      e2e_floor; `import hydra`'s RSS

Each workload runs in a fresh child process from a temporary folder, through the command line a
user types (`sensoryforge ...`), and its split of time comes only from what the command writes
(job.json: timing_s, steps, counts; batch_metadata.json), so the script does not depend on the
simulator's internals. Peak RSS is the child's own maximum (wait4). Each row prints as soon as
it is measured; the whole table, the floors and the machine follow at the end (also after Ctrl-C,
with what was measured by then). Floors are measured at the start (used) and again at the end
(how far a shared machine drifted).

Columns: the figure, the overrides it ran with, the value, its target, PASS/MISS ("n/a (size)"
where the size differs from the target's, "noise" where a difference of two sweeps came out <= 0),
the floor (see `measure_floors`, `startup_floors`, `sim_floor`, `write_floor`, `e2e_floor`),
value / floor, the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent

# The floor of one neuron-step (one afferent advanced by one time step), issue 13's counts: a fused
# kernel must at least read the input current and the noise (4 + 4 bytes, float32) and write the
# spike (1 byte); neuron state stays in registers over the whole time loop.
BYTES_PER_NEURON_STEP = 9
# ... and do about 22 floating-point operations: the Izhikevich update, the noise that grows with
# the drive, spike test, reset, refractory count (an FMA counts as two, as in the arithmetic floor).
OPS_PER_NEURON_STEP = 22

ORDER = ["help", "dryrun", "W3", "W1", "marginal", "duration", "W2"]
W3_COUNTS = {"sa": 100, "ra": 196, "pc": 36, "sa2": 25}  # the default proportions, scaled up
# Each stimulus axis of the standard gaussian sweeps; gaussians(10_000) is W2's grid: amplitude 10
# x sigma 5 x centre x 5 x centre y 5 x 8 repetitions.
AXES = [
    ("stimulus.amplitude", [10, 15, 20, 25, 30, 35, 40, 45, 50, 55]),
    ("stimulus.sigma", [0.3, 0.5, 0.8, 1.0, 1.5]),
    ("stimulus.center_x", [-2, -1, 0, 1, 2]),
    ("stimulus.center_y", [-2, -1, 0, 1, 2]),
]
FULL = dict(sizes="100,1000", w2=10_000, dry_side=1000, durations="0.5,1,2,5",
            duration_sizes="100,1000", w3_afferents=12_000, w3_repeat=3, help_repeat=5,
            floor_mb=256, disk_mb=256)
QUICK = dict(sizes="8,32", w2=200, dry_side=100, durations="0.5,1,2,5", duration_sizes="4,12",
             w3_afferents=12_000, w3_repeat=1, help_repeat=3, floor_mb=128, disk_mb=64)


# ---------------------------------------------------------------------------------------------
# floors


def _best(f, k: int = 5) -> float:
    """Fastest of k runs: a floor is what the machine can do, not what a noisy moment gave."""
    ts = []
    for _ in range(k):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def measure_floors(folder: Path, floor_mb: int, disk_mb: int) -> dict:
    """The machine's floors (run in a child process, so its threads and memory stay out of ours).

    bandwidth_gbs: streaming memory bandwidth, the best of a numpy copy (one thread) and a numba
        parallel copy (all cores) of a `floor_mb` float32 array, counted as bytes read + written
        (the same counting as BYTES_PER_NEURON_STEP).
    gflops: elementwise arithmetic throughput on all cores: a numba `parallel=True, fastmath` loop
        of 16 chained float32 multiply-adds per element over blocks that stay in cache, an FMA
        counted as two operations (numpy, one thread, if numba is missing).
    disk_gbs: disk write bandwidth: `disk_mb` written to the benchmark folder and fsynced (the
        dataset writers fsync every file, dataset/files.py); buffered_gbs without the fsync and
        fsync_ms, the cost of syncing one small file, are for reference.
    """
    import numpy as np

    n = floor_mb * 2**20 // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    out = {"bandwidth_numpy_gbs": 2 * src.nbytes / _best(lambda: np.copyto(dst, src)) / 1e9}
    try:
        import numba
        from numba import njit, prange

        @njit(parallel=True)
        def par_copy(d, s):
            for i in prange(s.shape[0]):
                d[i] = s[i]

        @njit(parallel=True, fastmath=True)
        def fma(x, passes, a, b):
            for j in prange(x.shape[0]):
                row = x[j]
                for _ in range(passes):
                    for i in range(row.shape[0]):
                        v = row[i]
                        for _k in range(16):
                            v = v * a + b  # a = b = 0.5: v stays near 1, no denormals
                        row[i] = v

        par_copy(dst, src)
        out["bandwidth_numba_gbs"] = 2 * src.nbytes / _best(lambda: par_copy(dst, src)) / 1e9
        threads = numba.get_num_threads()
        x = np.ones((8 * threads, 2048), np.float32)  # 8 KB blocks: in L1, so not memory-bound
        a = b = np.float32(0.5)
        fma(x, 1, a, b)  # compile
        passes = 1  # doubled until a call lasts 0.1 s: one short call can be a scheduler wait
        while _best(lambda p=passes: fma(x, p, a, b), 1) < 0.1 and passes < 1 << 20:
            passes *= 2
        out["gflops"] = 2 * 16 * x.size * passes / _best(lambda: fma(x, passes, a, b), 3) / 1e9
        out["arith"] = f"numba, {threads} threads"
    except ImportError:
        x = np.ones(1 << 14, np.float32)

        def numpy_fma():
            for _ in range(200):
                np.multiply(x, 0.5, out=x)
                np.add(x, 0.5, out=x)

        out["gflops"] = 2 * x.size * 200 / _best(numpy_fma, 3) / 1e9
        out["arith"] = "numpy, 1 thread (numba missing)"
    out["bandwidth_gbs"] = max(out["bandwidth_numpy_gbs"], out.get("bandwidth_numba_gbs", 0.0))

    chunk = np.random.default_rng(0).integers(0, 256, 8 << 20, dtype=np.uint8).tobytes()
    path = folder / "disk-floor.bin"
    total = len(chunk) * max(1, disk_mb // 8)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(total // len(chunk)):
            f.write(chunk)
        f.flush()
        t1 = time.perf_counter()
        os.fsync(f.fileno())
    t2 = time.perf_counter()
    path.unlink()
    syncs = []
    for i in range(10):
        small = folder / f"sync-{i}.bin"
        t = time.perf_counter()
        with open(small, "wb") as f:
            f.write(chunk[:4096])
            f.flush()
            os.fsync(f.fileno())
        syncs.append(time.perf_counter() - t)
        small.unlink()
    out.update(buffered_gbs=total / (t1 - t0) / 1e9, disk_gbs=total / (t2 - t0) / 1e9,
               fsync_ms=1000 * median(syncs))
    return out


# ---------------------------------------------------------------------------------------------
# child processes and workloads


def child(cmd: list[str], cwd: Path, verbose: bool = False) -> dict:
    """Run a child process: its wall time, CPU time and peak RSS (its own, via wait4)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if verbose:
                sys.stderr.write("    " + line)
    except KeyboardInterrupt:
        proc.wait()  # it got the same Ctrl-C; let it clean up its temporary files
        raise
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = "".join(lines)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        tail = " | ".join(x.strip() for x in out.strip().splitlines()[-3:])  # the error is last
        raise RuntimeError(f"exit {rc} of `{' '.join(cmd[1:])[:120]}`: {tail[-400:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "out": out}


def sensoryforge() -> list[str]:
    """The console script of this interpreter's environment (what a user runs)."""
    exe = Path(sys.executable).with_name("sensoryforge")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "sensoryforge.run"]


def spread(values: list, k: int) -> list:
    """k values spread evenly over `values` (so small sweeps cover the same range)."""
    if k == 1:
        return [values[len(values) // 2]]
    return [values[round(i * (len(values) - 1) / (k - 1))] for i in range(k)]


def gaussians(n: int) -> list[str]:
    """Sweep overrides giving exactly n gaussian stimuli: each axis takes the largest number of its
    values that divides what is left, repetitions the rest."""
    out, left = [], n
    for key, values in AXES:
        k = max(d for d in range(1, len(values) + 1) if left % d == 0)
        if k > 1:
            out.append(f"{key}={','.join(str(v) for v in spread(values, k))}")
        left //= k
    if left > 1:
        out.append(f"repetition=range({left})")
    return out


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


@dataclass
class Row:
    key: str
    figure: str
    config: str
    value: str
    target: str
    status: str
    floor: str = "-"
    ratio: float | None = None
    rss_mb: float | None = None
    note: str = ""
    raw: dict = field(default_factory=dict)

    def line(self) -> str:
        shown = self.ratio is not None and self.status != "noise"
        ratio = f"{self.ratio:.1f}x" if shown else "-"
        rss = f"{self.rss_mb:.0f}" if self.rss_mb is not None else "-"
        return (f"| {self.figure} | {self.config} | {self.value} | {self.target} | {self.status} | "
                f"{self.floor} | {ratio} | {rss} | {self.note} |")


HEADER = ("| figure | config | value | target | | floor | / floor | peak RSS MB | notes |\n"
          "|---|---|---|---|---|---|---|---|---|")


def status(ok: bool | None, value: float = 1.0) -> str:
    """PASS/MISS; "n/a (size)" off the target's size; "noise" for a difference of two sweeps that
    came out <= 0 (the sweeps too small against the noise of their fixed start-up)."""
    if value <= 0:
        return "noise"
    return "n/a (size)" if ok is None else ("PASS" if ok else "MISS")


def ms(seconds: float) -> str:
    return f"{seconds:.2f} s" if abs(seconds) >= 1 else f"{1000 * seconds:.2f} ms"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, floors: dict):
        self.args, self.work, self.floors = args, work, floors
        self.rows: list[Row] = []
        self.results: dict[str, dict] = {}
        self.serial = 0

    # the floors -------------------------------------------------------------------------------
    def sim_floor(self, neuron_steps: float) -> float:
        """Seconds to simulate `neuron_steps`: each neuron-step must move BYTES_PER_NEURON_STEP
        through memory and do OPS_PER_NEURON_STEP operations; whichever takes longer at the
        measured bandwidth and arithmetic rate bounds it (they can overlap, so not their sum)."""
        f = self.floors
        return neuron_steps * max(BYTES_PER_NEURON_STEP / (f["bandwidth_gbs"] * 1e9),
                                  OPS_PER_NEURON_STEP / (f["gflops"] * 1e9))

    def write_floor(self, nbytes: float) -> float:
        """Seconds to put `nbytes` on disk (what the command really wrote: job folders and
        dataset, measured as file sizes) at the measured fsynced bandwidth."""
        return nbytes / (self.floors["disk_gbs"] * 1e9)

    def e2e_floor(self, r: dict) -> float:
        """A whole sweep: start an interpreter that imports Hydra, simulate, write."""
        return self.floors["hydra_wall"] + self.sim_floor(r["neuron_steps"]) + self.write_floor(
            r["bytes"])

    # running ----------------------------------------------------------------------------------
    def emit(self, row: Row) -> None:
        self.rows.append(row)
        print(row.line(), flush=True)

    def say(self, text: str) -> None:
        print(f"# {text}", file=sys.stderr, flush=True)

    def run(self, cmd: list[str]) -> dict:
        return child(cmd, self.work, self.args.verbose)

    def sweep(self, overrides: list[str], name: str) -> dict:
        """A sweep through the CLI, with the split of its time from the job and dataset records."""
        self.serial += 1
        folder = self.work / f"{name}-{self.serial}"
        r = self.run([*sensoryforge(), "-m", *overrides, f"hydra.sweep.dir={folder}"])
        meta = json.loads((folder / "batch_metadata.json").read_text())
        t = {"build": 0.0, "simulate": 0.0, "write": 0.0}
        jobs = 0
        for job_file in folder.glob("*/job.json"):
            jobs += 1
            timing = json.loads(job_file.read_text()).get("timing_s", {})
            for k in t:
                t[k] += timing.get(k, 0.0)
        n = meta["num_stimuli"]
        afferents = sum(meta["counts"].values())
        sizes = {f: (folder / f).stat().st_size for f in ("results.h5", "results.pt")
                 if (folder / f).exists()}
        r.pop("out")
        r.update(t, stimuli=n, jobs=jobs, steps=meta["steps"], dt=meta.get("dt"),
                 afferents=afferents, neuron_steps=n * meta["steps"] * afferents,
                 aggregate=meta.get("aggregation_runtime_s", 0.0), bytes=folder_bytes(folder),
                 dataset_bytes=sum(sizes.values()), dense_bytes=n * meta["steps"] * afferents)
        if not self.args.keep:
            shutil.rmtree(folder, ignore_errors=True)
        return r

    def marginal(self, a: dict, b: dict) -> dict:
        """What each further stimulus adds, free of fixed start-up: (x_b - x_a) / (n_b - n_a)."""
        dn = b["stimuli"] - a["stimuli"]
        keys = ("wall", "simulate", "write", "aggregate", "bytes", "neuron_steps")
        return {k: (b[k] - a[k]) / dn for k in keys}

    # workloads: each emits its rows -------------------------------------------------------------
    def w_help(self, label: str, ov: list[str]) -> None:
        k = self.args.help_repeat
        rs = [self.run([*sensoryforge(), "--help"]) for _ in range(k)]
        walls = [r["wall"] for r in rs]
        v, fl = median(walls), self.floors["pass_wall"]
        self.emit(Row("help", "`sensoryforge --help` wall", label, f"{v:.2f} s", "<= 0.6 s",
                      status(v <= 0.6), f"{fl:.3f} s", v / fl, max(r["rss_mb"] for r in rs),
                      note=f"median of {k}, CPU {median(r['cpu'] for r in rs):.2f} s; floor "
                           f"`python -c pass`; `import hydra` "
                           f"{self.floors['hydra_wall']:.2f} s", raw={"walls": walls}))

    def w_dryrun(self, label: str, ov: list[str]) -> None:
        side = self.args.dry_side
        r = self.run([*sensoryforge(), "-m", f"stimulus.amplitude=range({side})",
                      f"repetition=range({side})", "dry_run=true", *ov,
                      f"hydra.sweep.dir={self.work / 'dry'}"])
        r.pop("out")
        full = side == 1000
        name = f"dry run of {side * side:,} stimuli"
        fl = self.floors
        self.emit(Row("dryrun", f"{name}: CPU", label, f"{r['cpu']:.1f} CPU-s", "<= 15 CPU-s",
                      status(r["cpu"] <= 15 if full else None), f"{fl['hydra_cpu']:.2f} CPU-s",
                      r["cpu"] / fl["hydra_cpu"], r["rss_mb"],
                      note=f"wall {r['wall']:.1f} s; floor `python -c 'import hydra'`", raw=r))
        self.emit(Row("dryrun", f"{name}: peak RSS", label, f"{r['rss_mb']:.0f} MB", "<= 400 MB",
                      status(r["rss_mb"] <= 400 if full else None), f"{fl['hydra_rss']:.0f} MB",
                      r["rss_mb"] / fl["hydra_rss"], r["rss_mb"],
                      note="floor: peak RSS of `import hydra`"))

    def w_w3(self, label: str, ov: list[str]) -> None:
        total = sum(W3_COUNTS.values())
        counts = {k: round(v * self.args.w3_afferents / total) for k, v in W3_COUNTS.items()}
        counts["ra"] += self.args.w3_afferents - sum(counts.values())  # exactly the total asked
        runs = []
        for _ in range(self.args.w3_repeat):
            self.serial += 1
            folder = self.work / f"w3-{self.serial}"
            r = self.run([*sensoryforge(), *(f"neurons.{k}.count={v}" for k, v in counts.items()),
                          *ov, f"hydra.run.dir={folder}"])
            job = json.loads((folder / "job.json").read_text())
            r.pop("out")
            r.update(job["timing_s"], steps=job["steps"], afferents=sum(job["counts"].values()))
            runs.append(r)
            shutil.rmtree(folder, ignore_errors=True)
        sim, build = median(r["simulate"] for r in runs), median(r["build"] for r in runs)
        rss = max(r["rss_mb"] for r in runs)
        n_aff, steps = runs[0]["afferents"], runs[0]["steps"]
        full = n_aff == 12_000
        fl = self.sim_floor(steps * n_aff)
        name = f"W3 {n_aff:,} afferents, {steps:,} steps"
        note = f"median of {len(runs)} runs; process wall {median(r['wall'] for r in runs):.1f} s"
        self.emit(Row("W3", f"{name}: simulate", label, ms(sim), "<= 40 ms",
                      status(sim <= 0.040 if full else None), ms(fl), sim / fl, rss, note,
                      raw={"runs": runs}))
        self.emit(Row("W3", f"{name}: build", label, ms(build), "<= 300 ms",
                      status(build <= 0.3 if full else None), "-", None, rss,
                      "no floor: building receptive fields is not counted in neuron-steps"))

    def w_w1(self, label: str, ov: list[str]) -> None:
        r = self.sweep(["experiment=quickstart", *ov], "w1")
        fl = self.e2e_floor(r)
        self.emit(Row("W1", f"W1 quickstart ({r['stimuli']} stimuli) end to end", label,
                      f"{r['wall']:.2f} s", "<= 2.5 s", status(r["wall"] <= 2.5), f"{fl:.2f} s",
                      r["wall"] / fl, r["rss_mb"], self.split_note(r), raw=r))

    def split_note(self, r: dict) -> str:
        inside = r["build"] + r["simulate"] + r["write"] + r["aggregate"]
        return (f"build {r['build']:.1f} s, simulate {r['simulate']:.1f} s, write "
                f"{r['write']:.1f} s, aggregate {r['aggregate']:.1f} s, rest "
                f"{r['wall'] - inside:.1f} s; {r['jobs']} jobs; CPU {r['cpu']:.1f} s")

    def w_marginal(self, label: str, ov: list[str]) -> None:
        na, nb = (int(x) for x in self.args.sizes.split(","))
        a = self.sweep([*gaussians(na), *ov], "m")
        b = self.sweep([*gaussians(nb), *ov], "m")
        m = self.marginal(a, b)
        self.results[f"marginal {label}"] = {"small": a, "large": b, "per_stimulus": m}
        secs = b["steps"] * (b["dt"] or 0) / 1000
        sim_fl, write_fl = self.sim_floor(m["neuron_steps"]), self.write_floor(m["bytes"])
        how = f"({nb} - {na} stimuli) / {nb - na}"
        self.emit(Row("marginal", f"marginal end-to-end cost per {secs:g}-s stimulus", label,
                      ms(m["wall"]), "<= 3 ms", status(m["wall"] <= 0.003, m["wall"]),
                      ms(sim_fl + write_fl), m["wall"] / (sim_fl + write_fl), b["rss_mb"],
                      f"{how}; {nb} alone {ms(b['wall'] / nb)} each; floor simulate + write"))
        self.emit(Row("marginal", "simulate per stimulus / floor", label, ms(m["simulate"]),
                      "<= 5x floor", status(m["simulate"] <= 5 * sim_fl, m["simulate"]), ms(sim_fl),
                      m["simulate"] / sim_fl, b["rss_mb"],
                      f"{how}, job records; {b['afferents']} afferents x {b['steps']} steps"))
        wa = m["write"] + m["aggregate"]
        self.emit(Row("marginal", "write + aggregate per stimulus", label, ms(wa), "<= 0.5 ms",
                      status(wa <= 0.0005, wa), ms(write_fl), wa / write_fl, b["rss_mb"],
                      f"{how}; write {ms(m['write'])}, aggregate {ms(m['aggregate'])}; "
                      f"{m['bytes'] / 1024:.0f} KB written per stimulus"))

    def w_duration(self, label: str, ov: list[str]) -> None:
        sa, sb = (float(x) for x in self.args.duration_sizes.split(","))
        durations = sorted({1.0, *(float(d) for d in self.args.durations.split(","))})
        # the 1-s stimulus pressed from 100 to 900 ms; t_plateau stretches it over each duration, so
        # spikes (and so writing) grow with the duration as the steps do
        stretch = not any(o.split("=")[0].lstrip("+~") == "stimulus" for o in ov)
        cost = {}
        order = [1.0] + [d for d in durations if d != 1.0]  # the reference first
        for d in order:
            dur = [f"pipeline.duration={d * 1000:g}"]
            if stretch:
                dur.append(f"stimulus.t_plateau={d * 1000 - 300:g}")
            # the same seconds of stimulus at every duration: equal signal against the noise of
            # the fixed start-up, which the difference of the two sweeps removes
            na = max(1, round(sa / d))
            nb = max(na + 1, round(sb / d))
            a = self.sweep([*gaussians(na), *dur, *ov], "d")
            b = self.sweep([*gaussians(nb), *dur, *ov], "d")
            m = self.marginal(a, b)
            cost[d] = m
            fl = self.sim_floor(m["neuron_steps"]) + self.write_floor(m["bytes"])
            scale = (m["wall"] / cost[1.0]["wall"]) / d
            self.emit(Row("duration", f"cost per stimulus at {d:g} s / ({d:g} x cost at 1 s)",
                          label, f"{scale:.2f} ({ms(m['wall'])})", "0.8 - 1.2",
                          "reference" if d == 1.0 else status(0.8 <= scale <= 1.2, scale),
                          ms(fl), m["wall"] / fl, b["rss_mb"],
                          f"marginal end to end, ({nb} - {na}) / {nb - na}; simulate "
                          f"{ms(m['simulate'])}, write + aggregate "
                          f"{ms(m['write'] + m['aggregate'])}",
                          raw={"duration_s": d, "per_stimulus": m, "scale": scale}))

    def w_w2(self, label: str, ov: list[str]) -> None:
        n = self.args.w2
        self.say(f"W2: {n:,} stimuli (the longest row)")
        r = self.sweep([*gaussians(n), *ov], "w2")
        full = n == 10_000
        fl = self.e2e_floor(r)
        pct = 100 * r["dataset_bytes"] / r["dense_bytes"]
        self.emit(Row("W2", f"W2 {n:,} stimuli end to end", label, f"{r['wall']:.1f} s",
                      "<= 40 s", status(r["wall"] <= 40 if full else None), f"{fl:.1f} s",
                      r["wall"] / fl, r["rss_mb"], self.split_note(r), raw=r))
        self.emit(Row("W2", f"W2 {n:,} stimuli peak RSS", label, f"{r['rss_mb']:.0f} MB",
                      "< 1024 MB", status(r["rss_mb"] < 1024 if full else None),
                      f"{self.floors['hydra_rss']:.0f} MB", r["rss_mb"] / self.floors["hydra_rss"],
                      r["rss_mb"], f"dataset {r['dataset_bytes'] / 2**20:.0f} MB = {pct:.2f}% of "
                      "dense uint8; floor: peak RSS of `import hydra`"))


# ---------------------------------------------------------------------------------------------
# the machine


def version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "missing"


def machine() -> dict:
    """Facts about this machine and checkout, read without changing anything (git is read only)."""
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "--no-optional-locks", *a], cwd=ROOT, text=True,
                                  capture_output=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dirty = len([x for x in git("status", "--porcelain", "-uno").splitlines() if x.strip()])
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "host": platform.node(), "arch": platform.machine(), "cpu": cpu,
        "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem, 1), "python": platform.python_version(),
        "versions": {p: version(p) for p in ("torch", "numba", "numpy", "hydra-core", "h5py")},
        "commit": git("rev-parse", "--short", "HEAD") or "unknown", "modified_tracked_files": dirty,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": os.getloadavg(),
    }


def machine_line(facts: dict) -> str:
    def load(x: tuple) -> str:
        return "/".join(f"{v:.2f}" for v in x)

    end = (f", end {facts['finished']} load {load(facts['load_end'])}" if "load_end" in facts
           else "")
    return (f"machine: {facts['host']} {facts['arch']} {facts['cpu']}, {facts['cores']} cores "
            f"({facts['usable_cores']} usable), {facts['memory_gib']} GiB; python "
            f"{facts['python']}, " + ", ".join(f"{k} {v}" for k, v in facts["versions"].items())
            + f"; commit {facts['commit']} ({facts['modified_tracked_files']} tracked files "
            f"modified); start {facts['started']} load {load(facts['load_start'])}{end} "
            "(load average over 1/5/15 min)")


def startup_floors(work: Path, k: int) -> dict:
    """Bare interpreter start-up (`python -c pass`) and with Hydra imported: medians of k."""
    out = {}
    for name, code in (("pass", "pass"), ("hydra", "import hydra")):
        rs = [child([sys.executable, "-c", code], work) for _ in range(k)]
        out[f"{name}_wall"] = median(r["wall"] for r in rs)
        out[f"{name}_cpu"] = median(r["cpu"] for r in rs)
        out[f"{name}_rss"] = max(r["rss_mb"] for r in rs)
    return out


def floors(work: Path, args: argparse.Namespace) -> dict:
    r = child([sys.executable, __file__, "--measure-floors", str(work), "--floor-mb",
               str(args.floor_mb), "--disk-mb", str(args.disk_mb)], work)
    f = json.loads(r["out"].strip().splitlines()[-1])
    f.update(startup_floors(work, args.help_repeat))
    return f


def floor_text(f: dict) -> str:
    per_ns = max(BYTES_PER_NEURON_STEP / (f["bandwidth_gbs"] * 1e9),
                 OPS_PER_NEURON_STEP / (f["gflops"] * 1e9))
    return (f"streaming bandwidth {f['bandwidth_gbs']:.1f} GB/s (numpy copy "
            f"{f['bandwidth_numpy_gbs']:.1f}, numba parallel "
            f"{f.get('bandwidth_numba_gbs', 0):.1f}); "
            f"arithmetic {f['gflops']:.0f} GFLOP/s ({f['arith']}); disk {f['disk_gbs']:.2f} GB/s "
            f"fsynced ({f['buffered_gbs']:.2f} buffered, fsync of a small file "
            f"{f['fsync_ms']:.1f} ms); start-up `python -c pass` {f['pass_wall']:.3f} s, "
            f"`import hydra` {f['hydra_wall']:.2f} s / {f['hydra_cpu']:.2f} CPU-s / "
            f"{f['hydra_rss']:.0f} MB\n"
            f"simulate floor per neuron-step: max({BYTES_PER_NEURON_STEP} B / bandwidth, "
            f"{OPS_PER_NEURON_STEP} ops / arithmetic) = {per_ns * 1e9:.3f} ns; default 1-s "
            f"stimulus (4,000 steps x 357 afferents): {per_ns * 4000 * 357 * 1000:.3f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(ORDER), help=f"rows, of {','.join(ORDER)}")
    p.add_argument("--quick", action="store_true", help="small sizes (a validation run)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a Hydra override for every workload (repeatable)")
    p.add_argument("--compare", action="append", default=[], metavar="'K=V [K=V ...]'",
                   help="also run every row with these overrides (repeatable)")
    p.add_argument("--sizes", help="the two sweep sizes of the marginal rows (100,1000)")
    p.add_argument("--w2", type=int, help="W2's stimuli (10000)")
    p.add_argument("--dry-side", type=int, help="dry run of side x side stimuli (1000)")
    p.add_argument("--durations", help="stimulus durations in s (0.5,1,2,5)")
    p.add_argument("--duration-sizes", help="seconds of stimulus in the two sweeps at each "
                   "duration (100,1000: 200 and 2,000 stimuli at 0.5 s)")
    p.add_argument("--w3-afferents", type=int, help="W3's afferents (12000)")
    p.add_argument("--w3-repeat", type=int, help="W3 runs, median (3)")
    p.add_argument("--help-repeat", type=int, help="--help runs, median (5)")
    p.add_argument("--floor-mb", type=int, help="array size of the bandwidth floor (256)")
    p.add_argument("--disk-mb", type=int, help="file size of the disk floor (256)")
    p.add_argument("--work", type=Path, help="where the temporary folder goes (the system's)")
    p.add_argument("--keep", action="store_true", help="keep the sweep folders")
    p.add_argument("-v", "--verbose", action="store_true", help="echo the children's output")
    p.add_argument("--json", type=Path, help="also write every figure here")
    p.add_argument("--measure-floors", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    for k, v in (QUICK if args.quick else FULL).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.measure_floors:
        print(json.dumps(measure_floors(args.measure_floors, args.floor_mb, args.disk_mb)))
        return
    only = [k for k in ORDER if k in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(ORDER)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}; rows are {', '.join(ORDER)}")
    configs = [(" ".join(args.set) or "defaults", list(args.set))]
    configs += [(" ".join([*args.set, c]), [*args.set, *c.split()]) for c in args.compare]

    facts = machine()
    print(machine_line(facts), flush=True)
    work = Path(tempfile.mkdtemp(prefix="sf-bench-", dir=args.work))
    stopped = ""
    bench = end_floors = None
    try:
        fl = floors(work, args)
        print("floors: " + floor_text(fl) + "\n", flush=True)
        bench = Bench(args, work, fl)
        print(HEADER, flush=True)
        handlers = {"help": bench.w_help, "dryrun": bench.w_dryrun, "W3": bench.w_w3,
                    "W1": bench.w_w1, "marginal": bench.w_marginal, "duration": bench.w_duration,
                    "W2": bench.w_w2}
        for key in only:  # figure by figure, each config beside the other (same machine state)
            for label, ov in configs:
                if key == "help" and ov is not configs[0][1]:
                    continue  # --help takes no overrides: once is enough
                bench.say(f"{key} [{label}]")
                try:
                    handlers[key](label, ov)
                except Exception as e:  # one broken workload must not lose the other rows
                    msg = " ".join(str(e).split())
                    bench.emit(Row(key, key, label, "-", "-", "ERROR", note=msg))
        bench.say("floors again (how far the machine drifted while it ran)")
        end_floors = floors(work, args)
    except KeyboardInterrupt:
        stopped = "stopped by Ctrl-C: the rows measured by then"
    finally:
        shutil.rmtree(work, ignore_errors=True)

    facts["load_end"] = os.getloadavg()
    facts["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    if bench is None:
        print(stopped or "no floors measured")
        return
    print(f"\n## Issue 13 figures {('(' + stopped + ')') if stopped else ''}\n")
    print(machine_line(facts) + "\n")
    print(HEADER)
    for row in bench.rows:
        print(row.line())
    tally = {}
    for row in bench.rows:
        tally[row.status] = tally.get(row.status, 0) + 1
    print("\n" + ", ".join(f"{k} {v}" for k, v in tally.items()))
    print(f"\nfloors (used above): {floor_text(bench.floors)}")
    if end_floors:
        print(f"floors at the end: {floor_text(end_floors)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": facts, "floors": bench.floors,
                                         "floors_end": end_floors,
                                         "rows": [asdict(r) for r in bench.rows],
                                         "sweeps": bench.results}, indent=1, default=str))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
