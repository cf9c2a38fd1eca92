"""One Hydra job's work: simulate its stimuli in batches and write its job folder
(dataset/jobs.py says what the folder holds). A stimulus that fails is recorded as failed with its
error (a failing batch is retried stimulus by stimulus); the others are kept."""

from __future__ import annotations

import logging
import math
import shutil
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
from sensoryforge.core.response import encode_batch
from sensoryforge.core.simulator import Simulator, noise_seed
from sensoryforge.core.stimuli import Stimulus
from sensoryforge.dataset import partial, progress
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


def spec_from_plan(cfg: DictConfig, entry: dict, base: StimSpec | None = None) -> StimSpec:
    """A stimulus of a chunk, from its entry in the sweep's plan (its own values on the job's
    config). `base`: the job's own stimulus and seeds (spec_from_config), built once for all the
    chunk's stimuli, so each is its values on a copy of it (no config merge per stimulus)."""
    v = entry["values"]
    base = base or spec_from_config(cfg, entry["id"], {})
    return StimSpec(entry["id"], build_stimulus(base.stimulus, v), int(v.get("seed", base.seed)),
                    int(v.get("repetition", base.repetition)), entry["point"], entry["fingerprint"])


def _stopped(e: BaseException) -> bool:
    """submitit's stop at a time limit or preemption when it does not requeue the task
    (UncompletedJobError, raised from its signal handler in the middle of a batch): it ends the
    task; it is no stimulus' failure to isolate and record."""
    return type(e).__name__ == "UncompletedJobError"


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


