"""One Hydra job's work: simulate its stimuli in batches and write its job folder
(dataset/jobs.py says what the folder holds). A stimulus that fails is recorded as failed with its
error (a failing batch is retried stimulus by stimulus); the others are kept."""

from __future__ import annotations

import logging
import math
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from sensoryforge.config import build_stimulus, result_config, to_stimulus
from sensoryforge.core import outcomes
from sensoryforge.core.response import encode
from sensoryforge.core.simulator import Simulator, noise_seed
from sensoryforge.core.stimuli import Stimulus
from sensoryforge.dataset.jobs import JOB_FILE, write_arrays, write_record

log = logging.getLogger("sensoryforge")


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


def spec_from_config(cfg: DictConfig, sid: str, point: dict) -> StimSpec:
    """The one stimulus of a single run."""
    return StimSpec(sid, to_stimulus(cfg.stimulus), int(cfg.seed), int(cfg.repetition), point)


def spec_from_plan(cfg: DictConfig, entry: dict) -> StimSpec:
    """A stimulus of a chunk, from its entry in the sweep's plan (its own values on the job's
    config)."""
    v = entry["values"]
    return StimSpec(entry["id"], build_stimulus(cfg.stimulus, v), int(v.get("seed", cfg.seed)),
                    int(v.get("repetition", cfg.repetition)), entry["point"], entry["fingerprint"])


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


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
                flat = spikes_out[f"{s.id}/{pop}"] = encode(x[b])
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
                measures={k: _finite(float(v[b])) for k, v in meas.items()},
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
                    # one line in the log; the traceback is kept in job.json for whoever debugs it
                    records[s.id]["error"] = f"{type(e).__name__}: {e}"
                    records[s.id]["traceback"] = traceback.format_exc()
                    if cfg.chunk:  # a single run says it once, as its exit message
                        log.error("%s failed: %s", s.id, records[s.id]["error"])

    t_simulated = time.perf_counter()
    files = write_arrays(out_dir, {"spikes": spikes_out, "series": series_out,
                                   "intermediates": inter_out if keep else None})
    return write_record(out_dir, {
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
    })
