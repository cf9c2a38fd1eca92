"""Aggregation speed, peak memory and dataset sizes on a large synthetic sweep.

    PYTHONPATH=$PWD python benchmarks/aggregate.py                  # 2,000 stimuli, two densities
    PYTHONPATH=$PWD python benchmarks/aggregate.py --stimuli 500 --scales 1

It writes job folders directly, as `sensoryforge -m` would leave them (spikes.npz, series.npz,
job.json with the real config, measures computed by sensoryforge.core.outcomes), for the default
populations at dt 0.5 ms (the workload of benchmarks/RESULTS.md; the default dt is 0.25 ms):
1 s (T = 2000), 100 SA + 196 RA + 36 PC + 25 SA2 afferents, 100 stimuli per job.
Spikes are Poisson with realistic time courses: SA sustained over the ramp and hold, RA and PC
bursts at onset and offset, SA2 slow and sustained; afferent rates fall off with their distance from
the stimulus as in a receptive-field map. `--scales` multiplies every rate: 1 is about the quick-start
sweep on average (~330 spikes per stimulus over 353 afferents), 10 a strongly driven sweep
(population mean ~10 Hz), 30 a saturating one.

Each aggregation runs in a fresh subprocess that reports its own peak RSS (getrusage ru_maxrss),
so imports (torch, h5py, pandas, matplotlib) are included, as a user would see them. Peak RSS is
the child's VmHWM (/proc/self/status): ru_maxrss would also count the pages the child shared with
this (large) parent between fork and exec.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
COUNTS = {"sa": 100, "ra": 196, "pc": 36, "sa2": 25}
DT, STEPS = 0.5, 2000


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


def make_stimulus(rng, n: int, profile: np.ndarray, sigma: float) -> np.ndarray:
    """Flat spike indices t * n + i for n afferents."""
    if n == 0:
        return np.zeros(0, np.int32)
    side = math.ceil(math.sqrt(n))
    pos = (np.stack([np.arange(n) % side, np.arange(n) // side], 1) + 0.5) / side * 12 - 6  # mm
    reach = np.exp(-(pos**2).sum(1) / (2 * (sigma + 1.0) ** 2))  # RF overlap with the bump
    expected = reach[:, None] * profile[None, :] * DT / 1000  # [n, T] spikes per step
    k = rng.poisson(expected.sum(1))
    total = profile.sum()
    if total <= 0 or k.sum() == 0:
        return np.zeros(0, np.int32)
    steps = rng.choice(STEPS, size=int(k.sum()), p=profile / total)
    neurons = np.repeat(np.arange(n), k)
    return np.unique(steps.astype(np.int64) * n + neurons).astype(np.int32)


def make_sweep(out: Path, n_stimuli: int, per_job: int, scale: float, seed: int = 0) -> dict:
    import torch
    from omegaconf import OmegaConf

    from sensoryforge.config import load_config, result_config
    from sensoryforge.core import outcomes
    from sensoryforge.dataset.jobs import write_arrays, write_record

    cfg = load_config([f"pipeline.dt={DT}"])  # the config the job folders say they ran
    config = result_config(cfg)
    outcome = OmegaConf.create(config["outcome"])
    rng = np.random.default_rng(seed)
    amplitudes = [10, 20, 30, 40, 50]
    sigmas = [0.3, 0.5, 0.8, 1.0, 1.5]
    reps = max(1, n_stimuli // (len(amplitudes) * len(sigmas)))
    points = [(a, s, r) for a in amplitudes for s in sigmas for r in range(reps)]
    points = (points * (n_stimuli // len(points) + 1))[:n_stimuli]
    width = max(4, len(str(n_stimuli - 1)))
    total_spikes = 0
    for j0 in range(0, n_stimuli, per_job):
        chunk = list(range(j0, min(j0 + per_job, n_stimuli)))
        name = f"stim_{chunk[0]:0{width}d}-{chunk[-1]:0{width}d}"
        jd = out / name
        jd.mkdir(parents=True)
        spikes_out, series_out, records = {}, {}, []
        dense = {p: torch.zeros(len(chunk), STEPS, n, dtype=torch.bool) for p, n in COUNTS.items()}
        for b, i in enumerate(chunk):
            amp, sigma, rep = points[i]
            sid = f"stim_{i:0{width}d}"
            prof = rate_profiles(amp, scale)
            counts = {}
            for pop, n in COUNTS.items():
                flat = make_stimulus(rng, n, prof[pop], sigma)
                spikes_out[f"{sid}/{pop}"] = flat
                dense[pop][b].view(-1)[torch.from_numpy(flat.astype(np.int64))] = True
                counts[pop] = int(flat.size)
                total_spikes += flat.size
            records.append({
                "id": sid, "type": "gaussian",
                "params": {"t_pre": 100.0, "t_ramp": 50.0, "t_plateau": 700.0, "amplitude": float(amp),
                           "sigma": float(sigma), "center_x": 0.0, "center_y": 0.0},
                "point": {"stimulus.amplitude": amp, "stimulus.sigma": sigma, "repetition": rep},
                "seed": 0, "repetition": rep, "noise_seed": int(rng.integers(2**62)), "fingerprint": None,
                "status": "ok", "spike_counts": counts,
            })
        times, ser, meas = outcomes.compute(dense, outcome, DT)
        series_out["times"] = times.numpy()
        for b, rec in enumerate(records):
            for k, v in ser.items():
                series_out[f"{rec['id']}/{k}"] = v[b].numpy()
            rec["measures"] = {k: (None if math.isnan(float(v[b])) else float(v[b])) for k, v in meas.items()}
        files = write_arrays(jd, {"spikes": spikes_out, "series": series_out})
        write_record(jd, {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": "bench",
            "runtime_s": 0.0, "steps": STEPS, "dt": DT, "counts": COUNTS,
            "grid": {"size": 80, "spacing": 0.15}, "device": "cpu", "config": config,
            "files": files, "stimuli": records,
        })
    return {"spikes": total_spikes}


CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
mode = sys.argv[1]
if mode == "imports":
    import torch, h5py, pandas, scipy.special, matplotlib.pyplot  # noqa
    from sensoryforge.dataset import aggregate, tables, plots  # noqa
else:
    from sensoryforge.cli.aggregate import main
    main([sys.argv[2], "--format", mode, "-o", sys.argv[3]])
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")]
rss = hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"s": time.perf_counter() - t0, "rss_mb": rss / 1024}))
"""