class Arrays:
    """What a job keeps of its batches as the simulator returns them (spikes in the codec of
    core.response, outcome series, intermediates when kept, and each stimulus' counts and
    measures), and writes at its end (dataset/jobs.py write_arrays)."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.spikes: dict[str, np.ndarray] = {}
        self.series: dict[str, np.ndarray] = {}
        self.intermediates: dict[str, np.ndarray] = {}

    def add(self, ids: list[str], res, flats: dict, times, ser: dict, meas: dict) -> list[dict]:
        """One simulated batch (`res` of Simulator.run, `flats` its spikes as encode_batch gives
        them; outcomes.compute's times, series and measures of it). Returns each stimulus' record
        entries: spike_counts, measures. Nothing is kept when it raises (the batch is then retried
        stimulus by stimulus)."""
        # one conversion per tensor: per-stimulus torch calls (float of a 0-d tensor) cost more
        # than the data
        series = {name: v.cpu().numpy() for name, v in ser.items()}
        measures = {k: v.tolist() for k, v in meas.items()}
        spikes, named, inter, out = {}, {"times": times.numpy()}, {}, []
        for b, sid in enumerate(ids):
            for pop, f in flats.items():
                spikes[f"{sid}/{pop}"] = f[b]
            for name, v in series.items():
                named[f"{sid}/{name}"] = v[b]
            if self.keep:
                for pop in res.drive:
                    inter[f"{sid}/{pop}_drive"] = res.drive[pop][b].cpu().numpy()
                    inter[f"{sid}/{pop}_voltage"] = res.voltage[pop][b].cpu().numpy()
                spatial, temporal = res.factors[b]
                inter[f"{sid}/stimulus_spatial"] = spatial.cpu().numpy()
                inter[f"{sid}/stimulus_temporal"] = temporal.cpu().numpy()
            out.append({"spike_counts": {pop: int(f[b].size) for pop, f in flats.items()},
                        "measures": {k: _finite(v[b]) for k, v in measures.items()}})
        self.spikes.update(spikes)
        self.series.update(named)
        self.intermediates.update(inter)
        return out

    def kinds(self) -> dict[str, dict[str, np.ndarray] | None]:
        return {"spikes": self.spikes, "series": self.series,
                "intermediates": self.intermediates if self.keep else None}

    def write(self, out_dir: Path) -> dict[str, str]:
        """The job's npz files; returns job.json's `files` entry."""
        return write_arrays(out_dir, self.kinds())

    def of(self, ids: list[str]) -> dict[str, dict[str, np.ndarray] | None]:
        """The arrays of stimuli `ids` (and the shared ones, as the series' `times`), by kind."""
        want = set(ids)
        return {kind: None if named is None else partial.owned(named, want) for kind, named in self.kinds().items()}

    def restore(self, arrays: dict[str, dict[str, np.ndarray]], ids: set[str]) -> None:
        """Takes the saved arrays of stimuli `ids` (partial.restore) as if simulated here."""
        for kind, named in arrays.items():
            mine = getattr(self, kind, None)
            if mine is not None:
                mine.update(partial.owned(named, ids))


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

    arrays = Arrays(keep)
    records: dict[str, dict] = {}

    def simulate(group: list[StimSpec]) -> None:
        for s in group:
            if s.id in fail:
                raise RuntimeError(f"{s.id}: failure injected on purpose (fail_stimuli)")
        res = sim.run([s.stimulus for s in group], [s.noise_seed for s in group], intermediates=keep)
        # the spikes encoded once (by the kernel, or in one pass over each population's [B, T, N]
        # rasters); the outcomes are counted from these indices (a bincount), not the rasters
        flats = res.flats or {pop: encode_batch(x) for pop, x in res.spikes.items()}
        encoded = {pop: outcomes.Flat(flats[pop], x.shape[-1], sim.steps) for pop, x in res.spikes.items()}
        times, ser, meas = outcomes.compute(encoded, cfg.outcome, sim.dt)
        for s, entries in zip(group, arrays.add([s.id for s in group], res, flats, times, ser, meas)):
            records[s.id].update(status="ok", **entries)

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
    job = {  # what job.json says of the whole job, and each saved segment of it
        "steps": sim.steps,
        "dt": sim.dt,
        "counts": {p.name: p.count for p in sim.populations},
        "grid": {"size": sim.grid.size, "spacing": sim.grid.spacing},
        "device": str(sim.device),
        "threads": torch.get_num_threads(),
        "config": result_config(cfg),
    }
    # a requeued job (same folder) takes what it saved before it was stopped
    saved, saved_arrays, _ = partial.restore(out_dir) if cfg.chunk else ({}, {}, {})
    reused = {s.id for s in specs if s.id in saved and saved[s.id].get("fingerprint") == s.fingerprint}
    for sid in reused:
        records[sid] = saved[sid]
    arrays.restore(saved_arrays, reused)
    todo = [s for s in specs if s.id not in reused]
    if reused:
        log.info("%d of %d stimuli restored from this job's saved segments", len(reused), len(specs))
    ledger = progress.Ledger(out_dir, len(specs)) if cfg.chunk else None
    if ledger and reused:
        ledger.add(sorted(reused), {}, saved=True)
    every, segment, unsaved = partial.segment_s(), partial.next_segment(out_dir), []
    last_save = time.perf_counter()
    t_built = time.perf_counter()
    def save() -> None:  # the stimuli simulated since the last save, as one segment
        nonlocal segment, unsaved, last_save
        partial.write_segment(out_dir, segment, job, [records[i] for i in unsaved], arrays.of(unsaved))
        if ledger:
            ledger.add(unsaved, {}, saved=True)
        segment, unsaved, last_save = segment + 1, [], time.perf_counter()

    try:
        for start in range(0, len(todo), batch):
            group = todo[start : start + batch]
            try:
                simulate(group)
            except Exception as e:
                if _stopped(e):
                    raise
                # isolate the failure: every stimulus of the batch again, alone
                for s in group:
                    try:
                        simulate([s])
                    except Exception as e:  # noqa: BLE001 - recorded and reported, never swallowed
                        if _stopped(e):
                            raise
                        # one line in the log; the traceback is kept in job.json for whoever debugs it
                        records[s.id]["error"] = f"{type(e).__name__}: {e}"
                        records[s.id]["traceback"] = traceback.format_exc()
                        if cfg.chunk:  # a single run says it once, as its exit message
                            log.error("%s failed: %s", s.id, records[s.id]["error"])
            if ledger:
                ledger.add([s.id for s in group if records[s.id]["status"] == "ok"],
                           {s.id: records[s.id].get("error", "failed") for s in group
                            if records[s.id]["status"] != "ok"})
            unsaved += [s.id for s in group if records[s.id]["status"] == "ok"]
            if cfg.chunk and unsaved and start + batch < len(todo) and time.perf_counter() - last_save >= every:
                save()
    except BaseException:
        # stopped (a time limit, a preemption, Ctrl-C): keep what is simulated for the job's
        # requeue or the sweep's resume, then stop as asked
        if cfg.chunk and unsaved:
            try:
                save()
            except Exception as e:  # noqa: BLE001 - the stop matters more than this save
                log.warning("could not save the last %d stimuli before stopping: %s", len(unsaved), e)
        raise

    t_simulated = time.perf_counter()
    files = arrays.write(out_dir)
    record = write_record(out_dir, {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "host": socket.gethostname(),
        "runtime_s": round(time.perf_counter() - t0, 3),
        # build: population and filters; simulate: drive, noise, spiking, outcomes; write: files
        "timing_s": {
            "build": round(t_built - t0, 3),
            "simulate": round(t_simulated - t_built, 3),
            "write": round(time.perf_counter() - t_simulated, 3),
        },
        **job,
        "files": files,
        "stimuli": [records[s.id] for s in specs],
        **({"restored": len(reused)} if reused else {}),
    })
    shutil.rmtree(out_dir / partial.PARTIAL, ignore_errors=True)  # job.json holds them all now
    return record
