"""Calibration against the battery: the objective a calibration sweep's jobs return
(`objective=validation`), and the report of such a sweep (start against trials)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from sensoryforge.config import load_config
from sensoryforge.core.params import ConfigError
from sensoryforge.core.text import fmt
from sensoryforge.dataset.files import atomic
from sensoryforge.physiology.battery import battery
from sensoryforge.physiology.criteria import Check
from sensoryforge.physiology.lab import QUICK
from sensoryforge.physiology.report import write_csv


def objective_results(cfg: DictConfig) -> list[Check]:
    """The checks a config's objective asks for: `validation_checks` (all when empty), with the
    QUICK sizes when objective=validation_quick."""
    quick = cfg.get("objective") == "validation_quick"
    return battery(cfg, list(cfg.get("validation_checks") or []) or None, QUICK if quick else None)


def objective(cfg: DictConfig, out_dir: str | Path) -> float:
    """The task's return value with `objective=validation` (or `validation_quick`: QUICK sizes),
    for calibration with Hydra's Optuna sweeper: the validation loss of `validation_checks` (all
    when empty) on the job's config. Writes validation.csv into the job's folder and prints one
    summary line."""
    results = objective_results(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(results, out / "validation.csv")
    loss = float(sum(c.loss for c in results))
    failed = [str(c.number) for c in results if not c.passed]
    print(f"validation loss {loss:.4f}: {len(results) - len(failed)}/{len(results)} checks passed"
          + (f" (failed: {', '.join(failed)})" if failed else "") + f" -> {out}", flush=True)
    return loss


def calibration_report(sweep_dir: str | Path, quiet: bool = False) -> dict:
    """Summarise an Optuna calibration sweep (experiment=calibrate): the loss of the mis-set start
    (recomputed from the sweep's config), every trial's parameters and loss, the best trial; writes
    calibration.png (loss per trial, parameters per trial, loss per check at start and best) and
    calibration.csv into the sweep folder."""
    sweep = Path(sweep_dir)
    dirs = sorted((p for p in sweep.iterdir() if (p / ".hydra" / "hydra.yaml").exists() and p.name.isdigit()),
                  key=lambda p: int(p.name))
    if not dirs:
        raise ConfigError(f"{sweep}: no trial folders (<n>/.hydra/hydra.yaml) of a calibration sweep")
    hyd = OmegaConf.load(dirs[0] / ".hydra" / "hydra.yaml").hydra
    specs = dict(hyd.sweeper.get("params") or {})
    params, logs = list(specs), {n: "log" in str(v) for n, v in specs.items()}
    # the start: the sweep's command line without the searched parameters
    base = load_config([o for o in hyd.overrides.task if o.split("=", 1)[0] not in specs])
    start_results = objective_results(base)
    start = {n: OmegaConf.select(base, n) for n in params}
    trials = []
    for d in dirs:
        f = d / "validation.csv"
        if not f.exists():
            continue
        with open(f, newline="") as fh:
            rows = list(csv.DictReader(fh))
        over = OmegaConf.load(d / ".hydra" / "overrides.yaml")
        values = dict(str(o).split("=", 1) for o in over)
        per_check: dict[int, float] = {}
        for r in rows:
            per_check[int(r["check"])] = per_check.get(int(r["check"]), 0.0) + float(r["loss"])
        trials.append({"trial": int(d.name), "loss": sum(per_check.values()), "per_check": per_check,
                       **{n: float(values[n]) for n in params if n in values}})
    start_loss = float(sum(c.loss for c in start_results))
    best = min(trials, key=lambda t: t["loss"]) if trials else None
    with atomic(sweep / "calibration.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", *params, "loss"])
        w.writerow(["start", *[start[n] for n in params], start_loss])
        for t in trials:
            w.writerow([t["trial"], *[t.get(n) for n in params], t["loss"]])
    _plot_calibration(sweep / "calibration.png", params, logs, start, start_loss,
                      {c.number: c.loss for c in start_results}, trials, best)
    if not quiet:
        print(f"start (mis-set): loss {start_loss:.3f}  " + "  ".join(f"{n}={fmt(start[n])}" for n in params))
        for t in trials:
            mark = "  <- best" if t is best else ""
            print(f"trial {t['trial']:>3}: loss {t['loss']:8.3f}  "
                  + "  ".join(f"{n}={fmt(t[n])}" for n in params if n in t) + mark)
        if best is not None:
            print(f"best trial {best['trial']}: loss {best['loss']:.3f} (start {start_loss:.3f}) -> "
                  f"{sweep / 'calibration.png'}")
    return {"start_loss": start_loss, "start": start, "trials": trials, "best": best}


def _plot_calibration(path, params, logs, start, start_loss, start_checks, trials, best) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = max(len(params), 2)
    fig = plt.figure(figsize=(4 * k, 8))
    grid = fig.add_gridspec(2, k)
    a0 = fig.add_subplot(grid[0, : k // 2 + k % 2])
    a1 = fig.add_subplot(grid[0, k // 2 + k % 2 :])
    n = [t["trial"] for t in trials]
    loss = [t["loss"] for t in trials]
    a0.axhline(start_loss, color="tab:red", ls="--", label=f"mis-set start ({start_loss:.2f})")
    a0.plot(n, loss, "o", color="0.4", label="trial")
    if loss:
        a0.plot(n, np.minimum.accumulate(loss), "-", color="k", label=f"best so far ({min(loss):.2f})")
    a0.set_yscale("symlog", linthresh=1.0)
    a0.set_xlabel("trial")
    a0.set_ylabel("validation loss")
    a0.set_title("Optuna calibration: validation loss per trial")
    a0.legend(fontsize=8)
    numbers = sorted(start_checks)
    x = np.arange(len(numbers))
    a1.bar(x - 0.2, [start_checks[c] for c in numbers], 0.4, color="tab:red", label="mis-set start")
    if best is not None:
        a1.bar(x + 0.2, [best["per_check"].get(c, 0.0) for c in numbers], 0.4, color="k",
               label=f"best (trial {best['trial']})")
    for c in a1.containers:
        a1.bar_label(c, fmt="%.2f", fontsize=7)
    a1.set_xticks(x, [f"check {c}" for c in numbers])
    a1.set_ylabel("loss")
    a1.set_title("loss per check")
    a1.legend(fontsize=8)
    for i, name in enumerate(params):
        a = fig.add_subplot(grid[1, i])
        a.plot(n, [t.get(name, np.nan) for t in trials], "o-", ms=3, lw=0.8, color="0.3")
        a.axhline(float(start[name]), color="tab:red", ls="--", label="mis-set start")
        if best is not None:
            a.plot([best["trial"]], [best[name]], "*", ms=14, color="k", label="best")
        if logs.get(name):
            a.set_yscale("log")
        a.set_title(name, fontsize=9)
        a.set_xlabel("trial")
        a.legend(fontsize=7)
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
