"""The physiology battery: standard experiments of tactile afferent physiology run on a config,
each compared with the published range it should fall in (docs/PHYSIOLOGY.md).

    from sensoryforge import physiology
    results = physiology.battery(cfg)            # list[Check], PASS/FAIL and figures
    physiology.run_battery(cfg, "validation/x")  # + report, validation.csv, validation.png

Layout: criteria (a figure and its range), lab (population, simulators, shared statistics),
experiments, checks, battery (running them, the loss), report (lines, csv, figure), calibration
(the objective of calibration sweeps and their report).

Units: pressure kPa (the model's skin is linear, so the "indentation depth" series of the
literature are pressure series here), space mm, time ms, rates Hz. The experiments drive the
`Simulator` directly with batches of stimulus dataclasses (no Hydra sweep), with the config's
population (pipeline seed, grid, neurons) and its time step; durations are set per experiment.
"Afferent at the centre of the patch" means the afferents whose receptive-field centroid (weighted
mean of their receptors) lies nearest the patch centre, so that their fields lie inside the patch;
stimuli "on the receptive-field centre" are centred on that centroid.
"""

from sensoryforge.physiology.battery import (
    as_config,
    battery,
    parse_checks,
    run_battery,
    validation_loss,
)
from sensoryforge.physiology.calibration import calibration_report, objective, objective_results
from sensoryforge.physiology.checks import CHECKS, QUICK_CHECKS
from sensoryforge.physiology.criteria import MISSING_LOSS, Check, Criterion
from sensoryforge.physiology.lab import QUICK, Options
from sensoryforge.physiology.report import report_lines, write_csv

__all__ = [
    "CHECKS", "MISSING_LOSS", "QUICK", "QUICK_CHECKS", "Check", "Criterion", "Options", "as_config", "battery",
    "calibration_report", "objective", "objective_results", "parse_checks", "report_lines", "run_battery",
    "validation_loss", "write_csv",
]
