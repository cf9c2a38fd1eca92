"""Standard workloads: prints a table of wall time, CPU time, peak memory, throughput and where the
time went (sweep overhead, building populations, simulation, writing).

    python benchmarks/run.py                 # W1-W4, chunking, floor (about 15 minutes on 2 cores)
    python benchmarks/run.py --only W1,W3    # a subset
    python benchmarks/run.py --device cuda   # W2 and W3 on a GPU

Every workload runs in a fresh child process (peak RSS is that process's own maximum), from a
temporary folder, through the real command line where a user would use it.
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
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"W1": "< 15 s wall", "W2": "< 600 s, < 2048 MB, dataset < 10% dense", "W3": "< 2 s", "W4": "flat within 20%"}
# 10,000 gaussian stimuli: amplitude x sigma x centre x centre x repetitions
W2_GRID = [
    "stimulus.amplitude=range(10,60,5)",
    "stimulus.sigma=0.3,0.5,0.8,1.0,1.5",
    "stimulus.center_x=-2,-1,0,1,2",
    "stimulus.center_y=-2,-1,0,1,2",
]


def child(cmd: list[str], cwd: Path, env: dict | None = None) -> dict:
    """Run a child process; its wall time, CPU time and peak RSS (its own, via wait4)."""
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024, "out": out}


def sweep(args: list[str], work: Path, name: str) -> dict:
    """A sweep through the CLI, with the split of its time from the job and dataset records."""
    folder = work / name
    r = child([sys.executable, "-m", "sensoryforge.run", "-m", *args, f"hydra.sweep.dir={folder}"], work)
    meta = json.loads((folder / "batch_metadata.json").read_text())
    build = simulate = write = 0.0
    for job_file in folder.glob("*/job.json"):
        t = json.loads(job_file.read_text()).get("timing_s", {})
        build += t.get("build", 0.0)
        simulate += t.get("simulate", 0.0)
        write += t.get("write", 0.0)
    aggregate = meta.get("aggregation_runtime_s", 0.0)
    n = meta["num_stimuli"]
    steps, counts = meta["steps"], meta["counts"]
    dense = n * steps * sum(counts.values())  # bytes as a dense uint8 raster
    sizes = {f: (folder / f).stat().st_size for f in ("results.h5", "results.pt") if (folder / f).exists()}
    r.update(
        stimuli=n,
        build=build,
        simulate=simulate,
        write=write + aggregate,
        overhead=r["wall"] - build - simulate - write - aggregate,
        dense_mb=dense / 2**20,
        sizes_mb={k: v / 2**20 for k, v in sizes.items()},
        jobs=len(list(folder.glob("*/job.json"))),
    )
    shutil.rmtree(folder, ignore_errors=True)
    return r


W3_SCRIPT = """
import json, sys, time, resource, torch
from sensoryforge.config import load_config, to_stimulus
from sensoryforge.core.simulator import Simulator
cfg = load_config(["neurons.sa.count=3600", "neurons.ra.count=7200", "neurons.pc.count=1152",
                   "neurons.sa2.count=1200", "pipeline.device=" + sys.argv[1]])
t0 = time.perf_counter(); sim = Simulator(cfg.pipeline, cfg.neurons); t1 = time.perf_counter()
runs = []
for _ in range(3):
    t = time.perf_counter(); res = sim.run([to_stimulus(cfg.stimulus)], [0])
    if sim.device.type == "cuda": torch.cuda.synchronize()
    runs.append(time.perf_counter() - t)
spikes = sum(int(v.sum()) for v in res.spikes.values())
print(json.dumps({"build": t1 - t0, "runs": runs, "spikes": spikes, "afferents": sim.n_total}))
"""


def w3(work: Path, device: str) -> dict:
    r = child([sys.executable, "-c", W3_SCRIPT, device], work)
    d = json.loads(r["out"].strip().splitlines()[-1])
    r.update(stimuli=1, build=d["build"], simulate=median(d["runs"]), write=0.0, overhead=0.0, afferents=d["afferents"])
    return r


FLOOR_SCRIPT = """
import json, time, torch
torch.set_num_threads(torch.get_num_threads())
n = 1 << 24
a, b, c = torch.rand(n), torch.rand(n), torch.rand(n)
def best(f, k=5):
    ts = []
    for _ in range(k):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts)
