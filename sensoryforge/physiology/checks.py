"""The ten checks: each runs (or reads) an experiment and judges its figures against published
ranges; docs/PHYSIOLOGY.md says what each measures, which tolerance was chosen and why."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.simulator import noise_seed
from sensoryforge.core.stimuli.gaussian import Gaussian
from sensoryforge.core.stimuli.vibration import Vibration
from sensoryforge.physiology.criteria import NAN, Check, Criterion
from sensoryforge.physiology.experiments import (
    AMPLITUDES,
    MAP_FACTOR,
    PHASE_LOCK_AMPS,
    PHASE_LOCK_HZ,
    RAMP_TIMES,
    REFERENCE,
    STRONG,
    T_HOLD,
    T_PRE,
    T_RAMP,
    entrained,
    exp_fields,
    exp_population,
    exp_ramp_hold,
    exp_ramp_speed,
    exp_tuning,
)
from sensoryforge.physiology.lab import Lab, median, r_squared, steps_down
from sensoryforge.physiology.realism import CHECKS_ADDED, SHORT_ADDED

# first-spike latency SD across trials (check 6): sub-ms for RA, a few ms for SA on a 50 ms ramp
JITTER_MS = {"sa": 5.0, "ra": 1.0}


def check_1(lab: Lab) -> Check:
    c = Check(1, "SA ramp-and-hold on the field centre: sustained, rate linear in pressure",
              "Vega-Bermudez & Johnson 1999, J Neurophysiol 81:2701")
    e = exp_ramp_hold(lab)["sa"]
    amps = np.asarray(AMPLITUDES)
    if e["n"] == 0:
        c.error = "no SA afferents"
        return c
    hold = e["hold"]  # [k, na]
    mean = hold.mean(0)
    r2 = [r_squared(amps, h) for h in hold]
    strong = amps >= 20
    c.criteria = [
        Criterion("afferents firing in every 100 ms of the hold (>= 20 kPa)",
                  float(e["through"][:, strong].all(1).mean()), lo=0.8, scale=0.2),
        Criterion("hold-rate rises strictly with pressure (mean curve: steps not rising)",
                  float(steps_down(mean)), lo=0, hi=0, scale=1.0),
        Criterion("linear fit of hold rate vs pressure, median R^2", median(r2), lo=0.9, scale=0.1),
    ]
    c.data = {"ramp_hold": exp_ramp_hold(lab)}
    return c


def check_2(lab: Lab) -> Check:
    c = Check(2, "RA ramp-and-hold: silent in the hold, bursts at onset and offset",
              "Knibestol 1973, J Physiol 232:427; Johnson 2001, Curr Opin Neurobiol 11:455")
    e = exp_ramp_hold(lab)["ra"]
    if e["n"] == 0:
        c.error = "no RA afferents"
        return c
    strong = np.asarray(AMPLITUDES) >= 20
    onset, hold, offset = e["onset"][:, strong], e["hold"][:, strong], e["offset"][:, strong]
    ratio = np.where(onset > 0, hold / np.maximum(onset, 1e-9), np.where(hold > 0, 1.0, NAN))
    c.criteria = [
        Criterion("hold rate / onset rate (median, >= 20 kPa)", median(ratio), hi=0.05, scale=0.3, log=True),
        Criterion("afferents bursting at onset", float((onset > 0).mean()), lo=0.8, scale=0.2),
        Criterion("afferents bursting at offset", float((offset > 0).mean()), lo=0.8, scale=0.2),
        Criterion("RA onset rate (median, >= 20 kPa)", median(onset), lo=20.0, unit="Hz", scale=10.0),
    ]
    c.data = {"ramp_hold": exp_ramp_hold(lab)}
    return c


def check_3(lab: Lab) -> Check:
    c = Check(3, "Ramps of different speed to the same pressure: RA grows with speed; SA ramp > hold",
              "Knibestol 1973, J Physiol 232:427; Knibestol 1975, J Physiol 245:63")
    e = exp_ramp_speed(lab)
    if e["ra"]["n"] == 0 or e["sa"]["n"] == 0:
        c.error = "no SA or RA afferents"
        return c
    ra = np.median(e["ra"]["onset"], 0)  # by speed, slowest first
    fast = np.asarray(RAMP_TIMES) <= 50
    ramp, hold = e["sa"]["onset"][:, fast], e["sa"]["hold"][:, fast]
    sa_ratio = np.where(hold > 0, ramp / np.maximum(hold, 1e-9), np.where(ramp > 0, 10.0, NAN))
    c.criteria = [
        Criterion("RA onset rate rises with ramp speed (median curve: steps not rising)",
                  float(steps_down(ra)), lo=0, hi=0, scale=1.0),
        Criterion("RA onset rate, fastest / slowest ramp", float(ra[-1] / ra[0]) if ra[0] > 0 else (math.inf if ra[-1] > 0 else NAN),
                  lo=2.0, scale=0.3, log=True),
        Criterion("SA rate in the ramp (+20 ms) / hold rate (median, ramps <= 50 ms)", median(sa_ratio),
                  lo=1.2, scale=0.1, log=True),
    ]
    c.data = {"speeds": e["speeds"], "ra": e["ra"]["onset"], "sa_ramp": e["sa"]["onset"], "sa_hold": e["sa"]["hold"]}
    return c


def best_frequency(freqs: np.ndarray, thresholds: np.ndarray) -> float:
    """Geometric mean of the frequencies whose threshold is within 2% of the lowest; NaN if none."""
    if not np.isfinite(thresholds).any():
        return NAN
    m = np.isclose(thresholds, thresholds.min(), rtol=0.02)
    return float(np.exp(np.log(freqs[m]).mean()))


def ratio(a: float, b: float) -> float:
    """a / b, with inf for a finite a over an infinite b reading as 0 and inf / inf as NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = float(np.float64(a) / np.float64(b))
    return 0.0 if math.isnan(r) and math.isfinite(a) else r


