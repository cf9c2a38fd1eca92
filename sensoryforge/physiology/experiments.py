"""The standard experiments of tactile afferent physiology that the checks read (cached on the Lab:
several checks read the same experiment)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sensoryforge.core.response import bin_sum, window_rate
from sensoryforge.core.schema import POPULATIONS
from sensoryforge.core.stimuli.gaussian import Gaussian
from sensoryforge.core.stimuli.indentation import Vibrotactile
from sensoryforge.core.stimuli.probe import Probe
from sensoryforge.physiology.criteria import NAN
from sensoryforge.physiology.lab import Lab, bisect_threshold, ladder_threshold

# the standard ramp-and-hold (the default gaussian stimulus): rest 100, ramp 50, hold 700, ramp 50
T_PRE, T_RAMP, T_HOLD = 100.0, 50.0, 700.0
AMPLITUDES = (10.0, 20.0, 30.0, 40.0, 50.0)  # kPa: checks 1, 2, 8 (issue 2's series)
REFERENCE = 30.0  # kPa: the default stimulus amplitude (checks 3, 6)
RAMP_TIMES = (200.0, 100.0, 50.0, 25.0, 12.5)  # ms: check 3 ramps to REFERENCE kPa
FREQUENCIES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 400.0)  # Hz, check 4
PHASE_LOCK_HZ = 40.0
PHASE_LOCK_AMPS = tuple(0.25 * 2 ** (i / 2) for i in range(17))  # 0.25 .. 64 kPa
ENTRAINED = 0.5  # phase-locked spikes per cycle at the tuning threshold (check 4)
TUNING_PROBE_MM = 0.5  # probe radius of the tuning curves (1 mm diameter)
MAP_FACTOR = 4.0  # fields mapped at 4x the afferent's threshold at its most sensitive point
STRONG = (100.0, 300.0)  # kPa, check 9's extra steps


def exp_ramp_hold(lab: Lab) -> dict:
    """The default ramp-and-hold gaussian (sigma 1 mm) centred on each sampled afferent's field
    centre at AMPLITUDES: rates in rest/ramp/hold/release windows and PSTHs."""
    if "ramp_hold" in lab.cache:
        return lab.cache["ramp_hold"]
    ks = {"sa": lab.opt.k_sa, "ra": lab.opt.k_ra, "pc": lab.opt.k_sa2, "sa2": lab.opt.k_sa2}
    chosen = {p: lab.central(p, k) for p, k in ks.items()}
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            for a in AMPLITUDES:
                cx, cy = (float(v) for v in cen[i])
                stims.append(Gaussian(amplitude=a, sigma=1.0, center_x=cx, center_y=cy))
                tags.append((pop, j, a))
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    sp = lab.run(stims, duration, keep=chosen)
    t_on, t_off = T_PRE + T_RAMP, T_PRE + T_RAMP + T_HOLD
    out: dict[str, Any] = {"amplitudes": AMPLITUDES, "duration": duration}
    nb = int(round(20.0 / lab.dt))  # PSTH bins of 20 ms
    for pop, idx in chosen.items():
        k, na = len(idx), len(AMPLITUDES)
        rows = [b for b, tg in enumerate(tags) if tg[0] == pop]
        T = sp[pop].shape[1]
        own = np.stack([sp[pop][b, :, tags[b][1]] for b in rows]) if rows else np.zeros((0, T), bool)
        own = own.reshape(k, na, T)  # [afferent, amplitude, time]
        def rate(a, b, own=own):  # [k, na] Hz
            return window_rate(own, a, b, lab.dt, axis=-1)

        bins = np.arange(t_on, t_off - 1e-9, 100.0)
        through = np.stack([rate(b0, b0 + 100.0) > 0 for b0 in bins], -1) if k else np.zeros((0, na, 1))
        psth = bin_sum(own[:, :, : T - T % nb], nb) / (nb * lab.dt / 1000.0)  # whole bins only
        out[pop] = {
            "n": k,
            "hold": rate(t_on + 100.0, t_off),  # [k, na] Hz
            "onset": rate(T_PRE, T_PRE + T_RAMP + 30.0),
            "offset": rate(t_off, t_off + T_RAMP + 30.0),
            "through": through.all(-1) if k else np.zeros((0, na), bool),  # fires in every 100 ms of the hold
            "psth": psth,  # [k, na, bins] Hz
            "psth_dt": nb * lab.dt,
            "trains": own,  # [k, na, T] bool: each afferent's own spike trains
        }
    lab.cache["ramp_hold"] = out
    return out


def exp_ramp_speed(lab: Lab) -> dict:
    if "ramp_speed" in lab.cache:
        return lab.cache["ramp_speed"]
    chosen = {"sa": lab.central("sa", lab.opt.k_sa), "ra": lab.central("ra", lab.opt.k_ra)}
    hold = 500.0
    duration = T_PRE + 2 * max(RAMP_TIMES) + hold
    stims, tags = [], []
    for pop, idx in chosen.items():
        cen = lab.centroids(pop)
        for j, i in enumerate(idx):
            for tr in RAMP_TIMES:
                stims.append(Gaussian(amplitude=REFERENCE, sigma=1.0, center_x=float(cen[i, 0]),
                                      center_y=float(cen[i, 1]), t_pre=T_PRE, t_ramp=tr, t_plateau=hold))
                tags.append((pop, j, tr))
    sp = lab.run(stims, duration, keep=chosen)
    out: dict[str, Any] = {"speeds": REFERENCE / np.asarray(RAMP_TIMES)}
    for pop, idx in chosen.items():
        ramp, after, static = (np.zeros((len(idx), len(RAMP_TIMES))) for _ in range(3))
        for b, (p, j, tr) in enumerate(tags):
            if p != pop:
                continue
            m = RAMP_TIMES.index(tr)
            s = sp[pop][b : b + 1, :, j : j + 1]
            # response to the ramp: from its start to 20 ms after its end (latency)
            ramp[j, m] = window_rate(s, T_PRE, T_PRE + tr + 20.0, lab.dt)[0, 0]
            after[j, m] = window_rate(s, T_PRE, T_PRE + tr, lab.dt)[0, 0]
            end = T_PRE + tr + hold
            static[j, m] = window_rate(s, end - 300.0, end, lab.dt)[0, 0]
        out[pop] = {"n": len(idx), "onset": ramp, "ramp": after, "hold": static}
    lab.cache["ramp_speed"] = out
    return out


def entrained(spikes: np.ndarray, frequency: float, t0: float, dt: float) -> tuple[float, float]:
    """(spikes per cycle, vector strength) of one train [T] (bool) from time t0 (ms) to its end,
    over whole cycles of `frequency` (Hz); vector strength is NaN under 3 spikes."""
    cycles = int(frequency * (spikes.shape[0] * dt - t0) / 1000.0)
    if cycles < 1:
        return 0.0, NAN
    t = np.nonzero(spikes[int(round(t0 / dt)) :])[0] * dt + t0
    t = t[t < t0 + cycles * 1000.0 / frequency]
    if t.size < 3:
        return t.size / cycles, NAN
    ph = 2 * np.pi * frequency * t / 1000.0
    return t.size / cycles, float(np.hypot(np.cos(ph).sum(), np.sin(ph).sum()) / t.size)


def exp_tuning(lab: Lab) -> dict:
    """Threshold (um, zero to peak) vs vibration frequency for central afferents of every class,
    as published: a probe of TUNING_PROBE_MM radius vibrating on the field centre, the preload
    equal to the amplitude (the probe stays in contact). Threshold = the smallest amplitude at
    which the train carries at least ENTRAINED phase-locked spikes per cycle (spikes per cycle x
    vector strength: a 1:1 locked train gives 1, firing unrelated to the phase gives ~0)."""
    if "tuning" in lab.cache:
        return lab.cache["tuning"]
    k = lab.opt.k_tuning
    chosen = {p: lab.central(p, k) for p in POPULATIONS}
    nyq = 1000.0 / (2 * lab.dt)
    freqs = [f for f in FREQUENCIES if f <= nyq / 2]  # at least 4 samples per cycle
    pairs = [(pop, j, f) for pop, idx in chosen.items() for j in range(len(idx)) for f in freqs]
    thr = {}
    for group in ([p for p in pairs if p[2] < 16], [p for p in pairs if p[2] >= 16]):
        if not group:
            continue
        slow = group[0][2] < 16  # at least 4 cycles in the window
        t_pre, t_ramp = 20.0, (100.0 if slow else 20.0)
        settle = 30.0
        window = 1000.0 if slow else 250.0
        w0 = t_pre + t_ramp + settle
        duration = w0 + window

        def make(i, a, group=group, t_pre=t_pre, t_ramp=t_ramp, duration=duration):
            pop, j, f = group[i]
            cx, cy = (float(v) for v in lab.centroids(pop)[chosen[pop][j]])
            return Vibrotactile(amplitude=a, frequency=f, preload=a / 1000.0, radius=TUNING_PROBE_MM, center_x=cx,
                                center_y=cy, t_pre=t_pre, t_ramp=t_ramp, t_plateau=duration)

        def respond(sp, group=group, w0=w0, t_pre=t_pre):
            out = np.zeros(len(group), bool)
            for i, (pop, j, f) in enumerate(group):
                # phases from the sinusoid's start: shift the train so that t_pre is time 0
                per_cycle, vs = entrained(sp[pop][i, int(round(t_pre / lab.dt)) :, j], f, w0 - t_pre, lab.dt)
                out[i] = per_cycle * np.nan_to_num(vs) >= ENTRAINED
            return out

        res = ladder_threshold(lab, make, len(group), duration, respond, keep=chosen, lo=0.01, hi=3000.0)
        for (pop, j, f), v in zip(group, res):
            thr[(pop, j, f)] = v
    out = {"freqs": np.asarray(freqs)}
    for pop, idx in chosen.items():
        out[pop] = np.array([[thr[(pop, j, f)] for f in freqs] for j in range(len(idx))]).reshape(len(idx), len(freqs))
    lab.cache["tuning"] = out
    return out


def exp_fields(lab: Lab) -> dict:
    """Point-probe mapping: for central afferents, the threshold (probe amplitude evoking one
    spike) at the most sensitive spot, then the area of probe positions that evoke a spike at
    MAP_FACTOR times that threshold, on a grid (map_step mm; twice that for SA2).

    Probe positions whose pooled pressure on the afferent is under 1/(MAP_FACTOR^2) of the hot
    spot's are not simulated: the model pools pressure linearly, so they cannot reach threshold at
    MAP_FACTOR x threshold; they count as outside."""
    if "fields" in lab.cache:
        return lab.cache["fields"]
    sigma, t_pre, t_ramp, t_hold = 0.2, 5.0, 20.0, 35.0
    duration = t_pre + t_ramp + t_hold

    def probe(x, y, a):
        return Probe(amplitude=a, sigma=sigma, center_x=float(x), center_y=float(y), t_pre=t_pre, t_ramp=t_ramp,
                     t_plateau=t_hold)

    chosen = {"sa": lab.central("sa", lab.opt.k_map), "ra": lab.central("ra", lab.opt.k_map),
              "pc": lab.central("pc", lab.opt.k_sa2), "sa2": lab.central("sa2", lab.opt.k_sa2)}
    half = lab.extent / 2
    items = []  # (pop, j, hot spot, candidate positions [P, 2], step)
    for pop, idx in chosen.items():
        if len(idx) == 0:
            continue
        w = lab.weights(pop)[torch.from_numpy(idx)]  # [k, HW]
        step = lab.opt.map_step * (2 if pop in ("pc", "sa2") else 1)  # the large fields
        reach = 3.5 * float(lab.pops[pop].cfg.rf_sigma) + 1.0
        for j in range(len(idx)):
            cen = (w[j] @ lab.receptors).numpy()
            g = np.arange(-reach, reach + 1e-9, step)
            gx, gy = np.meshgrid(cen[0] + g, cen[1] + g)
            pos = np.stack([gx.ravel(), gy.ravel()], 1)
            pos = pos[(np.abs(pos) <= half).all(1)]
            fine = lab.receptors.numpy()
            fine = fine[np.hypot(fine[:, 0] - cen[0], fine[:, 1] - cen[1]) <= reach]
            s_fine = sensitivity(lab, w[j], fine, sigma)
            hot = fine[int(np.argmax(s_fine))]
            s = sensitivity(lab, w[j], pos, sigma)
            keep = s >= s_fine.max() / MAP_FACTOR**2
            items.append((pop, j, hot, pos[keep], step))
    if not items:
        out = {p: np.zeros(0) for p in chosen}
        lab.cache["fields"] = out
        return out

    def responds(sp, tags):
        blank = lab.run([probe(0, 0, 0.0)], duration, keep=chosen)
        r = np.zeros(len(tags), bool)
        for i, (pop, j) in enumerate(tags):
            r[i] = sp[pop][i, :, j].sum() > blank[pop][0, :, j].sum()
        return r

    tags = [(pop, j) for pop, j, *_ in items]
    thr = bisect_threshold(lab, lambda i, a: probe(items[i][2][0], items[i][2][1], a), len(items), duration,
                           lambda sp: responds(sp, tags), keep=chosen, lo=1e-4, hi=1e4)
    stims, owner = [], []
    for i, item in enumerate(items):
        if not np.isfinite(thr[i]):
            continue
        for x, y in item[3]:
            stims.append(probe(x, y, MAP_FACTOR * thr[i]))
            owner.append(i)
    hit = np.zeros(len(stims), bool)
    if stims:
        sp = lab.run(stims, duration, keep=chosen)
        hit = responds(sp, [tags[i] for i in owner])
    out: dict[str, Any] = {p: [] for p in chosen}
    maps = {}
    owner = np.asarray(owner, dtype=np.int64)
    for i, (pop, j, hot, pos, step) in enumerate(items):
        if not np.isfinite(thr[i]):
            out[pop].append(0.0)
            continue
        h = hit[owner == i]
        out[pop].append(float(h.sum()) * step**2)
        if j == 0:
            maps[pop] = (pos, h, hot)
    out = {p: np.asarray(v) for p, v in out.items()}
    out["thresholds"] = {p: thr[[k for k, t in enumerate(tags) if t[0] == p]] for p in chosen}
    out["maps"] = maps
    lab.cache["fields"] = out
    return out


def sensitivity(lab: Lab, w: torch.Tensor, pos: np.ndarray, sigma: float) -> np.ndarray:
    """Pooled pressure on one afferent (weights w [HW]) per kPa of a probe at each position."""
    r = lab.receptors
    nz = torch.nonzero(w).reshape(-1)
    rr, ww = r[nz], w[nz]  # the afferent's receptors
    p = torch.from_numpy(np.asarray(pos, dtype=np.float64))
    d2 = ((p[:, None, :] - rr[None, :, :]) ** 2).sum(-1)
    return (torch.exp(-d2 / (2 * sigma**2)) @ ww).numpy()


def exp_population(lab: Lab) -> dict:
    if "population" in lab.cache:
        return lab.cache["population"]
    stims = [Gaussian(amplitude=a, sigma=1.0) for a in AMPLITUDES]
    duration = T_PRE + 2 * T_RAMP + T_HOLD + 100.0
    sp = lab.run(stims, duration)
    out = {"amplitudes": np.asarray(AMPLITUDES)}
    for pop in POPULATIONS:
        out[pop] = sp[pop].sum((1, 2)).astype(float)
        out[f"{pop}_rate"] = window_rate(sp[pop], 0.0, None, lab.dt).mean(-1) if sp[pop].shape[2] else np.zeros(len(stims))
    lab.cache["population"] = out
    return out
