"""Checks 11-16: what a side-by-side look at the four classes asks beyond checks 1-10 (frequency
bands, Pacinian locking, SA following, regularity, saturation, recruitment). Each tolerance is a
published figure or ordering; docs/PHYSIOLOGY.md gives the sources and the reasoning."""

from __future__ import annotations

import math

import numpy as np

from sensoryforge.core.response import window_rate
from sensoryforge.core.stimuli.gaussian import Gaussian
from sensoryforge.core.stimuli.indentation import Vibrotactile
from sensoryforge.core.stimuli.vibration import Vibration
from sensoryforge.physiology.criteria import NAN, Check, Criterion
from sensoryforge.physiology.experiments import (
    AMPLITUDES,
    REFERENCE,
    T_HOLD,
    T_PRE,
    T_RAMP,
    entrained,
    exp_ramp_hold,
    exp_tuning,
)
from sensoryforge.physiology.lab import Lab, bisect_threshold, median

BANDS = {"sa": (1.0, 2.0), "ra": (16.0, 32.0), "pc": (128.0, 400.0)}  # Hz: each class's best band (11)
PC_HZ = 250.0
PC_AMPS = tuple(0.05 * 2.0**i for i in range(13))  # kPa, 0.05 .. 205 (check 12)
FOLLOW_HZ = (40.0, 80.0)
FOLLOW_UM = (10.0, 20.0, 50.0, 100.0, 150.0, 200.0, 300.0, 500.0, 1000.0)  # vibration amplitude, um (check 13)
FOLLOW_MAX_UM = 200.0  # SA1 lock at 40-100 Hz at tens to ~200 um
LOCKED_VS = 0.6
MULTIPLES = (2.0, 5.0, 10.0, 20.0, 50.0, 100.0)  # x threshold: the rate-intensity curve of check 15
JUDGED = (10.0, 100.0)  # ... and the two multiples it judges