def check_4(lab: Lab) -> Check:
    c = Check(4, "Vibrotactile tuning 1-400 Hz: SA at low, RA at 8-64 Hz, PC at 150-400 Hz",
              "Johansson, Landstrom & Lundstrom 1982, Brain Res 244:17; Talbot et al. 1968, J Neurophysiol 31:301")
    e = exp_tuning(lab)
    if not all(len(e[p]) for p in ("sa", "ra", "pc")):
        c.error = "no SA, RA or PC afferents"
        return c
    f = e["freqs"]
    sa, ra, pc = (np.median(e[p], 0) for p in ("sa", "ra", "pc"))
    ra_best, pc_best = best_frequency(f, ra), best_frequency(f, pc)
    i_best = int(np.argmin(np.where(np.isfinite(ra), ra, np.inf)))
    low = f <= 2
    low_ratio = max((ratio(s_, r_) for s_, r_ in zip(sa[low], ra[low])), default=NAN)
    lo_f, hi_f = sa[f <= 8], sa[f >= 32]
    flutter = ra[(f >= 32) & (f <= 64)]
    c.criteria = [
        Criterion("RA best frequency (lowest median threshold)", ra_best, lo=8.0, hi=64.0, unit="Hz",
                  scale=0.3, log=True),
        Criterion("SA lowest threshold at <= 8 Hz / at >= 32 Hz", ratio(lo_f.min(), hi_f.min()), hi=0.5, scale=0.2,
                  log=True),
        Criterion("SA / RA threshold at 1-2 Hz (worst)", low_ratio, hi=1.0, scale=0.2, log=True),
        Criterion("RA / SA threshold at the RA best frequency", ratio(ra[i_best], sa[i_best]), hi=0.5, scale=0.2,
                  log=True),
        Criterion("RA threshold at 128 Hz / at 32-64 Hz (roll-off)",
                  ratio(ra[f == 128].min(), float(np.exp(np.log(flutter).mean()))) if (f == 128).any() else NAN,
                  lo=2.0, hi=10.0, scale=0.2, log=True),
        Criterion("PC best frequency (lowest median threshold)", pc_best, lo=150.0, hi=400.0, unit="Hz",
                  scale=0.2, log=True),
        Criterion("PC best threshold / RA best threshold", ratio(np.nanmin(pc), np.nanmin(ra)), hi=0.3, scale=0.2,
                  log=True),
    ]
    c.data = {"freqs": f, **{p: e[p] for p in POPULATIONS}}
    return c


