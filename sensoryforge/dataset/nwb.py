"""results.nwb: the dataset in Neurodata Without Borders (pynwb), for the neurophysiology tools
that read NWB. Written with `--format nwb` (`dataset.format=nwb`, a batch file's
`batch.save_format: nwb`), fed in aggregate.py's one pass like the other writers.

  trials  one per stimulus, in stimulus-id order, on one synthetic timeline: trial 0 starts at
          0 s, each later one TRIAL_GAP_S (0.5 s) after the one before stopped (a trial lasts
          steps * dt); columns stimulus_id, type, every stimulus parameter (what a stimulus lacks:
          NaN in a number column, "" in a text one; a column mixing numbers and text holds JSON),
          seed, repetition, noise_seed, every swept key of the point, source, patch (a parameter
          named like an NWB column, e.g. id or tags, gets a stimulus_ prefix). The gap: each
          stimulus is simulated on its own from rest, and a gap keeps tools that bin the whole
          timeline (PSTHs, cross-correlograms) from joining one trial's end to the next's start
  units   one per afferent of each population of each patch (below): population (sa, ra, pc,
          sa2), afferent (its index in the population: the column of its [T, N] raster),
          x, y (mm, its position on the skin), rf_sigma (mm, its population's receptive-field
          sigma), patch, and spike_times (s, on the trial timeline: trial start + step * dt)
  file    identifier and session_id = the batch id; session_start_time = when the dataset was
          made (the timeline's 0); notes = results.h5's metadata as JSON (batch_id, config, swept,
          counts, dt, ...; json.loads(nwb.notes)); subject = the model (no animal: see SUBJECT;
          nwbinspector counts a missing subject, or one without an age, as CRITICAL);
          experimenter and institution are left out (nwbinspector suggests them: a suggestion)

A patch is the skin an afferent lives on: the config keys that fix afferent positions and
receptive fields (pipeline.seed, grid_size, spacing; per population count, jitter, rf_sigma,
innervation). A sweep that varies none of them has one patch, and every unit has spikes in every
trial; a sweep over one of them (neurons.sa.count=16,25) gets units per (patch, population) and
each unit spikes only in the trials of its patch (the trials' `patch` column says which).
Positions are not stored in the job folders: they are rebuilt from the job's config the way the
simulator builds them (core.grid.afferent_positions on the population's seed stream), once per
patch, without the receptive fields.

Memory: no rasters; the spikes of the whole dataset as (unit, time) pairs, 12 bytes a spike, since
NWB stores each unit's spike times contiguously and the job folders hold them stimulus by
stimulus. The file is written atomically (files.atomic). pynwb is imported here only, so only a
dataset written as NWB loads it.
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np

from sensoryforge.core.schema import POPULATIONS, PipelineConfig, PopulationConfig
from sensoryforge.dataset.collection import Item, flat_params
from sensoryforge.dataset.files import atomic
from sensoryforge.dataset.hdf5 import _MISSING, _attr, _column

TRIAL_GAP_S = 0.5  # seconds between one trial's stop and the next one's start
# trials columns of NWB's or this writer's own: a stimulus parameter of such a name gets a prefix
RESERVED = ("id", "start_time", "stop_time", "tags", "timeseries", "patch")
CLASSES = {"sa": "SA1 (slowly adapting type I)", "ra": "RA (rapidly adapting, FA I)",
           "pc": "PC (Pacinian, FA II)", "sa2": "SA2 (slowly adapting type II)"}
# what the afferents belong to: a model, not an animal; its four classes are those of the human
# hand's glabrous skin (SA2 included), tuned mostly against microneurography of adult volunteers
SUBJECT = dict(
    subject_id="sensoryforge-model",
    description="No animal: a simulated patch of glabrous skin (SensoryForge model) with SA1, RA, PC and SA2 "
    "afferents, the four classes of the adult human hand (docs/PHYSIOLOGY.md). Species, sex "
    "(U: unknown) and age (adult, P18Y/) describe the modelled skin, not a recorded individual.",
    species="Homo sapiens",
    sex="U",
    age="P18Y/",
)
PATCH_KEYS = ("count", "jitter", "rf_sigma", "innervation")


def _population_cfg(job: dict, pop: str) -> dict:
    defaults = PopulationConfig()
    cfg = (job.get("config") or {}).get("neurons", {}).get(pop) or {}
    # count: what the job simulated (0 for a folder from before pc); floats: 0 and 0.0 alike
    return {"count": int(job.get("counts", {}).get(pop, 0)),
            **{k: float(cfg.get(k, getattr(defaults, k))) for k in PATCH_KEYS[1:]}}


def patch_of(job: dict) -> dict:
    """What fixes a job's afferents (positions and receptive fields): a plain dict, the same for
    two jobs on the same skin."""
    p = (job.get("config") or {}).get("pipeline", {})
    grid = job.get("grid") or {}
    d = PipelineConfig()
    return {
        "seed": int(p.get("seed", d.seed)),
        "grid_size": int(grid.get("size", p.get("grid_size", d.grid_size))),
        "spacing": float(grid.get("spacing", p.get("spacing", d.spacing))),
        "populations": {pop: _population_cfg(job, pop) for pop in POPULATIONS},
    }


def afferent_positions(patch: dict) -> dict[str, np.ndarray]:
    """population -> positions [n, 2] (x, y in mm) of a patch, as core.simulator.Simulator places
    them (the receptive fields, drawn after the positions from the same stream, are not made)."""
    import torch

    from sensoryforge.core.grid import Grid
    from sensoryforge.core.grid import afferent_positions as place
    from sensoryforge.core.simulator import SEED_INDEX, noise_seed

    extent = Grid(patch["grid_size"], patch["spacing"]).extent
    out = {}
    for pop in POPULATIONS:
        c = patch["populations"][pop]
        gen = torch.Generator().manual_seed(noise_seed(patch["seed"], 1000 + SEED_INDEX[pop]))
        out[pop] = place(c["count"], extent, float(c["jitter"]), gen).numpy()
    return out


class NwbWriter:
    """results.nwb, fed job by job (`add`) and saved by `write`."""

    part = "nwb"  # its name in batch_metadata's aggregation_timing_s

    def __init__(self, path: Path, items: list[Item], swept: list[str], meta: dict):
        self.path, self.swept, self.meta = Path(path), swept, meta
        self.rows: list[dict] = []
        self.done = 0  # trials fed so far (items come in order)
        # the timeline: trial i from starts[i] to stops[i] (s)
        self.starts, self.stops, t = [], [], 0.0
        for i, it in enumerate(items):
            if i:
                t = self.stops[-1] + TRIAL_GAP_S
            self.starts.append(t)
            self.stops.append(t + it.job["steps"] * it.job["dt"] / 1000.0)
        self.dts = [float(it.job["dt"]) for it in items]
        # patches, in order of first appearance; units: patch-major, then population, then index
        self.patches: list[dict] = []
        keys: dict[str, int] = {}
        by_job: dict[int, int] = {}
        self.patch: list[int] = []
        for it in items:
            k = by_job.get(id(it.job))
            if k is None:
                patch = patch_of(it.job)
                text = json.dumps(patch, sort_keys=True)
                if text not in keys:
                    keys[text] = len(self.patches)
                    self.patches.append(patch)
                k = by_job[id(it.job)] = keys[text]
            self.patch.append(k)
        self.base: list[dict[str, int]] = []  # patch -> population -> its first unit
        u = 0
        for patch in self.patches:
            self.base.append({})
            for pop in POPULATIONS:
                self.base[-1][pop] = u
                u += patch["populations"][pop]["count"]
        self.n_units = u
        self._units: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self._unit_dtype = np.int32 if u < 2**31 else np.int64

    def add(self, entries: list[tuple[Item, dict[str, np.ndarray]]], inter=None) -> None:
        """Stimuli of one job folder, each with its flat spike indices t * N + n per population."""
        for it, flats in entries:
            i = self.done
            self.done += 1
            self.rows.append({"stimulus_id": it.id, **flat_params(it, self.swept)})
            start, dt, base = self.starts[i], self.dts[i], self.base[self.patch[i]]
            for pop in POPULATIONS:
                flat = flats[pop]
                if not flat.size:
                    continue
                step, n = np.divmod(flat.astype(np.int64, copy=False), it.job["counts"][pop])
                self._units.append((n + base[pop]).astype(self._unit_dtype))
                self._times.append(start + step * dt / 1000.0)

    # -- the file ------------------------------------------------------------------------------

    def _spike_times(self) -> tuple[np.ndarray, np.ndarray]:
        """All spike times (s) unit by unit, ascending within each, and the units' end offsets."""
        if not self._units:
            return np.zeros(0), np.zeros(self.n_units, np.int64)
        units = np.concatenate(self._units)
        self._units = []
        order = np.argsort(units, kind="stable")  # trial order, and time order within a trial, kept
        counts = np.bincount(units, minlength=self.n_units)
        del units
        times = np.concatenate(self._times)
        self._times = []
        times = times[order]
        return times, np.cumsum(counts)

    def _trials(self, VectorData):
        """The trials table's columns: start_time, stop_time, then the stimuli's parameters."""
        from sensoryforge.dataset.plots import key_unit

        n = len(self.rows)
        types = sorted({r["type"] for r in self.rows})
        params = {k for r in self.rows for k in r} - {"stimulus_id", "type", "seed", "repetition",
                                                      "noise_seed", "source", *self.swept}
        cols = [VectorData(name="start_time", description="start of the stimulus (s, on the sweep's timeline: "
                           f"trials one after the other, {TRIAL_GAP_S} s apart)", data=np.array(self.starts[:n])),
                VectorData(name="stop_time", description="end of the stimulus: start + steps x dt (s)",
                           data=np.array(self.stops[:n]))]
        keys = list(dict.fromkeys(k for r in self.rows for k in r)) or ["stimulus_id"]
        for k in keys:
            values = [_attr(r[k]) if k in r else _MISSING for r in self.rows]
            dtype, values, js = _column(values)
            if k == "stimulus_id":
                what = "the stimulus' id in the dataset (stim_NNNN, as in results.h5)"
            elif k == "type":
                what = "stimulus type"
            elif k == "seed":
                what = "base seed of the trial noise"
            elif k == "repetition":
                what = "trial repetition; the noise seed derives from (seed, repetition)"
            elif k == "noise_seed":
                what = "the trial's noise seed"
            elif k == "source":
                what = "<sweep folder>/<its stimulus id there>"
            elif k in params:
                unit = key_unit(f"stimulus.{k}", types)
                what = f"stimulus parameter {k}" + (f" ({unit})" if unit else "")
            else:
                unit = key_unit(k, types)
                what = f"swept config key {k}" + (f" ({unit})" if unit else "")
            if js:
                what += "; JSON text (the column mixes numbers and text)"
            if dtype.kind in "fc":
                what += "; NaN where the stimulus has none"
            elif dtype.kind in "OSU" and k != "stimulus_id":
                what += '; "" where the stimulus has none'
            name = f"stimulus_{k}" if k in RESERVED else k
            data = list(values) if dtype.kind in "OSU" else np.array(values, dtype)
            cols.append(VectorData(name=name, description=what, data=data))
        cols.append(VectorData(name="patch", description="the skin the trial ran on: the units of this patch "
                               "(units table, column patch) are the afferents of this trial",
                               data=np.array(self.patch[:n], np.int64)))
        return cols

    def _units_table(self, VectorData, VectorIndex, H5DataIO):
        times, ends = self._spike_times()
        pop, index, x, y, rf, patch_col = [], [], [], [], [], []
        for k, patch in enumerate(self.patches):
            positions = afferent_positions(patch)
            for p in POPULATIONS:
                c = patch["populations"][p]
                n = c["count"]
                pop += [p] * n
                index.append(np.arange(n))
                x.append(positions[p][:, 0])
                y.append(positions[p][:, 1])
                rf.append(np.full(n, float(c["rf_sigma"])))
                patch_col.append(np.full(n, k))
        cat = (lambda a, dt: np.concatenate(a).astype(dt)) if self.patches else (lambda a, dt: np.zeros(0, dt))
        data = H5DataIO(times, compression="gzip", compression_opts=4, shuffle=True) if times.size else times
        spike_times = VectorData(name="spike_times", description="spike times (s) on the trials' timeline: "
                                 "trial start_time + time step x dt", data=data)
        return [
            spike_times,
            VectorIndex(name="spike_times_index", data=ends, target=spike_times),
            VectorData(name="population", description="afferent class: " + ", ".join(
                f"{p} = {c}" for p, c in CLASSES.items()), data=pop),
            VectorData(name="afferent", description="the afferent's index in its population (the column of its "
                       "[T, N] raster in results.h5 / results.pt)", data=cat(index, np.int64)),
            VectorData(name="x", description="position on the skin, x (mm; the patch is centred on 0)",
                       data=cat(x, np.float64)),
            VectorData(name="y", description="position on the skin, y (mm; the patch is centred on 0)",
                       data=cat(y, np.float64)),
            VectorData(name="rf_sigma", description="receptive-field size: its population's rf_sigma (mm), "
                       "the Gaussian sigma of the receptors' connection probability (the field reaches 3 sigma)",
                       data=cat(rf, np.float64)),
            VectorData(name="patch", description="the skin the afferent lives on (trials table, column patch): "
                       "its spikes are in the trials of that patch only", data=cat(patch_col, np.int64)),
        ]

    def _notes(self) -> str:
        m = self.meta
        keep = ("format", "batch_id", "num_stimuli", "num_planned", "num_failed", "failed_stimuli", "swept",
                "sources", "num_configs", "config", "populations", "dt", "steps", "counts", "grid", "types",
                "created")
        return json.dumps({**{k: m.get(k) for k in keep}, "trial_gap_s": TRIAL_GAP_S, "patches": self.patches})

    def write(self) -> None:
        """Saves results.nwb atomically."""
        from hdmf.backends.hdf5 import H5DataIO
        from hdmf.common import VectorData, VectorIndex
        from pynwb import NWBHDF5IO, NWBFile
        from pynwb.epoch import TimeIntervals
        from pynwb.file import Subject
        from pynwb.misc import Units

        m = self.meta
        batch = str(m["batch_id"])
        start = datetime.fromisoformat(m["created"]).astimezone()  # local time, with its zone
        pops = ", ".join(f"{m['counts'].get(p, 0)} {p}" for p in POPULATIONS)
        f = NWBFile(
            session_description=f"SensoryForge sweep {batch}: {len(self.rows)} simulated stimuli "
            f"({', '.join(m.get('types') or []) or 'none'}) on a patch of skin with {pops} afferents; "
            "one trial per stimulus, one unit per afferent",
            identifier=batch,
            session_id=batch,
            session_start_time=start,
            experiment_description="Simulated tactile afferent spike trains (SensoryForge): skin pressure "
            "stimuli -> receptive fields -> temporal filters -> noise -> spiking models. No recording: the "
            "trials are on a synthetic timeline (0 s = the session start, trials "
            f"{TRIAL_GAP_S} s apart); the config and batch metadata are in `notes` as JSON.",
            notes=self._notes(),
            keywords=["tactile", "touch", "mechanoreceptor", "afferent", "simulation", "SensoryForge"],
            source_script="SensoryForge (sensoryforge-aggregate)",
            source_script_file_name="sensoryforge/dataset/nwb.py",
            subject=Subject(**SUBJECT),
        )
        if self.rows:
            f.trials = TimeIntervals(name="trials", description="one trial per stimulus, in stimulus-id order",
                                     columns=self._trials(VectorData))
        if self.n_units:
            f.units = Units(name="units", description="one unit per simulated afferent of each population "
                            "(per patch when the sweep varies the skin)",
                            columns=self._units_table(VectorData, VectorIndex, H5DataIO),
                            resolution=min(self.dts) / 1000.0 if self.dts else None)
        with atomic(self.path) as tmp, warnings.catch_warnings():
            # the temporary name does not end in .nwb; the file renamed into place does
            warnings.filterwarnings("ignore", message=".*does not end in '.nwb'", category=UserWarning)
            with NWBHDF5IO(str(tmp), "w") as io:
                io.write(f)

