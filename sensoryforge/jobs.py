"""One Hydra job: simulate its stimuli in batches and write the job folder.

A job folder holds
  spikes.npz         per stimulus and population, the flat indices t * N + n of the spikes
  series.npz         the outcome series per stimulus, and their time axis `times` (ms)
  intermediates.npz  with pipeline.save_intermediates: drive, membrane potential, stimulus factors
  job.json           written last and atomically: it marks the job finished and describes every
                     stimulus (id, type, parameters, seeds, measures, status and error)
A stimulus that fails is recorded as failed with its error; the others are kept.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from sensoryforge import outcomes
from sensoryforge.config import stimulus_type, to_stimulus
from sensoryforge.pipeline import Simulator, noise_seed
from sensoryforge.stimuli import Stimulus

log = logging.getLogger("sensoryforge")

JOB_FILE = "job.json"
FORMAT = "sensoryforge-job/1"
# keys that change neither spikes nor outcomes; left out of fingerprints and datasets' configs
NON_RESULT_KEYS = ("chunk", "dry_run", "fail_stimuli", "dataset", "batch_file", "objective", "validation_checks")
NON_RESULT_PIPELINE_KEYS = ("batch_size", "threads", "save_intermediates")


@dataclass
class StimSpec:
    """One stimulus of a job: its id, the built stimulus, its seeds and the sweep point."""

    id: str
    stimulus: Stimulus
    seed: int
    repetition: int
    point: dict[str, Any]
    fingerprint: str | None = None

    @property
    def noise_seed(self) -> int:
        return noise_seed(self.seed, self.repetition)


def tmp_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place (hidden, per process)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_bytes(path: Path, write) -> None:
    """Write through `write(file)` into a temporary file, then rename it into place."""
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, lambda f: f.write(json.dumps(obj, indent=1, default=_json_default).encode()))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def clean_float(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def result_config(cfg: DictConfig) -> dict:
    """The resolved config minus keys that cannot change results."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for k in NON_RESULT_KEYS:
        d.pop(k, None)
    for k in NON_RESULT_PIPELINE_KEYS:
        d["pipeline"].pop(k, None)
    d["stimulus"] = {"type": stimulus_type(cfg.stimulus), **d["stimulus"]}
    return d


def build_stimulus(base: DictConfig, values: dict[str, Any]) -> Stimulus:
    """The stimulus of a sweep point: `stimulus.*` values merged onto the job's stimulus node."""
    own = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("stimulus.")}
    node = OmegaConf.merge(base, own) if own else base
    return to_stimulus(node)


def available_cores() -> int:
    """Cores this process may use: those Slurm gave the job when inside one, else the CPU
    affinity (which cgroups and task pinning narrow), else all."""
    for var in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parallel_jobs(n_jobs: int, cores: int) -> int:
    """Jobs at a time for a joblib-style n_jobs: n, or when negative all cores but |n| - 1."""
    n = int(n_jobs)
    return max(1, cores + 1 + n if n < 0 else n)


