"""Writing job folders and aggregating them, per stimulus, at the default workload.

    PYTHONPATH=$PWD python benchmarks/aggregate.py                    # 1,000 stimuli, 3 runs each
    PYTHONPATH=$PWD python benchmarks/aggregate.py --stimuli 200 --runs 1 --scales 1,10

Workload: the defaults (dt 0.25 ms, 1-s stimuli: T = 4000; 100 SA + 196 RA + 36 PC + 25 SA2
afferents; the default outcome config), 250 stimuli per job (the basic launcher's automatic
chunking of 1,000 stimuli), simulated in batches of 50. Spikes are synthetic Poisson trains with
realistic time courses (SA sustained over ramp and hold, RA and PC bursts at onset and offset, SA2
slow and sustained; rates fall off with the distance from the stimulus). `--scales` multiplies
every rate: 1 is about a quick-start sweep (~330 spikes per stimulus), 10 a strongly driven one.

Measured, each the median of `--runs` runs:
  write       the job's writing (sensoryforge/job.py `Arrays`: spike encoding of the [B, T, N]
              rasters the simulator returns, the npz files; jobs.write_record: job.json), in this
              process; the rasters are built before the clock starts
  aggregate   `sensoryforge-aggregate DIR` (all outputs, --format both) in a fresh child process,
              each part timed by wrapping its function there: collect (reading and checking the
              job folders), index (stimulus_index.json), hdf5, pytorch, tables, plots, and the
              total of aggregate() (what the sweeper pays at the end of a sweep); peak RSS is the
              child's VmHWM (imports of torch, h5py, pandas and matplotlib included)
and the sizes of what was written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COUNTS = {"sa": 100, "ra": 196, "pc": 36, "sa2": 25}
DT, STEPS = 0.25, 4000
BATCH = 50  # stimuli per simulated batch: what the writer gets at a time


def rate_profiles(amplitude: float, scale: float) -> dict[str, np.ndarray]:
    """Per-population rate (Hz) over time for an afferent at the stimulus centre."""
    t = np.arange(STEPS) * DT
    rise = np.clip((t - 100) / 50, 0, 1)
    fall = np.clip((t - 900) / 50, 0, 1)
    env = np.minimum(rise, 1 - fall)
    onset = np.exp(-((t - 125) ** 2) / (2 * 15**2)) + 0.6 * np.exp(-((t - 925) ** 2) / (2 * 15**2))
    a = amplitude / 50.0
    return {
        "sa": scale * a * (20 * env + 30 * onset),
        "ra": scale * a * 100 * onset,
        "pc": scale * a * 100 * onset,
        "sa2": scale * a * 25 * env,
    }


def make_flat(rng, n: int, profile: np.ndarray, sigma: float) -> np.ndarray:
    """Sorted flat spike indices t * n + i for n afferents."""
    side = math.ceil(math.sqrt(n))
    pos = (np.stack([np.arange(n) % side, np.arange(n) // side], 1) + 0.5) / side * 12 - 6  # mm
    reach = np.exp(-(pos**2).sum(1) / (2 * (sigma + 1.0) ** 2))  # RF overlap with the bump
    k = rng.poisson(reach * profile.sum() * DT / 1000)
    total = profile.sum()
    if total <= 0 or k.sum() == 0:
        return np.zeros(0, np.int64)
    steps = rng.choice(STEPS, size=int(k.sum()), p=profile / total)
    return np.unique(steps.astype(np.int64) * n + np.repeat(np.arange(n), k))


def dense(flats: list[dict[str, np.ndarray]]):
    """population -> [B, T, N] bool tensor of a batch: what Simulator.run returns."""
    import torch

    out = {}
    for pop, n in COUNTS.items():
        x = torch.zeros(len(flats), STEPS * n, dtype=torch.bool)
        for b, f in enumerate(flats):
            x[b, torch.from_numpy(f[pop])] = True
        out[pop] = x.view(len(flats), STEPS, n)
    return out


def make_sweep(n_stimuli: int, per_job: int, scale: float, seed: int = 0):
    """The jobs of a sweep in memory: (name, [(record, flats, series)], times), and the config."""
    from omegaconf import OmegaConf

    from sensoryforge.config import load_config, result_config
    from sensoryforge.core import outcomes

    cfg = load_config([])
    assert cfg.pipeline.dt == DT, f"the default dt is {cfg.pipeline.dt} ms now: update benchmarks/aggregate.py"
    config = result_config(cfg)
    outcome = OmegaConf.create(config["outcome"])
    rng = np.random.default_rng(seed)
    amplitudes, sigmas = [10, 20, 30, 40, 50], [0.3, 0.5, 0.8, 1.0, 1.5]
    reps = max(1, n_stimuli // (len(amplitudes) * len(sigmas)))
    points = [(a, s, r) for a in amplitudes for s in sigmas for r in range(reps)]
    points = (points * (n_stimuli // len(points) + 1))[:n_stimuli]
    width = max(4, len(str(n_stimuli - 1)))
    jobs, spikes = [], 0
    for j0 in range(0, n_stimuli, per_job):
        chunk = list(range(j0, min(j0 + per_job, n_stimuli)))
        stims = []
        for b0 in range(0, len(chunk), BATCH):
            batch = chunk[b0 : b0 + BATCH]
            flats, records = [], []
            for i in batch:
                amp, sigma, rep = points[i]
                prof = rate_profiles(amp, scale)
                flats.append({p: make_flat(rng, n, prof[p], sigma) for p, n in COUNTS.items()})
                spikes += sum(f.size for f in flats[-1].values())
                records.append({
                    "id": f"stim_{i:0{width}d}", "type": "gaussian",
                    "params": {"t_pre": 100.0, "t_ramp": 50.0, "t_plateau": 700.0, "amplitude": float(amp),
                               "sigma": float(sigma), "center_x": 0.0, "center_y": 0.0},
                    "point": {"stimulus.amplitude": amp, "stimulus.sigma": sigma, "repetition": rep},
                    "seed": 0, "repetition": rep, "noise_seed": int(rng.integers(2**62)), "fingerprint": None,
                    "status": "failed",
                })
            stims.append((records, flats, *outcomes.compute(dense(flats), outcome, DT)))
        jobs.append((f"stim_{chunk[0]:0{width}d}-{chunk[-1]:0{width}d}", stims))
    return jobs, config, spikes


def write_sweep(out: Path, jobs, config) -> float:
    """Writes the job folders as sensoryforge/job.py does; returns the seconds spent writing."""
    from sensoryforge.dataset.jobs import write_record
    from sensoryforge.job import Arrays

    spent = 0.0
    for name, stims in jobs:
        jd = out / name
        jd.mkdir(parents=True)
        arrays, records = Arrays(keep=False), []
        for recs, flats, times, ser, meas in stims:
            res = SimpleNamespace(spikes=dense(flats))  # the simulator's output, before the clock
            t = time.perf_counter()
            entries = arrays.add([r["id"] for r in recs], res, times, ser, meas)
            records += [{**r, "status": "ok", **e} for r, e in zip(recs, entries)]
            spent += time.perf_counter() - t
        t = time.perf_counter()
        files = arrays.write(jd)
        write_record(jd, {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": "bench", "runtime_s": 0.0,
            "timing_s": {"build": 0.0, "simulate": 0.0, "write": 0.0}, "steps": STEPS, "dt": DT,
            "counts": COUNTS, "grid": {"size": 80, "spacing": 0.15}, "device": "cpu", "threads": 1,
            "config": config, "files": files, "stimuli": records,
        })
        spent += time.perf_counter() - t
    return spent


CHILD = r"""
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
import h5py, matplotlib.pyplot, pandas, scipy.special, torch  # noqa: F401 - once per process, not timed
from sensoryforge.cli import aggregate as cli
from sensoryforge.dataset import plots, tables  # noqa: F401
t_import = time.perf_counter() - t0
t0 = time.perf_counter()
cli.main([sys.argv[1], "-o", sys.argv[2], *sys.argv[3:]])
total = time.perf_counter() - t0
timing = json.loads((Path(sys.argv[2]) / "batch_metadata.json").read_text())["aggregation_timing_s"]
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")]
print(json.dumps({"import": t_import, **timing, "total": total, "rss_mb": hwm[0] / 1024}))
"""

PARTS = ("collect", "index", "read", "hdf5", "pytorch", "tables", "plots", "total")


def aggregate_child(src: Path, out: Path, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(ROOT)), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, str(src), str(out), *extra], env=env, capture_output=True,
                       text=True)
    if r.returncode != 0:
        sys.exit(f"aggregation failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def size_mb(paths) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


VARIANTS = {  # name -> sensoryforge-aggregate options
    "default": [],
    "hdf5-only": ["--format", "hdf5", "--no-plots"],
    "ragged": ["--layout", "ragged"],
    "ragged-hdf5-only": ["--layout", "ragged", "--format", "hdf5", "--no-plots"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stimuli", type=int, default=1000)
    p.add_argument("--per-job", type=int, default=250)
    p.add_argument("--runs", type=int, default=3, help="runs of each measurement (the median is shown)")
    p.add_argument("--scales", default="1", help="rate multipliers, comma-separated")
    p.add_argument("--variants", default="default,hdf5-only,ragged,ragged-hdf5-only",
                   help=f"aggregations to time, comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed)")
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    work = args.dir or Path(tempfile.mkdtemp(prefix="sf-bench-agg-"))
    n, n_aff = args.stimuli, sum(COUNTS.values())
    print(f"{n} stimuli x T={STEPS} (dt {DT} ms) x N={n_aff} {COUNTS}, {args.per_job} per job; "
          f"median of {args.runs} runs; {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    report = []
    try:
        for scale in [float(s) for s in args.scales.split(",")]:
            jobs, config, spikes = make_sweep(n, args.per_job, scale)
            writes, src = [], work / f"sweep_x{scale:g}"
            for _ in range(args.runs):
                shutil.rmtree(src, ignore_errors=True)
                writes.append(write_sweep(src, jobs, config))
            row = {"scale": scale, "spikes_per_stimulus": spikes / n, "write_ms": 1000 * statistics.median(writes) / n,
                   "write_runs_ms": [1000 * w / n for w in writes],
                   "job_folder_mb": {f: size_mb(src.glob(f"*/{f}")) for f in ("spikes.npz", "series.npz", "job.json")}}
            for v in variants:
                out, aggs = work / f"out_x{scale:g}_{v}", []
                for _ in range(args.runs):
                    shutil.rmtree(out, ignore_errors=True)
                    aggs.append(aggregate_child(src, out, VARIANTS[v]))
                row[v] = {f"{part}_ms": 1000 * statistics.median(a.get(part, 0.0) for a in aggs) / n
                          for part in ("import", *PARTS)}
                row[v]["total_runs_ms"] = [1000 * a["total"] / n for a in aggs]
                row[v]["peak_rss_mb"] = statistics.median(a["rss_mb"] for a in aggs)
                row[v]["output_mb"] = {f.name: f.stat().st_size / 2**20 for f in sorted(out.iterdir()) if f.is_file()}
                shutil.rmtree(out)
            report.append(row)
            print(f"\nrates x{scale:g}: {row['spikes_per_stimulus']:.0f} spikes per stimulus "
                  f"({row['spikes_per_stimulus'] / n_aff / (STEPS * DT / 1000):.2f} Hz per afferent)")
            print(f"  write (job folders): {row['write_ms']:.3f} ms per stimulus (runs "
                  + ", ".join(f"{w:.3f}" for w in row["write_runs_ms"]) + ")")
            print(f"  {'aggregate, ms per stimulus':<28}" + "".join(f"{v:>18}" for v in variants))
            for part in PARTS:
                label = "total (the command)" if part == "total" else part
                print(f"  {label:<28}" + "".join(f"{row[v][part + '_ms']:>18.3f}" for v in variants))
            print(f"  {'write + aggregate':<28}" + "".join(f"{row['write_ms'] + row[v]['total_ms']:>18.3f}"
                                                          for v in variants))
            print(f"  {'  without plots':<28}" + "".join(
                f"{row['write_ms'] + row[v]['total_ms'] - row[v]['plots_ms']:>18.3f}" for v in variants))
            print(f"  {'peak RSS MB':<28}" + "".join(f"{row[v]['peak_rss_mb']:>18.0f}" for v in variants))
            print(f"  (total: aggregation without its imports, {row[variants[0]]['import_ms'] * n:.0f} ms once; "
                  "target: write + aggregate <= 0.5 ms per stimulus)")
            print("  job folders (MB): " + ", ".join(f"{k} {x:.2f}" for k, x in row["job_folder_mb"].items()))
            for v in variants:
                print(f"  {v} outputs (MB): " + ", ".join(f"{k} {x:.2f}" for k, x in row[v]["output_mb"].items()))
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