# streaming bandwidth: read two arrays, write one (12 bytes per element)
bw = 12 * n / best(lambda: torch.add(a, b, out=c))
m = torch.rand(2048, 2048)
flops = 2 * 2048**3 / best(lambda: m @ m, 3)
print(json.dumps({"bandwidth_gbs": bw / 1e9, "gflops": flops / 1e9, "threads": torch.get_num_threads()}))
"""


def floor(work: Path) -> dict:
    return json.loads(child([sys.executable, "-c", FLOOR_SCRIPT], work)["out"].strip().splitlines()[-1])


def row(name: str, r: dict, target: str, ok: bool | None) -> str:
    rate = r["stimuli"] / r["wall"] if r.get("wall") else 0.0
    status = "" if ok is None else ("PASS" if ok else "MISS")
    return (
        f"| {name} | {r['stimuli']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss_mb']:.0f} | {rate:.1f} | "
        f"{r['overhead']:.1f} | {r['build']:.1f} | {r['simulate']:.1f} | {r['write']:.1f} | {target} | {status} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="W1,W2,W3,W4,chunking,floor")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    only = set(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="sf-bench-"))
    dev = [f"pipeline.device={args.device}"]
    results: dict[str, dict] = {}
    lines = [
        "| workload | stimuli | wall s | CPU s | peak RSS MB | stimuli/s | sweep overhead s | build s | simulate s | write s | target | |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    try:
        if "W1" in only:
            r = results["W1"] = sweep(["experiment=quickstart"], work, "w1")
            lines.append(row("W1 quickstart", r, TARGETS["W1"], r["wall"] < 15))
        if "W2" in only or "W4" in only:
            r = results["W2"] = sweep([*W2_GRID, "repetition=range(8)", *dev], work, "w2")
            pct = 100 * sum(r["sizes_mb"].values()) / r["dense_mb"]
            r["dataset_pct_of_dense"] = pct
            ok = r["wall"] < 600 and r["rss_mb"] < 2048 and pct < 10
            lines.append(row("W2 10,000 gaussians", r, TARGETS["W2"], ok))
        if "W3" in only:
            r = results["W3"] = w3(work, args.device)
            lines.append(row(f"W3 1 s, {r['afferents']} afferents", r, TARGETS["W3"], r["simulate"] < 2))
        if "W4" in only:
            per = {}
            for n, grid in ((100, ["stimulus.amplitude=range(10,60,5)", "stimulus.sigma=0.3,0.5,0.8,1.0,1.5", "repetition=range(2)"]),
                            (1000, [*W2_GRID[:3], "repetition=range(4)"])):
                r = results[f"W4_{n}"] = sweep([*grid, *dev], work, f"w4_{n}")
                per[n] = r["wall"] / r["stimuli"]
                lines.append(row(f"W4 {n}", r, "", None))
            per[10000] = results["W2"]["wall"] / results["W2"]["stimuli"]
            walls = {100: results["W4_100"]["wall"], 1000: results["W4_1000"]["wall"], 10000: results["W2"]["wall"]}
            # marginal cost: what each further stimulus adds, free of the fixed start-up
            marginal = {
                "100-1000": (walls[1000] - walls[100]) / 900,
                "1000-10000": (walls[10000] - walls[1000]) / 9000,
            }
            spread = max(per.values()) / min(per.values())
            results["W4"] = {"per_stimulus_s": per, "max_over_min": spread, "marginal_s": marginal}
        if "chunking" in only:
            grid = [*W2_GRID[:3], "repetition=range(4)"]  # 1,000 stimuli
            for label, chunk in (("chunked (auto)", 0), ("one stimulus per job", 1)):
                r = results[f"chunk_{chunk}"] = sweep([*grid, f"hydra.sweeper.chunk_size={chunk}"], work, f"c{chunk}")
                lines.append(row(f"1,000 stimuli, {label} ({r['jobs']} jobs)", r, "", None))
        if "floor" in only:
            results["floor"] = floor(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nmachine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print("\n".join(lines))
    if "W2" in results:
        r = results["W2"]
        sizes = ", ".join(f"{k} {v:.0f} MB" for k, v in r["sizes_mb"].items())
        print(f"\nW2 dataset: {sizes} vs dense uint8 {r['dense_mb']:.0f} MB = {r['dataset_pct_of_dense']:.1f}%")
    if "W4" in results:
        per = results["W4"]["per_stimulus_s"]
        m = results["W4"]["marginal_s"]
        print("W4 per-stimulus wall: " + ", ".join(f"{n}: {1000 * v:.1f} ms" for n, v in per.items())
              + f"; max/min = {results['W4']['max_over_min']:.2f}; marginal per stimulus: "
              + ", ".join(f"{k}: {1000 * v:.1f} ms" for k, v in m.items())
              + f" (ratio {max(m.values()) / min(m.values()):.2f})")
    if "chunk_0" in results and "chunk_1" in results:
        a, b = results["chunk_0"], results["chunk_1"]
        print(f"chunking: {1000 * a['wall'] / a['stimuli']:.1f} ms vs {1000 * b['wall'] / b['stimuli']:.1f} ms "
              f"per stimulus ({b['wall'] / a['wall']:.1f}x)")
    if "floor" in results:
        f = results["floor"]
        print(f"floor inputs: streaming bandwidth {f['bandwidth_gbs']:.1f} GB/s, matmul {f['gflops']:.0f} GFLOP/s "
              f"({f['threads']} threads)")
    if args.json:
        for r in results.values():
            r.pop("out", None)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    main()
