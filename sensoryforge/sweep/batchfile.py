"""Batch YAML files in the older format, run unchanged as a Hydra sweep:

    sensoryforge -m batch_file=examples/batch_config.yml

The file's parts map onto SensoryForge as follows:
  metadata.batch_name                 -> dataset.name (the batch id)
  base_config.pipeline.{device,seed,grid_size,spacing}
                                      -> pipeline.*
  base_config.neurons.{sa,ra,pc,sa2}_neurons
                                      -> neurons.<pop>.count
  base_config.neurons.dt, temporal.dt -> pipeline.dt
  base_config.temporal.{t_pre,t_ramp,t_plateau} -> stimulus.* of every sweep
  base_config.temporal.t_post         -> pipeline.duration = t_pre + 2 t_ramp + t_plateau + t_post
  batch.output_dir                    -> hydra.sweep.dir
  batch.save_format (pytorch|hdf5)    -> dataset.format
  batch.save_intermediates            -> pipeline.save_intermediates
  batch.stimuli[i]                    -> one sweep block: stimulus=<type without _sweep>,
      parameters.<name>: [values]     -> stimulus.<name>=v1,v2,...  (duration -> pipeline.duration)
      repetitions: n                  -> repetition=range(n)
      base_seed: s                    -> seed=s
Sections with no equivalent here (innervation, filters, neuron_params, noise, solver, grid
center) are reported once and otherwise ignored: SensoryForge's own calibrated defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.stimuli import REGISTRY

_PIPELINE_KEYS = ("device", "seed", "grid_size", "spacing")
_FORMATS = {"pytorch": "pytorch", "hdf5": "hdf5", "both": "both"}


@dataclass
class BatchFile:
    blocks: list[dict[str, str]]  # one per sweep; base_config's settings repeated in each
    name: str | None = None
    format: str | None = None
    output_dir: str | None = None
    ignored: list[str] = field(default_factory=list)  # sections with no equivalent here


def _values(v) -> str:
    vals = v if isinstance(v, (list, tuple)) else [v]
    if not vals:
        raise ConfigError("batch_file: a sweep parameter has an empty list of values")
    return ",".join(str(x) for x in vals)


def load_batch_file(path: Path) -> BatchFile:
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"batch_file={path}: cannot read it ({str(e).splitlines()[0]})") from None
    base = doc.get("base_config") or {}
    batch = doc.get("batch") or {}
    if not batch.get("stimuli"):
        raise ConfigError(f"batch_file={path}: batch.stimuli must list at least one sweep")
    common: dict[str, str] = {}
    ignored = [k for k in base if k not in ("pipeline", "neurons", "temporal")]

    pipe = base.get("pipeline") or {}
    for k, v in pipe.items():
        if k in _PIPELINE_KEYS:
            common[f"pipeline.{k}"] = str(v)
        else:
            ignored.append(f"pipeline.{k}")
    neurons = base.get("neurons") or {}
    for k, v in neurons.items():
        if k.endswith("_neurons") and k[: -len("_neurons")] in POPULATIONS:
            common[f"neurons.{k[: -len('_neurons')]}.count"] = str(v)
        elif k == "dt":
            common["pipeline.dt"] = str(v)
        else:
            ignored.append(f"neurons.{k}")
    temporal = base.get("temporal") or {}
    envelope = {k: temporal[k] for k in ("t_pre", "t_ramp", "t_plateau") if k in temporal}
    if "dt" in temporal:
        common["pipeline.dt"] = str(temporal["dt"])
    if all(k in temporal for k in ("t_pre", "t_ramp", "t_plateau", "t_post")):
        total = temporal["t_pre"] + 2 * temporal["t_ramp"] + temporal["t_plateau"] + temporal["t_post"]
        common["pipeline.duration"] = str(total)
    if "save_intermediates" in batch:
        common["pipeline.save_intermediates"] = str(bool(batch["save_intermediates"])).lower()
    fmt = batch.get("save_format")
    if fmt is not None and fmt not in _FORMATS:
        raise ConfigError(f"batch.save_format={fmt}: must be one of pytorch, hdf5, both")

    blocks = []
    for i, s in enumerate(batch["stimuli"]):
        kind = str(s.get("type", "")).removesuffix("_sweep")
        if kind not in REGISTRY:
            raise ConfigError(
                f"batch.stimuli[{i}].type={s.get('type')}: unknown stimulus type; allowed: "
                + ", ".join(f"{t}, {t}_sweep" for t in sorted(REGISTRY))
            )
        block = {**common, "stimulus": kind}
        block.update({f"stimulus.{k}": str(v) for k, v in envelope.items()})
        for name, vals in (s.get("parameters") or {}).items():
            key = "pipeline.duration" if name == "duration" else f"stimulus.{name}"
            block[key] = _values(vals)
        reps = int(s.get("repetitions", 1))
        if reps < 1:
            raise ConfigError(f"batch.stimuli[{i}].repetitions={reps}: must be >= 1")
        block["repetition"] = f"range({reps})"
        if "base_seed" in s:
            block["seed"] = str(int(s["base_seed"]))
        blocks.append(block)
    name = (doc.get("metadata") or {}).get("batch_name")
    return BatchFile(blocks, name, _FORMATS.get(fmt) if fmt else None, batch.get("output_dir"), ignored)