def check_5(lab: Lab) -> Check:
    c = Check(5, f"RA phase locking to {PHASE_LOCK_HZ:g} Hz: vector strength, 1 spike/cycle plateau",
              "Talbot, Darian-Smith, Kornhuber & Mountcastle 1968, J Neurophysiol 31:301")
    idx = lab.central("ra", lab.opt.k_ra)
    if len(idx) == 0:
        c.error = "no RA afferents"
        return c
    cen = lab.centroids("ra")
    t_pre, t_ramp, window = 20.0, 20.0, 500.0
    w0 = t_pre + t_ramp + 25.0  # whole cycles from 65 ms
    duration = w0 + window
    amps = np.asarray(PHASE_LOCK_AMPS)
    stims = [Vibration(amplitude=float(a), frequency=PHASE_LOCK_HZ, center_x=float(cen[i, 0]),
                       center_y=float(cen[i, 1]), t_pre=t_pre, t_ramp=t_ramp, t_plateau=duration)
             for i in idx for a in amps]
    sp = lab.run(stims, duration, keep={"ra": idx})["ra"]
    per_cycle = np.zeros((len(idx), len(amps)))
    vs = np.full((len(idx), len(amps)), NAN)
    start = int(round(t_pre / lab.dt))  # phases from the sinusoid's start
    for j in range(len(idx)):
        for m in range(len(amps)):
            per_cycle[j, m], vs[j, m] = entrained(sp[j * len(amps) + m, start:, j], PHASE_LOCK_HZ, w0 - t_pre, lab.dt)
    width, vs_plateau = np.zeros(len(idx)), np.full(len(idx), NAN)
    la = np.log(amps)
    for j in range(len(idx)):
        y = per_cycle[j]
        up = np.nonzero(y >= 0.9)[0]
        if up.size == 0:
            continue
        i0 = up[0]
        above = np.nonzero(y[i0:] > 1.1)[0]
        i1 = i0 + above[0] if above.size else len(amps)
        # interpolate the crossings in log amplitude
        start = la[i0] if i0 == 0 else np.interp(0.9, [y[i0 - 1], y[i0]], [la[i0 - 1], la[i0]])
        end = la[-1] if i1 == len(amps) else np.interp(1.1, [y[i1 - 1], y[i1]], [la[i1 - 1], la[i1]])
        width[j] = math.exp(end - start) if end > start else 1.0
        plateau = np.arange(i0, i1)
        if plateau.size:
            vs_plateau[j] = float(np.nanmedian(vs[j, plateau]))
    c.criteria = [
        Criterion("width of the 1 spike/cycle plateau (median, max/min amplitude)", median(width), lo=2.0,
                  scale=0.3, log=True),
        Criterion("vector strength on the plateau (median)", median(vs_plateau), lo=0.8, scale=0.1),
    ]
    c.data = {"amplitudes": amps, "per_cycle": per_cycle, "vs": vs}
    return c