def child(mode: str, src: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(out)], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"aggregation failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stimuli", type=int, default=2000)
    p.add_argument("--per-job", type=int, default=100)
    p.add_argument("--scales", default="1,10,30", help="rate multipliers, comma-separated")
    p.add_argument("--formats", default="hdf5,pytorch,both")
    p.add_argument("--dir", type=Path, help="work folder (default: a temporary one, removed)")
    args = p.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="sf-bench-agg-"))
    n_total = sum(COUNTS.values())
    dense_mb = args.stimuli * STEPS * n_total / 2**20
    print(f"{args.stimuli} stimuli x T={STEPS} x N={n_total} ({COUNTS}); dense uint8 = {dense_mb:.0f} MB; "
          f"{os.cpu_count()} cores; work folder {work}")
    base = child("imports", Path("."), Path("."))
    print(f"baseline: importing torch, h5py, pandas, scipy.special, matplotlib and sensoryforge = {base['rss_mb']:.0f} MB RSS\n")
    head = (f"{'rates':>6} {'spikes/stim':>11} {'mean Hz':>8} {'format':>8} {'s/stim (ms)':>11} {'total s':>8}"
            f" {'peak MB':>8} {'h5 MB':>7} {'pt MB':>7} {'npz MB':>7} {'h5/dense':>9} {'pt/dense':>9}")
    print(head)
    print("-" * len(head))
    try:
        for scale in [float(s) for s in args.scales.split(",")]:
            src = work / f"sweep_x{scale:g}"
            if src.exists():
                shutil.rmtree(src)
            t = time.perf_counter()
            info = make_sweep(src, args.stimuli, args.per_job, scale)
            gen_s = time.perf_counter() - t
            npz_mb = sum(f.stat().st_size for f in src.glob("*/spikes.npz")) / 2**20
            per_stim = info["spikes"] / args.stimuli
            hz = per_stim / n_total / (STEPS * DT / 1000)
            for fmt in args.formats.split(","):
                out = work / f"out_x{scale:g}_{fmt}"
                r = child(fmt, src, out)
                h5 = (out / "results.h5").stat().st_size / 2**20 if (out / "results.h5").exists() else math.nan
                pt = (out / "results.pt").stat().st_size / 2**20 if (out / "results.pt").exists() else math.nan
                print(f"{scale:>6g} {per_stim:>11.0f} {hz:>8.2f} {fmt:>8} {1000 * r['s'] / args.stimuli:>11.2f}"
                      f" {r['s']:>8.1f} {r['rss_mb']:>8.0f} {h5:>7.1f} {pt:>7.1f} {npz_mb:>7.1f}"
                      f" {h5 / dense_mb:>9.4f} {pt / dense_mb:>9.4f}")
                shutil.rmtree(out)
            print(f"{'':>6} (generated in {gen_s:.0f} s; results.pt holds int64 COO indices: "
                  f"{17 * per_stim * args.stimuli / 2**20:.0f} MB of index + value bytes)")
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\npeak RSS of this process (generation): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
