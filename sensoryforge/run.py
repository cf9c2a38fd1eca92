"""`sensoryforge`: the one Hydra task (a single simulation, or one chunk of a sweep).

`main()` checks the command line before Hydra starts (so bad input stops with one line, a
non-zero exit and no output folder), then hands over to Hydra.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sensoryforge.config import CONF_DIR  # importing config registers the schemas with Hydra
from sensoryforge.params import ConfigError

log = logging.getLogger("sensoryforge")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> Any:
    from sensoryforge import jobs, sweep
    from sensoryforge.config import check

    check(cfg)
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    if cfg.objective != "primary":  # calibration: the validation loss, no stimulus simulated
        from sensoryforge.validate import objective

        return objective(cfg, out)
    if cfg.chunk:
        specs, progress = sweep.chunk_specs(cfg, Path(hc.sweep.dir))
    else:
        multirun = hc.mode == RunMode.MULTIRUN
        sid = f"stim_{hc.job.num:04d}" if multirun else "stim_0000"
        specs, progress = [jobs.spec_from_config(cfg, sid, sweep.point_of(hc.overrides.task))], None
    jobs.configure_threads(cfg)
    job = jobs.run(cfg, specs, out)
    if progress is not None:
        progress(job)
    else:
        print(summary(job, out), flush=True)
    primary = cfg.outcome.primary
    values = {s["id"]: s.get("measures", {}).get(primary) for s in job["stimuli"]}
    failed = [s for s in job["stimuli"] if s["status"] != "ok"]
    if failed and not cfg.chunk:
        raise RuntimeError(failed[0].get("error", "simulation failed"))
    return values if cfg.chunk else values[specs[0].id]


def summary(job: dict, out: Path) -> str:
    s = job["stimuli"][0]
    params = " ".join(f"{k}={v}" for k, v in s["params"].items())
    seconds = job["steps"] * job["dt"] / 1000.0
    lines = [f"{s['type']}: {params}", f"seed={s['seed']} repetition={s['repetition']} (noise seed {s['noise_seed']})"]
    import numpy as np

    with np.load(out / job["files"]["spikes"]) as z:
        for pop, n in job["counts"].items():
            flat = z[f"{s['id']}/{pop}"]
            per = np.bincount(flat % n, minlength=n) if n else np.zeros(0)
            mean = per.mean() / seconds if n else 0.0
            peak = per.max() / seconds if n else 0.0
            lines.append(
                f"  {pop.upper():<4}{n:>5} afferents {flat.size:>7} spikes   mean {mean:7.2f} Hz   max {peak:7.1f} Hz"
            )
    primary = job["config"]["outcome"]["primary"]
    lines.append(f"  {primary} = {s['measures'][primary]}")
    lines.append(f"output: {out}")
    return "\n".join(lines)


def main() -> None:
    """Console entry point: preflight checks, then Hydra."""
    from sensoryforge.preflight import preflight

    try:
        argv = preflight(sys.argv[1:])
    except ConfigError as e:
        print(f"sensoryforge: error: {e}", file=sys.stderr)
        sys.exit(2)
    if argv is None:  # handled entirely by the preflight (single-run dry run)
        return
    sys.argv = [sys.argv[0], *argv]
    task()


if __name__ == "__main__":
    main()
