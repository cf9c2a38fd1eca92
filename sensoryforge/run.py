"""`sensoryforge`: the one Hydra task. A job simulates a list of stimuli: one (a single run, or a job
of another sweeper such as Optuna) or a chunk of SensoryForge's sweeper (read from the sweep's plan).

`main()` checks the command line before Hydra starts (cli/preflight.py: bad input stops with one
line, a non-zero exit and no output folder), then hands over to Hydra; a bare `--help` is printed
without Hydra at all (cli/help.py, the same page).

What only a simulating job needs (torch, the job and plan code) is imported inside `task`, so
`--help`, `--cfg job` and dry runs start without torch.
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sensoryforge.confdir import CONF_DIR
from sensoryforge.core.params import ConfigError
from sensoryforge.core.schema import SWITCHES
from sensoryforge.core.text import closed_pipe_exit

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger("sensoryforge")


def task(cfg: DictConfig) -> float:
    """One Hydra job (main() hands it to hydra.main). Returns `outcome.primary`: its stimulus'
    value, or the mean over the chunk's successful stimuli (NaN where undefined); with
    objective=validation (calibration) the battery's validation loss instead, and no stimulus is
    simulated."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from sensoryforge.config import check

    check(cfg)
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    if cfg.objective != "primary":
        from sensoryforge.physiology.calibration import objective

        return objective(cfg, out)
    from sensoryforge.dataset import progress
    from sensoryforge.dataset.files import DiskFull
    from sensoryforge.dataset.jobs import read_plan
    from sensoryforge.job import run, spec_from_config, spec_from_plan
    from sensoryforge.sweep.launchers import configure_threads

    configure_threads(cfg.pipeline.threads)
    if cfg.chunk:
        sweep_dir = Path(hc.sweep.dir)
        plan = read_plan(sweep_dir)
        base = spec_from_config(cfg, "", {})  # the job's own stimulus and seeds, built once
        specs = [spec_from_plan(cfg, e, base) for e in plan.entries(cfg.chunk)]
    else:
        sid = f"stim_{hc.job.num:04d}" if hc.mode == RunMode.MULTIRUN else "stim_0000"
        specs = [spec_from_config(cfg, sid, point_of(hc.overrides.task))]
    try:
        job = run(cfg, specs, out)
    except DiskFull as e:
        if cfg.chunk:
            raise  # the sweeper records the chunk as lost, with this reason
        fail(str(e))
    failed = [s for s in job["stimuli"] if s["status"] != "ok"]
    if cfg.chunk:
        progress.report(sweep_dir, plan, cfg.chunk, job)
    elif failed:
        fail(f"{failed[0]['id']} failed: {failed[0].get('error', 'simulation failed')} "
             f"(traceback in {out / 'job.json'})")
    else:
        try:
            print(summary(job, out), flush=True)
        except BrokenPipeError:  # inside Hydra's job: it would print the traceback
            closed_pipe_exit()
    values = [s["measures"].get(cfg.outcome.primary) for s in job["stimuli"] if s["status"] == "ok"]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else math.nan


def point_of(task_overrides) -> dict:
    """A single run's overrides as its sweep point: key -> value (parsed)."""
    from sensoryforge.sweep.plan import parse_overrides

    overrides = parse_overrides([str(o) for o in task_overrides])
    return {o.key_or_group: o.value() for o in overrides if not o.is_hydra_override() and o.key_or_group not in SWITCHES}


def summary(job: dict, out: Path) -> str:
    """What a single run prints: the stimulus, its seeds, and per population its afferents,
    spikes, mean and highest rate."""
    import numpy as np

    from sensoryforge.core.response import Response

    s = job["stimuli"][0]
    params = " ".join(f"{k}={v}" for k, v in s["params"].items())
    lines = [f"{s['type']}: {params}", f"seed={s['seed']} repetition={s['repetition']} (noise seed {s['noise_seed']})"]
    with np.load(out / job["files"]["spikes"]) as z:
        flat = {pop: z[f"{s['id']}/{pop}"] for pop in job["counts"]}
    r = Response.from_flat(flat, job["counts"], job["steps"], job["dt"])
    for pop, n in job["counts"].items():
        rate = r.rate(pop)
        mean, peak = (float(rate.mean()), float(rate.max())) if n else (0.0, 0.0)
        lines.append(
            f"  {pop.upper():<4}{n:>5} afferents {flat[pop].size:>7} spikes   mean {mean:7.2f} Hz   max {peak:7.1f} Hz"
        )
    primary = job["config"]["outcome"]["primary"]
    lines.append(f"  {primary} = {s['measures'][primary]}")
    lines.append(f"output: {out}")
    return "\n".join(lines)


def fail(message: str, code: int = 1) -> None:
    """One line on stderr and a non-zero exit: 2 for bad input, 1 for a failure while running."""
    print(f"sensoryforge: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def main() -> None:
    """Console entry point: preflight checks, then Hydra. Ctrl-C stops with one line (written
    files are whole, temporary ones removed, finished stimuli kept for a resume)."""
    # a log file on a full disk must not print a traceback per record: the full disk is
    # reported once, as one line
    logging.raiseExceptions = False
    try:
        argv = sys.argv[1:]
        if argv in (["--help"], ["-h"]):  # the page Hydra would print, without Hydra (cli/help.py)
            from sensoryforge.cli.help import app_help

            page = app_help()
            if page is not None:
                print(page)
                return
        if argv[:1] == ["batch"]:  # the older documentation's command (cli/batch.py)
            from sensoryforge.cli.batch import to_hydra

            argv = to_hydra(argv[1:])
        from sensoryforge.cli.preflight import preflight

        argv = preflight(argv)
        if argv is None:  # handled entirely by the preflight (single-run dry run)
            return
        sys.argv = [sys.argv[0], *argv]
        import hydra

        hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(task)()
    except ConfigError as e:
        fail(str(e), 2)
    except KeyboardInterrupt:
        fail("interrupted; finished stimuli are kept: run the same command again to resume", 130)
    except BrokenPipeError:
        closed_pipe_exit()


if __name__ == "__main__":
    main()
