"""How the battery's results are shown: the PASS/FAIL lines, validation.csv and validation.png."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from sensoryforge.core.schema import COLORS, POPULATIONS
from sensoryforge.core.stimuli.gaussian import Gaussian
from sensoryforge.core.text import fmt
from sensoryforge.dataset.files import atomic
from sensoryforge.physiology.checks import SHORT
from sensoryforge.physiology.criteria import NAN, Check, Criterion
from sensoryforge.physiology.experiments import (
    AMPLITUDES,
    MAP_FACTOR,
    PHASE_LOCK_HZ,
    REFERENCE,
    T_HOLD,
    T_PRE,
    T_RAMP,
    TUNING_PROBE_MM,
)
from sensoryforge.physiology.realism import LOCKED_VS, PC_HZ


def report_lines(c: Check) -> list[str]:
    head = f"[{'PASS' if c.passed else 'FAIL'}] {c.number:>2}. {c.title}  ({c.seconds:.1f} s)"
    lines = [head, f"        source: {c.source}"]
    if c.error:
        lines.append(f"        error: {c.error}")
    for k in c.criteria:
        mark = "ok " if k.passed else "BAD"
        u = f" {k.unit}" if k.unit else ""
        lines.append(f"     {mark} {k.label}: {fmt(k.value)}{u}   (expected {k.expected})")
    return lines


def write_csv(results: list[Check], path: Path) -> None:
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["check", "title", "criterion", "value", "lo", "hi", "unit", "passed", "loss", "check_passed",
                    "source", "seconds"])
        for c in results:
            rows = c.criteria or [Criterion(c.error or "not measured", NAN)]
            for k in rows:
                w.writerow([c.number, c.title, k.label, k.value, k.lo, k.hi, k.unit, k.passed, round(k.loss, 6),
                            c.passed, c.source, round(c.seconds, 3)])


def plot_battery(results: list[Check], path: Path) -> None:
    """validation.png: rate-intensity, adaptation, ramp speed, frequency tuning, phase locking,
    population response, field areas, repeated trials, and the PASS/FAIL summary."""
    import warnings

    with warnings.catch_warnings():  # all-NaN medians of a broken model are drawn as gaps
        warnings.simplefilter("ignore", RuntimeWarning)
        _plot_battery(results, path)


def _plot_battery(results: list[Check], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {c.number: c for c in results}
    fig, axes = plt.subplots(4, 4, figsize=(20, 16.5))
    ax = axes.ravel()
    for a in ax:
        a.set_visible(False)

    def panel(i, title):
        a = ax[i]
        a.set_visible(True)
        a.set_title(title, fontsize=10)
        return a

    rh = next((by[n].data["ramp_hold"] for n in (1, 2) if n in by and "ramp_hold" in by[n].data), None)
    if rh is not None:
        a = panel(0, "1-2. Rate-intensity at the field centre")
        amps = np.asarray(rh["amplitudes"])
        for pop, key, label in (("sa", "hold", "SA hold"), ("ra", "onset", "RA onset"), ("sa2", "hold", "SA2 hold")):
            if rh[pop]["n"]:
                y = rh[pop][key]
                a.plot(amps, y.T, color=COLORS[pop], alpha=0.25, lw=0.8)
                a.plot(amps, y.mean(0), color=COLORS[pop], lw=2, marker="o", label=label)
        a.set_xlabel("pressure (kPa)")
        a.set_ylabel("rate (Hz)")
        a.legend(fontsize=8)
        a = panel(1, f"Adaptation: ramp-and-hold {REFERENCE:g} kPa (mean PSTH)")
        m = list(AMPLITUDES).index(REFERENCE)
        for pop in POPULATIONS:
            if rh[pop]["n"]:
                y = rh[pop]["psth"][:, m].mean(0)
                t = (np.arange(y.size) + 0.5) * rh[pop]["psth_dt"]
                a.step(t, y, where="mid", color=COLORS[pop], label=pop.upper())
        env = Gaussian(t_pre=T_PRE, t_ramp=T_RAMP, t_plateau=T_HOLD)
        tt = torch.linspace(0, rh["duration"], 400, dtype=torch.float64)
        top = a.get_ylim()[1]
        a.fill_between(tt.numpy(), env.waveform(tt).numpy() * top * 0.15, color="0.85", zorder=0, label="pressure")
        a.set_xlabel("time (ms)")
        a.set_ylabel("rate (Hz)")
        a.legend(fontsize=8)
    if 3 in by and by[3].data:
        d = by[3].data
        a = panel(2, "3. Ramp speed (same pressure)")
        a.plot(d["speeds"], np.median(d["ra"], 0), "o-", color=COLORS["ra"], label="RA onset")
        a.plot(d["speeds"], np.median(d["sa_ramp"], 0), "o-", color=COLORS["sa"], label="SA ramp")
        a.plot(d["speeds"], np.median(d["sa_hold"], 0), "o--", color=COLORS["sa"], label="SA hold")
        a.set_xscale("log")
        a.set_xticks(d["speeds"], [f"{v:g}" for v in d["speeds"]])
        a.minorticks_off()
        a.set_xlabel("ramp speed (kPa/ms)")
        a.set_ylabel("rate (Hz)")
        a.legend(fontsize=8)
    if 4 in by and by[4].data:
        d = by[4].data
        a = panel(3, "4, 11. Vibrotactile tuning (>= 0.5 locked spike/cycle)")
        for pop, (lo, hi) in PUBLISHED_BEST.items():  # published best-frequency bands
            a.axvspan(lo, hi, color=COLORS[pop], alpha=0.08)
        for pop in POPULATIONS:
            if len(d.get(pop, [])):
                t = np.where(np.isfinite(d[pop]), d[pop], np.nan)
                a.plot(d["freqs"], t.T, color=COLORS[pop], alpha=0.3, lw=0.8)
                a.plot(d["freqs"], np.nanmedian(t, 0), "o-", color=COLORS[pop], lw=2, label=pop.upper())
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("frequency (Hz); shaded: published best bands")
        a.set_ylabel(f"threshold amplitude (um, {2 * TUNING_PROBE_MM:g} mm probe)")
        a.legend(fontsize=8)
    if 5 in by and by[5].data:
        d = by[5].data
        a = panel(4, f"5. RA phase locking, {PHASE_LOCK_HZ:g} Hz")
        a.plot(d["amplitudes"], d["per_cycle"].T, color=COLORS["ra"], alpha=0.3, lw=0.8)
        a.plot(d["amplitudes"], np.median(d["per_cycle"], 0), "o-", color=COLORS["ra"], lw=2, label="spikes/cycle")
        a.axhline(1, color="0.5", ls=":")
        a.set_xscale("log")
        a.set_xlabel("amplitude (kPa)")
        a.set_ylabel("spikes per cycle")
        b = a.twinx()
        b.plot(d["amplitudes"], np.nanmedian(np.where(np.isnan(d["vs"]), np.nan, d["vs"]), 0) if np.isfinite(d["vs"]).any()
               else d["amplitudes"] * np.nan, "s--", color="k", ms=3, label="vector strength")
        b.set_ylim(0, 1.05)
        b.set_ylabel("vector strength")
        a.legend(loc="upper left", fontsize=8)
        b.legend(loc="lower right", fontsize=8)
    if 8 in by and by[8].data:
        d = by[8].data
        a = panel(5, "8. Population: total spikes vs pressure")
        for pop in POPULATIONS:
            a.plot(d["amplitudes"], d[pop], "o-", color=COLORS[pop], label=pop.upper())
        a.set_xlabel("pressure (kPa), gaussian sigma 1 mm at the patch centre")
        a.set_ylabel("spikes (whole population, whole stimulus)")
        a.legend(fontsize=8)
    if 7 in by and by[7].data:
        d = by[7].data
        a = panel(6, f"7. Field areas at {MAP_FACTOR:g}x threshold")
        a.axhspan(9, 15, color="0.85", label="SA, RA expected")
        for k, pop in enumerate(POPULATIONS):
            v = np.asarray(d.get(pop, []))
            if v.size:
                a.scatter(np.full(v.size, k) + np.linspace(-0.15, 0.15, v.size), v, color=COLORS[pop], s=14)
                a.plot([k - 0.25, k + 0.25], [np.median(v)] * 2, color="k")
        a.set_xticks(range(len(POPULATIONS)), [p.upper() for p in POPULATIONS])
        a.set_yscale("log")
        a.set_ylabel("field area (mm^2)")
        a.legend(fontsize=8)
    if 6 in by and by[6].data.get("raster"):
        d = by[6].data
        a = panel(7, "6. Repeated trials (one SA, one RA afferent)")
        row = 0
        for pop, r in d["raster"].items():
            for tr in r:
                t = np.nonzero(tr)[0] * d["dt"]
                a.vlines(t, row, row + 0.8, color=COLORS[pop], lw=0.8)
                row += 1
            row += 1
        a.set_xlabel("time (ms)")
        a.set_ylabel("trial")
    _plot_added(by, panel)
    a = panel(15, "Summary")
    a.axis("off")
    lines = [f"{'PASS' if c.passed else 'FAIL'}  {c.number:>2}. {SHORT.get(c.number, c.title)}" for c in results]
    loss = sum(c.loss for c in results)
    lines += ["", f"{sum(c.passed for c in results)}/{len(results)} passed, validation loss {loss:.3f}"]
    a.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8)
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


# published best-frequency bands drawn behind the tuning curves (docs/PHYSIOLOGY.md, checks 4, 11)
PUBLISHED_BEST = {"sa": (1.0, 8.0), "ra": (10.0, 60.0), "pc": (200.0, 300.0)}


def _plot_added(by: dict, panel) -> None:
    """Panels of checks 12-16: Pacinian locking, SA following, ISI histograms, saturation,
    recruitment."""
    if 12 in by and by[12].data:
        d = by[12].data
        a = panel(8, f"12. {PC_HZ:g} Hz: spikes per cycle")
        for pop in ("ra", "pc"):
            a.plot(d["amplitudes"], np.median(d["per_cycle"][pop], 0), "o-", color=COLORS[pop], label=pop.upper())
        a.axhline(1, color="0.5", ls=":")
        if np.isfinite(d["silent_kpa"]):
            a.axvline(d["silent_kpa"], color=COLORS["ra"], ls="--", lw=0.8, label="strongest with RA silent")
        a.set_xscale("log")
        a.set_xlabel("amplitude (kPa)")
        a.set_ylabel("spikes per cycle (median)")
        a.legend(fontsize=8)
    if 13 in by and by[13].data:
        d = by[13].data
        a = panel(9, "13. SA following: vector strength")
        for f, style in zip(d["vs"], ("o-", "s--")):
            a.plot(d["amplitudes"], np.nanmedian(d["vs"][f], 0), style, color=COLORS["sa"], label=f"{f:g} Hz")
        a.axhline(LOCKED_VS, color="0.5", ls=":")
        a.set_xscale("log")
        a.set_ylim(0, 1.05)
        a.set_xlabel("amplitude (um)")
        a.set_ylabel("vector strength (median)")
        a.legend(fontsize=8)
    if 14 in by and by[14].data:
        d = by[14].data
        a = panel(10, "14. ISI CV in the hold (afferent x pressure)")
        bins = np.linspace(0, 1, 21)
        for pop in ("sa", "sa2"):
            v = d["cv"][pop].ravel()
            a.hist(v[np.isfinite(v)], bins=bins, color=COLORS[pop], alpha=0.6, label=pop.upper())
        a.axvspan(0.2, 0.8, color=COLORS["sa"], alpha=0.06)
        a.set_xlabel("ISI coefficient of variation")
        a.set_ylabel("count")
        a.legend(fontsize=8)
    if 15 in by and by[15].data:
        d = by[15].data
        a = panel(11, "15. SA hold rate at multiples of threshold")
        m = sorted(d["hold"])
        a.plot(m, np.array([d["hold"][k] for k in m]), color=COLORS["sa"], alpha=0.4, marker="o")
        a.axhline(250, color="0.5", ls=":")
        a.set_xscale("log")
        a.set_xlabel("x threshold")
        a.set_ylabel("hold rate (Hz)")
    if 16 in by and by[16].data:
        d = by[16].data["recruited"]
        a = panel(12, "16. Recruited by 30 kPa, 1 mm (fraction)")
        pops = [p for p in POPULATIONS if p in d]
        a.bar(range(len(pops)), [d[p] for p in pops], color=[COLORS[p] for p in pops])
        a.set_xticks(range(len(pops)), [p.upper() for p in pops])
        a.set_ylim(0, 1)