def check_11(lab: Lab) -> Check:
    c = Check(11, "Which class is most sensitive in each band: SA1 at 1-2 Hz, RA at 16-32 Hz, PC at 128-400 Hz",
              "Johansson, Landstrom & Lundstrom 1982, Brain Res 244:17; Mountcastle, LaMotte & Carli 1972, "
              "J Neurophysiol 35:122")
    e = exp_tuning(lab)
    f = e["freqs"]
    med = {p: np.median(e[p], 0) if len(e[p]) else np.full(len(f), math.inf) for p in ("sa", "ra", "pc", "sa2")}
    c.criteria = []
    for pop, (lo, hi) in BANDS.items():
        band = (f >= lo) & (f <= hi)
        if not band.any():
            c.error = f"no frequency in {lo:g}-{hi:g} Hz at this time step"
            return c
        others = np.min([med[q][band] for q in med if q != pop], 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(np.isinf(med[pop][band]), 0.0, others / med[pop][band])
        c.criteria.append(Criterion(f"next class / {pop.upper()} threshold at {lo:g}-{hi:g} Hz (worst)",
                                    float(np.nan_to_num(r, nan=0.0).min()), lo=1.0, scale=0.2, log=True))
    c.data = {"freqs": f, **med}
    return c


def check_12(lab: Lab) -> Check:
    c = Check(12, f"{PC_HZ:g} Hz vibration: PC 1:1 and phase-locked where RA are silent; RA locked when driven",
              "Talbot, Darian-Smith, Kornhuber & Mountcastle 1968, J Neurophysiol 31:301")
    chosen = {p: lab.central(p, lab.opt.k_tuning) for p in ("ra", "pc")}
    if any(len(v) == 0 for v in chosen.values()):
        c.error = "no RA or PC afferents"
        return c
    t_pre, t_ramp, window = 20.0, 20.0, 200.0
    w0 = t_ramp + 30.0  # from the sinusoid's start
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            for m, a in enumerate(PC_AMPS):
                stims.append(Vibration(amplitude=a, frequency=PC_HZ, center_x=float(cen[i, 0]),
                                       center_y=float(cen[i, 1]), t_pre=t_pre, t_ramp=t_ramp, t_plateau=400.0))
                tags.append((pop, j, m))
    sp = lab.run(stims, t_pre + w0 + window, keep=chosen)
    per = {p: np.zeros((len(v), len(PC_AMPS))) for p, v in chosen.items()}
    vs = {p: np.full((len(v), len(PC_AMPS)), NAN) for p, v in chosen.items()}
    for b, (pop, j, m) in enumerate(tags):
        per[pop][j, m], vs[pop][j, m] = entrained(sp[pop][b, int(round(t_pre / lab.dt)):, j], PC_HZ, w0, lab.dt)
    # the strongest amplitude below the first at which any RA fires
    fires = np.nonzero((per["ra"] > 0).any(0))[0]
    k = int(fires[0]) - 1 if fires.size else len(PC_AMPS) - 1
    driven = per["ra"] >= 0.5
    c.criteria = [
        Criterion("PC spikes per cycle at the strongest vibration leaving every RA silent (median)",
                  float(np.median(per["pc"][:, k])) if k >= 0 else NAN, lo=0.9, hi=1.1, scale=0.2),
        Criterion("PC vector strength there (median)", median(vs["pc"][:, k]) if k >= 0 else NAN, lo=0.8, scale=0.1),
        Criterion("RA vector strength where RA fire >= 0.5 spike per cycle (median)",
                  median(vs["ra"][driven]) if driven.any() else NAN, lo=0.8, scale=0.1),
    ]
    c.data = {"amplitudes": np.asarray(PC_AMPS), "per_cycle": per, "vs": vs, "silent_kpa": PC_AMPS[k] if k >= 0 else NAN}
    return c


def check_13(lab: Lab) -> Check:
    c = Check(13, "SA1 follow 40-80 Hz vibration: phase-locked at tens to ~200 um",
              "Johansson, Landstrom & Lundstrom 1982, Brain Res 244:17; Muniak et al. 2007, J Neurosci 27:11687")
    idx = lab.central("sa", lab.opt.k_sa)
    if len(idx) == 0:
        c.error = "no SA afferents"
        return c
    cen = lab.centroids("sa")
    t_pre, t_ramp, window = 20.0, 20.0, 250.0
    w0 = t_ramp + 30.0
    stims, tags = [], []
    for j, i in enumerate(idx):
        for f in FOLLOW_HZ:
            for m, a in enumerate(FOLLOW_UM):
                # the probe stays in contact: the trough just touches the skin surface
                stims.append(Vibrotactile(amplitude=a, frequency=f, preload=a / 1000.0, radius=1.0, center_x=float(cen[i, 0]),
                                          center_y=float(cen[i, 1]), t_pre=t_pre, t_ramp=t_ramp, t_plateau=400.0))
                tags.append((j, f, m))
    sp = lab.run(stims, t_pre + w0 + window, keep={"sa": idx})["sa"]
    per = {f: np.zeros((len(idx), len(FOLLOW_UM))) for f in FOLLOW_HZ}
    vs = {f: np.full((len(idx), len(FOLLOW_UM)), NAN) for f in FOLLOW_HZ}
    for b, (j, f, m) in enumerate(tags):
        per[f][j, m], vs[f][j, m] = entrained(sp[b, int(round(t_pre / lab.dt)):, j], f, w0, lab.dt)
    amps = np.asarray(FOLLOW_UM)
    c.criteria = []
    for f in FOLLOW_HZ:
        locked = (per[f] >= 0.5) & (np.nan_to_num(vs[f]) >= LOCKED_VS)
        first = np.where(locked.any(1), amps[locked.argmax(1)], math.inf)
        c.criteria.append(Criterion(f"smallest amplitude locking SA at {f:g} Hz (>= 0.5 spike/cycle, VS >= "
                                    f"{LOCKED_VS:g}), median", float(np.median(first)), hi=FOLLOW_MAX_UM, unit="um",
                                    scale=0.2, log=True))
    c.data = {"amplitudes": amps, "per_cycle": per, "vs": vs}
    return c


def isi_cv(train: np.ndarray, dt: float) -> float:
    """Coefficient of variation of the inter-spike intervals of one train [T]; NaN under 5 spikes."""
    t = np.nonzero(train)[0] * dt
    if t.size < 5:
        return NAN
    isi = np.diff(t)
    return float(isi.std() / isi.mean())


def check_14(lab: Lab) -> Check:
    c = Check(14, "Regularity in a sustained hold: SA1 irregular, SA2 regular (ISI CV)",
              "Knibestol & Vallbo 1970, Acta Physiol Scand 80:178; Chambers et al. 1972, Q J Exp Physiol 57:417")
    e = exp_ramp_hold(lab)
    if e["sa"]["n"] == 0 or e["sa2"]["n"] == 0:
        c.error = "no SA or SA2 afferents"
        return c
    a0, a1 = int(round((T_PRE + T_RAMP + 100.0) / lab.dt)), int(round((T_PRE + T_RAMP + T_HOLD) / lab.dt))
    strong = np.asarray(AMPLITUDES) >= 20
    cv = {}
    for pop in ("sa", "sa2"):
        trains = e[pop]["trains"][:, strong, a0:a1]  # [k, amplitudes, T]
        cv[pop] = np.array([[isi_cv(tr, lab.dt) for tr in row] for row in trains])
    sa, sa2 = median(cv["sa"]), median(cv["sa2"])
    c.criteria = [
        Criterion("SA1 ISI CV in the hold (median, >= 20 kPa)", sa, lo=0.2, hi=0.8, scale=0.1),
        Criterion("SA2 / SA1 ISI CV (medians)", sa2 / sa if sa > 0 else NAN, hi=1.0, scale=0.2, log=True),
    ]
    c.data = {"cv": cv}
    return c


def check_15(lab: Lab) -> Check:
    c = Check(15, f"SA1 saturation and maintained adaptation at {JUDGED[0]:g}x and {JUDGED[1]:g}x threshold",
              "Knibestol 1975, J Physiol 245:63; Knibestol & Vallbo 1980, J Physiol 300:251")
    idx = lab.central("sa", lab.opt.k_sa)
    if len(idx) == 0:
        c.error = "no SA afferents"
        return c
    cen = lab.centroids("sa")
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    t_on, t_off = T_PRE + T_RAMP, T_PRE + T_RAMP + T_HOLD
    keep = {"sa": idx}

    def make(i, a):
        return Gaussian(amplitude=a, sigma=1.0, center_x=float(cen[idx[i], 0]), center_y=float(cen[idx[i], 1]))

    def hold_rate(sp):  # [k] Hz, each afferent's own train
        return np.array([window_rate(sp["sa"][i, :, i], t_on + 100.0, t_off, lab.dt, axis=0) for i in range(len(idx))])

    # threshold: a sustained response (>= 5 Hz through the hold)
    thr = bisect_threshold(lab, make, len(idx), duration, lambda sp: hold_rate(sp) >= 5.0, keep=keep, lo=0.1, hi=1e3)
    k = len(idx)
    sp = lab.run([make(i, float(m * thr[i])) for m in MULTIPLES for i in range(k)], duration, keep=keep)["sa"]
    hold, ratio = {}, {}
    for n, m in enumerate(MULTIPLES):
        own = np.stack([sp[n * k + i, :, i] for i in range(k)])  # [k, T]: each afferent's own train
        h = window_rate(own, t_on + 100.0, t_off, lab.dt, axis=-1)
        onset = window_rate(own, T_PRE, t_on + 30.0, lab.dt, axis=-1)
        hold[m], ratio[m] = h, np.where(onset > 0, h / np.maximum(onset, 1e-9), NAN)
    lo_m, hi_m = JUDGED
    ok = np.isfinite(thr)
    c.criteria = [
        Criterion(f"SA hold rate at {hi_m:g}x / at {lo_m:g}x threshold (median)",
                  median(hold[hi_m][ok] / np.maximum(hold[lo_m][ok], 1e-9)) if ok.any() else NAN, lo=1.0, hi=2.5,
                  scale=0.1, log=True),
        Criterion(f"highest SA hold rate (up to {hi_m:g}x threshold)", float(max(h.max() for h in hold.values())),
                  hi=250.0, unit="Hz", scale=0.1, log=True),
    ] + [
        Criterion(f"SA hold / onset rate at {m:g}x threshold (median)", median(ratio[m][ok]) if ok.any() else NAN,
                  lo=0.3, hi=0.85, scale=0.1)
        for m in JUDGED
    ]
    c.data = {"threshold_kpa": thr, "hold": hold, "hold_onset": ratio}
    return c


def check_16(lab: Lab) -> Check:
    c = Check(16, f"Recruitment by a moderate indentation ({REFERENCE:g} kPa, 1 mm): PC most widely, then SA1",
              "Johansson & Vallbo 1979, J Physiol 297:405; Johansson & Vallbo 1980, Brain Res 184:353")
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    sp = lab.run([Gaussian(amplitude=REFERENCE, sigma=1.0)], duration)
    frac = {p: float(sp[p][0].any(0).mean()) if sp[p].shape[2] else NAN for p in ("sa", "ra", "pc", "sa2")}
    c.criteria = [
        Criterion("PC afferents recruited (fraction)", frac["pc"], lo=0.5, scale=0.2),
        Criterion("PC / SA1 fraction recruited", frac["pc"] / frac["sa"] if frac["sa"] > 0 else NAN, lo=1.5,
                  scale=0.2, log=True),
    ]
    c.data = {"recruited": frac}
    return c


CHECKS_ADDED = {11: check_11, 12: check_12, 13: check_13, 14: check_14, 15: check_15, 16: check_16}
SHORT_ADDED = {11: "most sensitive class per band", 12: "PC locked at 250 Hz", 13: "SA follow 40-80 Hz",
               14: "ISI regularity SA1/SA2", 15: "SA saturation, adaptation", 16: "recruitment order"}