def check_6(lab: Lab) -> Check:
    c = Check(6, "Repeated identical trials: count SD above 0 and under 1, jitter under 1 ms (RA) and a few ms (SA)",
              "Vega-Bermudez & Johnson 1999, J Neurophysiol 81:2701")
    chosen = {"sa": lab.central("sa", lab.opt.k_sa), "ra": lab.central("ra", lab.opt.k_ra)}
    reps = lab.opt.repetitions
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            stims.append(Gaussian(amplitude=REFERENCE, sigma=1.0, center_x=float(cen[i, 0]), center_y=float(cen[i, 1])))
            tags.append((pop, j))
    if not stims:
        c.error = "no SA or RA afferents"
        return c
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    seeds = [noise_seed(int(lab.cfg.seed), r) for r in range(reps)]
    all_stims = [s for s in stims for _ in range(reps)]
    all_seeds = [sd for _ in stims for sd in seeds]
    sp = lab.run(all_stims, duration, seeds=all_seeds, keep=chosen)
    # the first trial of each again, in a batch of a different size: must be bit-identical
    again = lab.run(stims, duration, seeds=[seeds[0]] * len(stims), keep=chosen)
    sds, jit = {p: [] for p in chosen}, {p: [] for p in chosen}
    same = []
    for b, (pop, j) in enumerate(tags):
        trials = sp[pop][b * reps : (b + 1) * reps, :, j]  # [reps, T]
        n = trials.sum(1)
        if n.max() == 0:
            continue
        sds[pop].append(float(n.std(ddof=1)) if reps > 1 else 0.0)
        first = [np.nonzero(tr)[0][0] * lab.dt for tr in trials if tr.any()]
        if len(first) >= 2:
            jit[pop].append(float(np.std(first, ddof=1)))
        same.append(bool((again[pop][b, :, j] == trials[0]).all()))
    c.criteria = [
        Criterion(f"{pop.upper()} spike-count SD across trials (median)", median(sds[pop]), lo=0.1, hi=1.0,
                  unit="spikes", scale=0.5)
        for pop in chosen
    ] + [
        Criterion(f"{pop.upper()} first-spike jitter, SD across trials (median)", median(jit[pop]), hi=JITTER_MS[pop],
                  unit="ms", scale=0.5)
        for pop in chosen
    ] + [
        Criterion("trials reproduced bit-identically from their seed", float(np.mean(same)) if same else NAN,
                  lo=1.0, hi=1.0, scale=0.25),
    ]
    c.data = {"raster": {pop: sp[pop][: reps, :, 0] for pop in chosen if len(chosen[pop])}, "dt": lab.dt}
    return c


def check_7(lab: Lab) -> Check:
    c = Check(7, f"Receptive fields mapped with a point probe at {MAP_FACTOR:g}x threshold",
              "Johansson & Vallbo 1980, Brain Res 184:353")
    e = exp_fields(lab)
    areas = {p: e[p] for p in POPULATIONS}
    if any(len(v) == 0 for v in areas.values()):
        c.error = "a population has no afferent"
        c.data = e
        return c
    sa, ra, pc, sa2 = (median(areas[p]) for p in ("sa", "ra", "pc", "sa2"))
    small = (sa + ra) / 2
    c.criteria = [
        Criterion("SA median field area", sa, lo=9.0, hi=15.0, unit="mm^2", scale=0.1, log=True),
        Criterion("RA median field area", ra, lo=9.0, hi=15.0, unit="mm^2", scale=0.1, log=True),
        Criterion("SA2 / SA-and-RA median field area", ratio(sa2, small), lo=3.0, hi=12.0, scale=0.1, log=True),
        Criterion("PC / SA-and-RA median field area", ratio(pc, small), lo=3.0, hi=15.0, scale=0.1, log=True),
    ]
    c.data = e
    return c


def check_8(lab: Lab) -> Check:
    c = Check(8, "Population response to a pressure series: total spikes near-linear in pressure",
              "Vega-Bermudez & Johnson 1999, J Neurophysiol 81:2701")
    e = exp_population(lab)
    a = e["amplitudes"]
    c.criteria = []
    for pop in ("sa", "ra"):
        if lab.counts[pop] == 0:
            c.error = f"no {pop.upper()} afferents"
            return c
        c.criteria += [
            Criterion(f"{pop.upper()} total spikes vs pressure, linear fit R^2", r_squared(a, e[pop]), lo=0.9, scale=0.1),
            Criterion(f"{pop.upper()} total spikes rise strictly (steps not rising)", float(steps_down(e[pop])),
                      lo=0, hi=0, scale=1.0),
        ]
    c.data = e
    return c