def configure_threads(cfg: DictConfig) -> None:
    """Give each job its share of the cores so parallel jobs do not oversubscribe the CPU:
    pipeline.threads if set, else the launcher's cpus_per_task, else the cores divided by the
    launcher's n_jobs (joblib workers run one job each)."""
    n = cfg.pipeline.threads
    if n <= 0:
        from hydra.core.hydra_config import HydraConfig

        cores = available_cores()
        parallel = 1
        if HydraConfig.initialized():
            launcher = HydraConfig.get().launcher
            jobs = launcher.get("n_jobs", None)
            if jobs is not None:
                parallel = parallel_jobs(jobs, cores)
            cpus = launcher.get("cpus_per_task", None)
            if cpus:
                n = int(cpus)
        if n <= 0:
            n = max(1, cores // parallel)
    torch.set_num_threads(n)


def run(cfg: DictConfig, specs: list[StimSpec], out_dir: Path) -> dict:
    """Simulate `specs` with the job's config and write the job folder. Returns job.json's dict."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / JOB_FILE).unlink(missing_ok=True)  # a stale marker must not outlive a re-run
    pipeline = cfg.pipeline
    sim = Simulator(pipeline, cfg.neurons)
    batch = pipeline.batch_size or sim.auto_batch()
    keep = bool(pipeline.save_intermediates)
    fail = set(cfg.fail_stimuli)

    spikes_out: dict[str, np.ndarray] = {}
    series_out: dict[str, np.ndarray] = {}
    inter_out: dict[str, np.ndarray] = {}
    records: dict[str, dict] = {}

    def simulate(group: list[StimSpec]) -> None:
        for s in group:
            if s.id in fail:
                raise RuntimeError(f"{s.id}: failure injected on purpose (fail_stimuli)")
        res = sim.run([s.stimulus for s in group], [s.noise_seed for s in group], intermediates=keep)
        times, ser, meas = outcomes.compute(res.spikes, cfg.outcome, sim.dt)
        series_out["times"] = times.numpy()
        for b, s in enumerate(group):
            counts = {}
            for pop, x in res.spikes.items():
                flat = torch.nonzero(x[b].reshape(-1)).reshape(-1).cpu().numpy()
                spikes_out[f"{s.id}/{pop}"] = flat.astype(np.int32 if x[b].numel() < 2**31 else np.int64)
                counts[pop] = int(flat.size)
            for name, v in ser.items():
                series_out[f"{s.id}/{name}"] = v[b].numpy()
            if keep:
                for pop in res.drive:
                    inter_out[f"{s.id}/{pop}_drive"] = res.drive[pop][b].cpu().numpy()
                    inter_out[f"{s.id}/{pop}_voltage"] = res.voltage[pop][b].cpu().numpy()
                spatial, temporal = res.factors[b]
                inter_out[f"{s.id}/stimulus_spatial"] = spatial.cpu().numpy()
                inter_out[f"{s.id}/stimulus_temporal"] = temporal.cpu().numpy()
            records[s.id].update(
                status="ok",
                spike_counts=counts,
                measures={k: clean_float(float(v[b])) for k, v in meas.items()},
            )

    for s in specs:
        records[s.id] = {
            "id": s.id,
            "type": s.stimulus.type_name,
            "params": s.stimulus.params(),
            "point": s.point,
            "seed": s.seed,
            "repetition": s.repetition,
            "noise_seed": s.noise_seed,
            "fingerprint": s.fingerprint,
            "status": "failed",
        }
    t_built = time.perf_counter()
    for start in range(0, len(specs), batch):
        group = specs[start : start + batch]
        try:
            simulate(group)
        except Exception:
            # isolate the failure: every stimulus of the batch again, alone
            for s in group:
                try:
                    simulate([s])
                except Exception as e:  # noqa: BLE001 - recorded and reported, never swallowed
                    records[s.id]["error"] = f"{type(e).__name__}: {e}"
                    log.error("%s failed: %s\n%s", s.id, e, traceback.format_exc())

    t_simulated = time.perf_counter()
    atomic_write_bytes(out_dir / "spikes.npz", lambda f: np.savez_compressed(f, **spikes_out))
    atomic_write_bytes(out_dir / "series.npz", lambda f: np.savez_compressed(f, **series_out))
    files = {"spikes": "spikes.npz", "series": "series.npz"}
    if keep:
        atomic_write_bytes(out_dir / "intermediates.npz", lambda f: np.savez_compressed(f, **inter_out))
        files["intermediates"] = "intermediates.npz"
    job = {
        "format": FORMAT,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": socket.gethostname(),
        "runtime_s": round(time.perf_counter() - t0, 3),
        # build: population and filters; simulate: drive, noise, spiking, outcomes; write: files
        "timing_s": {
            "build": round(t_built - t0, 3),
            "simulate": round(t_simulated - t_built, 3),
            "write": round(time.perf_counter() - t_simulated, 3),
        },
        "steps": sim.steps,
        "dt": sim.dt,
        "counts": {p.name: p.count for p in sim.populations},
        "grid": {"size": sim.grid.size, "spacing": sim.grid.spacing},
        "device": str(sim.device),
        "threads": torch.get_num_threads(),
        "config": result_config(cfg),
        "files": files,
        "stimuli": [records[s.id] for s in specs],
    }
    atomic_write_json(out_dir / JOB_FILE, job)
    return job


def read_job(job_dir: Path) -> dict | None:
    """job.json of a finished job folder, or None if the job did not finish."""
    try:
        return json.loads((job_dir / JOB_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def spec_from_config(cfg: DictConfig, sid: str, point: dict) -> StimSpec:
    return StimSpec(sid, to_stimulus(cfg.stimulus), int(cfg.seed), int(cfg.repetition), point)


def dense_spikes(flat: np.ndarray, steps: int, n: int) -> np.ndarray:
    """[T, N] bool raster from flat spike indices."""
    out = np.zeros(steps * n, dtype=bool)
    out[flat] = True
    return out.reshape(steps, n)