def check_9(lab: Lab) -> Check:
    c = Check(9, "Refractoriness: no inter-spike interval under 1 ms, for any stimulus",
              "absolute refractory period of myelinated afferents (~1 ms)")
    # besides every train the battery simulated, instant steps of very high pressure
    duration = 300.0
    stims = [Gaussian(amplitude=a, sigma=s, t_pre=50.0, t_ramp=0.0, t_plateau=200.0)
             for a in STRONG for s in (0.5, 2.0)]
    stims += [Vibration(amplitude=STRONG[0] / 2, frequency=f, sigma=1.0, t_pre=20.0, t_ramp=0.0, t_plateau=280.0)
              for f in (40.0, 250.0)]
    lab.run(stims, duration)
    c.criteria = [Criterion(f"shortest inter-spike interval over {lab.trains} spike trains", lab.min_isi,
                            lo=1.0, unit="ms", scale=0.5)]
    return c


def check_10(lab: Lab) -> Check:
    c = Check(10, "Population layout: counts, densities and SA:RA ratio of a fingertip patch",
              "Johansson & Vallbo 1979, J Physiol 286:283")
    area_cm2 = (lab.extent / 10.0) ** 2
    dens = {p: lab.counts[p] / area_cm2 for p in POPULATIONS}
    configured = {p: int(getattr(lab.cfg.neurons, p).count) for p in POPULATIONS}
    ok = all(lab.counts[p] == configured[p] for p in POPULATIONS)
    # uniform cover: afferents per quadrant of the patch, worst relative deviation from the mean
    worst = 0.0
    for p in POPULATIONS:
        pos = lab.pops[p].positions.numpy()
        if len(pos) < 8:
            continue
        q = np.bincount((pos[:, 0] >= 0).astype(int) * 2 + (pos[:, 1] >= 0).astype(int), minlength=4)
        worst = max(worst, float(np.abs(q / q.mean() - 1).max()))
        inside = (np.abs(pos) <= lab.extent / 2 + 1e-9).all()
        ok = ok and bool(inside)
    c.criteria = [
        Criterion("afferents built = configured, all inside the patch", float(ok), lo=1.0, hi=1.0, scale=1.0),
        Criterion("SA density", dens["sa"], lo=50.0, hi=100.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("RA density", dens["ra"], lo=100.0, hi=200.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("PC density", dens["pc"], lo=15.0, hi=35.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("SA2 density", dens["sa2"], lo=5.0, hi=30.0, unit="/cm^2", scale=0.1, log=True),
        Criterion("SA:RA count ratio", lab.counts["sa"] / lab.counts["ra"] if lab.counts["ra"] else NAN,
                  lo=0.4, hi=0.65, scale=0.1, log=True),
        Criterion("uneven cover: worst quadrant vs mean count", worst, hi=0.35, scale=0.2),
    ]
    c.data = {"density": dens, "area_cm2": area_cm2}
    return c


CHECKS: dict[int, Callable[[Lab], Check]] = {
    1: check_1, 2: check_2, 3: check_3, 4: check_4, 5: check_5,
    6: check_6, 7: check_7, 8: check_8, 9: check_9, 10: check_10,
    **CHECKS_ADDED,
}
# the cheap subset used by calibration (experiment=calibrate): no tuning curves, no field maps
QUICK_CHECKS = (1, 2, 3, 8, 9, 10)

SHORT = {1: "SA sustained, linear in pressure", 2: "RA silent in hold, on/off bursts",
         3: "ramp speed: RA up, SA ramp > hold", 4: "vibrotactile tuning", 5: "RA phase locking, 40 Hz",
         6: "trial-to-trial variability", 7: "receptive-field areas", 8: "population response linear",
         9: "no ISI under 1 ms", 10: "population layout", **SHORT_ADDED}
