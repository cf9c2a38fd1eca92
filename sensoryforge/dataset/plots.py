"""Plots of a sweep (matplotlib, Agg backend: no display needed).

sweep.png     one swept key: each primary measure against it, mean with 95% CI error bars
heatmap.png   two swept keys: each primary measure as a coloured grid with the values in the cells
consensus.png nothing swept but seeds: mean +- std of the rate series over time
With more swept keys, the two with the most values are plotted and the others averaged (said on
stderr and in the title). With several stimulus types, one file per type (sweep_<type>.png ...).

The primary measures: outcome.primary and the same measure of the other populations' series of
the same kind, e.g. sa_rate_mean -> sa_rate_mean, ra_rate_mean, pc_rate_mean, sa2_rate_mean.
`--measures` plots every measure named instead; a short name (time_to_50, auc, rate_auc, sa_auc)
stands for every computed measure it matches (core/outcome_names.resolve_measures).
Axis labels carry the units declared with `param(...)` in the schemas.

What a mean cannot show is drawn, with a legend: a cell or point over fewer than SMALL_N (3)
values (framed cells, kept out of the colour scale when other cells have more; hollow points), a
time_to_N never reached (grey hatched cells, "never"; a grey x on the sweep plot's axis) or reached
by only k of a cell's n stimuli ("k/n"), a cell without stimuli ("n/a"). A panel whose values are
all equal (no spikes: all zero) gets a 0-based scale (0..1), not matplotlib's value +- 0.1.

`stimulus_plots` draws one stimulus: <id>_raster.png (spikes of every population, with the peak
skin pressure above) and <id>_rate.png (population rates over time).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from sensoryforge.core.grid import Grid  # noqa: E402
from sensoryforge.core.outcome_names import MEASURE_NAME, resolve_measures  # noqa: E402
from sensoryforge.core.params import ConfigError  # noqa: E402
from sensoryforge.core.response import split  # noqa: E402
from sensoryforge.core.schema import COLORS, POPULATIONS, SEED_KEYS, Config  # noqa: E402
from sensoryforge.core.stimuli import REGISTRY  # noqa: E402
from sensoryforge.core.text import fmt  # noqa: E402
from sensoryforge.dataset.collection import collect  # noqa: E402
from sensoryforge.dataset.files import atomic  # noqa: E402
from sensoryforge.dataset.jobs import NpzReader  # noqa: E402
from sensoryforge.dataset.tables import describe  # noqa: E402

# -- labels and units ----------------------------------------------------------------------------


def _field_unit(cls, name: str):
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    return None


def key_unit(key: str, types: list[str] | tuple[str, ...] = ()) -> str:
    """The unit of a config key from the schemas' `param` metadata ('' if none or unknown)."""
    parts = key.split(".")
    if parts[0] == "stimulus":
        if len(parts) != 2:
            return ""
        for t in list(types) + sorted(REGISTRY):
            cls = REGISTRY.get(t)
            f = _field_unit(cls, parts[1]) if cls else None
            if f is not None:
                return f.metadata.get("unit", "")
        return ""
    cls = Config
    for i, p in enumerate(parts):
        f = _field_unit(cls, p)
        if f is None:
            return ""
        if i == len(parts) - 1:
            return f.metadata.get("unit", "")
        if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            inner = f.default_factory()  # type: ignore[misc]
        else:
            inner = f.default
        if not dataclasses.is_dataclass(inner):
            return ""
        cls = type(inner)
    return ""


def key_label(key: str, types=()) -> str:
    """'stimulus.amplitude' -> 'amplitude (kPa)'; 'neurons.sa.gain' -> 'neurons.sa.gain (1/kPa)'."""
    if key in ("stimulus", "type"):
        return "stimulus type"
    unit = key_unit(key, types)
    name = key.split(".", 1)[1] if key.startswith("stimulus.") else key
    return f"{name} ({unit})" if unit else name


_MEASURE = MEASURE_NAME  # <population>_<kind>_<measure>


def is_latency(name: str) -> bool:
    """A time_to_N measure: NaN in a stimulus whose series never reaches N."""
    m = _MEASURE.match(name)
    return bool(m) and m["m"].startswith("time_to_")


def measure_unit(name: str) -> str:
    m = _MEASURE.match(name)
    if not m:
        return ""
    series_unit = "Hz" if m["kind"] == "rate" else "spikes"
    if m["m"] == "auc":
        return "spikes/afferent" if m["kind"] == "rate" else "spikes x s"
    if m["m"].startswith("time_to_"):
        return "ms"
    return series_unit


def measure_label(name: str) -> str:
    """'sa_rate_mean' -> 'SA rate, mean (Hz)'; 'ra_count_time_to_10' -> 'RA count, time to 10 (ms)'."""
    m = _MEASURE.match(name)
    if not m:
        return name
    what = m["m"].replace("time_to_", "time to ")
    return f"{m['pop'].upper()} {m['kind']}, {what} ({measure_unit(name)})"


def primary_measures(columns, config: dict | None) -> list[str]:
    """outcome.primary and the same measure of the other populations' series of the same kind."""
    outcome = (config or {}).get("outcome", {})
    primary = outcome.get("primary", "sa_rate_mean")
    series = outcome.get("series", [f"{p}_rate" for p in POPULATIONS])
    m = _MEASURE.match(primary)
    out = [primary]
    if m:
        out += [f"{s}_{m['m']}" for s in series if s.endswith(f"_{m['kind']}") and f"{s}_{m['m']}" != primary]
    out = [c for c in out if c in columns]
    if not out:  # primary not computed: the first measures there are
        out = [c for c in columns if _MEASURE.match(c)][:3]
    return out


# -- helpers -------------------------------------------------------------------------------------


def save(fig, path: Path) -> None:
    """Atomic PNG write. Every figure is laid out (tight_layout) before: bbox_inches="tight" would
    draw it a second time (40% of a sweep plot's cost)."""
    try:
        with atomic(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)


def _is_numeric(values) -> bool:
    try:
        arr = pd.to_numeric(pd.Series(list(values)), errors="raise")
    except (ValueError, TypeError):
        return False
    return bool(np.isfinite(arr.to_numpy(dtype=float)).all())


def _ci(x: np.ndarray) -> tuple[float, float, int]:
    d = describe(x)
    half = d["ci95_high"] - d["mean"] if d["n"] > 1 else 0.0
    return d["mean"], half, d["n"]


# -- sweep plots ---------------------------------------------------------------------------------


def choose_keys(raw: pd.DataFrame, keys: list[str], wanted: list[str] | None) -> tuple[list[str], list[str]]:
    """(keys to plot, keys averaged over) among `keys` that vary in `raw`."""
    varying = [k for k in keys if k in raw and raw[k].nunique(dropna=True) > 1]
    if wanted:
        bad = [k for k in wanted if k not in varying]
        if bad:
            raise ConfigError(
                f"--keys {','.join(bad)}: not a swept key here; swept: {', '.join(varying) or 'none'}"
            )
        if len(wanted) > 2:
            raise ConfigError("--keys: give one key (sweep plot) or two (heatmap)")
        chosen = list(wanted)
    elif len(varying) <= 2:
        chosen = varying
    else:
        order = sorted(varying, key=lambda k: -raw[k].nunique(dropna=True))  # stable: sweep order on ties
        chosen = [k for k in varying if k in order[:2]]
    return chosen, [k for k in varying if k not in chosen]


def _columns(n: int) -> int:
    """Panels per row: up to 3, but 2 x 2 for four (one measure per population by default)."""
    return 2 if n == 4 else min(n, 3)


SMALL_N = 3  # a mean over fewer values (cell, point) is marked and kept out of the colour scale
NEVER = "never reached"


def flat_limits(value: float) -> tuple[float, float]:
    """A 0-based scale for a panel whose values are all `value` (matplotlib's own would be
    value +- 0.1, e.g. -0.1..0.1 for zeros): 0..1, 0..value, or value..0 when negative."""
    if not np.isfinite(value) or value == 0:
        return 0.0, 1.0
    return (0.0, max(1.0, value)) if value > 0 else (min(-1.0, value), 0.0)


def _count_stats(raw: pd.DataFrame, by, measures: list[str]):
    """Per group of `by`: (stimuli, and for each measure the mean and n of its finite values)."""
    values = raw[measures].astype(float).replace([np.inf, -np.inf], np.nan)
    g = values.groupby([raw[k] for k in by], dropna=True, sort=False)
    return g.size(), g.mean(), g.count()


def plot_sweep(path: Path, raw: pd.DataFrame, key: str, measures: list[str], title: str, types=()) -> None:
    """Mean and 95% t interval of each measure per value of `key`. A point over fewer than
    SMALL_N values is drawn hollow; where a time_to_N is never reached (NaN in every stimulus) a
    grey x sits on the axis; where only some stimuli reach it, k/n says how many. A flat panel
    (all values equal, e.g. no spikes) gets a 0-based axis."""
    values = [v for v in pd.unique(raw[key].dropna())]
    numeric = _is_numeric(values)
    if numeric:
        values = sorted(values)
    xs = [float(v) for v in values] if numeric else list(range(len(values)))
    n = len(measures)
    cols = _columns(n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    per_value = raw[key].value_counts(dropna=True)
    total = np.array([int(per_value.get(v, 0)) for v in values])
    keycol = raw[key].to_numpy()
    ns = []
    for ax, m in zip(axes.flat, measures):
        col = raw[m].to_numpy(dtype=float)
        stats_ = [_ci(col[keycol == v]) for v in values]
        mean = np.array([s_[0] for s_ in stats_])
        err = np.array([s_[1] for s_ in stats_])
        count = np.array([s_[2] for s_ in stats_])
        ns += [int(c) for c in count if c]
        pop = _MEASURE.match(m)
        color = COLORS.get(pop["pop"], "k") if pop else "k"
        ax.errorbar(xs, mean, yerr=err, marker="o", ms=4, capsize=3, color=color)
        x = np.asarray(xs, dtype=float)
        small = (count > 0) & (count < SMALL_N)
        if small.any() and (count >= SMALL_N).any():
            ax.plot(x[small], mean[small], "o", ms=4, mfc="white", mec=color, ls="none", zorder=3,
                    label=f"n < {SMALL_N}")
        none = (count == 0) & (total > 0)
        if none.any():
            ax.plot(x[none], np.full(none.sum(), 0.04), "x", color="0.4", ms=6, ls="none", clip_on=False,
                    transform=blended_transform_factory(ax.transData, ax.transAxes),
                    label=NEVER if is_latency(m) else "no finite value")
        partial = (count > 0) & (count < total)
        if partial.any() and is_latency(m):
            for xi, yi, k, t in zip(x[partial], mean[partial], count[partial], total[partial]):
                ax.annotate(f"{k}/{t}", (xi, yi), textcoords="offset points", xytext=(0, 6), ha="center",
                            fontsize=6, color="0.3")
            ax.plot([], [], ls="none", label="k/n: reached in k of n")
            ax.margins(y=0.12)  # room for the k/n above the highest point
        finite = mean[np.isfinite(mean)]
        spread = err[np.isfinite(err)]
        if not finite.size or (np.ptp(finite) == 0 and not spread.any()):
            lo, hi = flat_limits(finite[0] if finite.size else 0.0)
            pad = 0.05 * (hi - lo)  # matplotlib's usual margin, so that points on 0 are whole
            ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlabel(key_label(key, types))
        ax.set_ylabel(measure_label(m))
        if not numeric:
            ax.set_xticks(xs, [fmt(v) for v in values], rotation=30)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, frameon=False, handlelength=1.2)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    lo, hi = (min(ns), max(ns)) if ns else (0, 0)
    nn = f"n = {lo}" if lo == hi else f"n = {lo}-{hi}"
    fig.suptitle(f"{title}\nmean with 95% CI ({nn} per value)", fontsize=10)
    fig.tight_layout()
    save(fig, path)


def _cells(ax, mask: np.ndarray, inset: float = 0.0, **style) -> PatchCollection | None:
    """One collection of squares over the True cells of `mask` (rows y, columns x), `inset`
    inside the cell's edges."""
    ys, xs = np.nonzero(mask)
    if not ys.size:
        return None
    side = 1 - 2 * inset
    coll = PatchCollection([Rectangle((x - 0.5 + inset, y - 0.5 + inset), side, side) for y, x in zip(ys, xs)],
                           **style)
    ax.add_collection(coll)
    return coll


_NEVER_STYLE = {"facecolor": "0.8", "edgecolor": "0.45", "hatch": "//", "linewidth": 0}
# a dashed white frame on a black one: seen on every colour of the map, and it hides no value
_SMALL_UNDER = {"facecolor": "none", "edgecolor": "black", "linewidth": 1.6}
_SMALL_STYLE = {"facecolor": "none", "edgecolor": "white", "linewidth": 1.2, "linestyle": (0, (2.5, 2))}
_EMPTY_STYLE = {"facecolor": "white", "edgecolor": "0.6", "linewidth": 0.5}


def plot_heatmap(path: Path, raw: pd.DataFrame, kx: str, ky: str, measures: list[str], title: str, types=()) -> None:
    """Each measure's mean per cell of the kx x ky grid, with the values written in (up to 400
    cells). Marked, and said in the legend under the panels:
    - cells whose mean is over fewer than SMALL_N values (hatched dots): left out of the colour
      scale when other cells have more, so that one or two noisy values do not stretch it;
    - time_to_N never reached in the cell (grey, hatched, "never"); reached in some of its
      stimuli only: "k/n" under the value;
    - no stimulus in the cell: "n/a" on white.
    A flat panel (every cell the same value, e.g. all zero) gets a 0-based scale (flat_limits)."""
    def axis(k):
        v = list(pd.unique(raw[k].dropna()))
        return sorted(v) if _is_numeric(v) else v

    xv, yv = axis(kx), axis(ky)
    xi = {v: i for i, v in enumerate(xv)}
    yi = {v: i for i, v in enumerate(yv)}
    n = len(measures)
    cols = _columns(n)
    rows = math.ceil(n / cols)
    cell = 0.55
    w = max(3.6, 1.6 + cell * len(xv))
    h = max(3.0, 1.4 + cell * len(yv))
    size, means, counts = _count_stats(raw, [ky, kx], measures)
    where = (np.array([yi[y] for y, _ in size.index], dtype=int), np.array([xi[x] for _, x in size.index], dtype=int))
    total = np.zeros((len(yv), len(xv)), dtype=int)
    total[where] = size.to_numpy()
    legend: dict[str, object] = {}
    fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows + 0.3), squeeze=False)
    small_text = len(xv) * len(yv) <= 400
    for ax, m in zip(axes.flat, measures):
        grid = np.full((len(yv), len(xv)), np.nan)
        grid[where] = means[m].to_numpy()
        count = np.zeros_like(total)
        count[where] = counts[m].to_numpy()
        finite = np.isfinite(grid)
        small = finite & (count < SMALL_N)
        scaled = finite & ~small if (finite & ~small).any() else finite
        vals = grid[scaled]
        if not vals.size or vals.min() == vals.max():
            vmin, vmax = flat_limits(vals[0] if vals.size else 0.0)
        else:
            vmin, vmax = float(vals.min()), float(vals.max())
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        below, above = (grid[finite] < vmin).any(), (grid[finite] > vmax).any()
        extend = {(False, False): "neither", (True, False): "min", (False, True): "max"}.get((below, above), "both")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=measure_label(m), extend=extend)
        empty = total == 0
        never = ~finite & ~empty
        latency = is_latency(m)
        if _cells(ax, never, **_NEVER_STYLE):
            label = f"{NEVER} (by none of the cell's stimuli)" if latency else "no finite value"
            legend[label] = Patch(label=label, **_NEVER_STYLE)
        marked = small if scaled is not finite else np.zeros_like(small)
        if _cells(ax, marked, inset=0.08, **_SMALL_UNDER):
            _cells(ax, marked, inset=0.08, **_SMALL_STYLE)
            label = f"n < {SMALL_N} values: not in the colour scale"
            legend[label] = Patch(label=label, **{**_SMALL_STYLE, "facecolor": "0.45"})
        if _cells(ax, empty, **_EMPTY_STYLE):
            legend["n/a: no stimulus"] = Patch(label="n/a: no stimulus", **_EMPTY_STYLE)
        partial = latency & finite & (count < total)
        if partial.any():
            legend["k/n: reached in k of n"] = Line2D([], [], ls="none", label="k/n: reached in k of n stimuli")
        if small_text:
            norm = im.norm
            for i, j in np.ndindex(total.shape):
                v = grid[i, j]
                if empty[i, j]:
                    text, color = "n/a", "0.3"
                elif never[i, j]:
                    text, color = ("never" if latency else "n/a"), "black"
                else:
                    text = f"{v:.3g}"
                    if partial[i, j]:
                        text += f"\n{count[i, j]}/{total[i, j]}"
                    elif marked[i, j]:
                        text += f"\nn={count[i, j]}"
                    color = "black" if norm(v) > 0.6 else "white"
                # inside the axes by construction: kept out of tight_layout's measuring (half its time)
                ax.text(j, i, text, ha="center", va="center", fontsize=6 if "\n" in text else 7,
                        color=color, in_layout=False)
        ax.set_xlim(-0.5, len(xv) - 0.5)
        ax.set_ylim(-0.5, len(yv) - 0.5)
        ax.set_xticks(range(len(xv)), [fmt(v) for v in xv], rotation=30 if len(xv) > 6 else 0)
        ax.set_yticks(range(len(yv)), [fmt(v) for v in yv])
        ax.set_xlabel(key_label(kx, types))
        ax.set_ylabel(key_label(ky, types))
        ax.set_title(measure_label(m).split(" (")[0], fontsize=9)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    filled = total[total > 0]
    lo, hi = (int(filled.min()), int(filled.max())) if filled.size else (0, 0)
    nn = f"n = {lo}" if lo == hi else f"n = {lo}-{hi}"
    fig.suptitle(f"{title}\nmean per cell ({nn} stimuli)", fontsize=10)
    fig.tight_layout()  # one pass (with rect= it makes two)
    if legend:  # under the panels, in room taken from them
        fig.legend(handles=list(legend.values()), loc="lower center", ncol=min(len(legend), 3),
                   fontsize=7, frameon=False, handlelength=1.6)
        room = 0.28 * math.ceil(len(legend) / 3) / fig.get_figheight()
        fig.subplots_adjust(bottom=fig.subplotpars.bottom + room)
    save(fig, path)


def plot_consensus(path: Path, consensus: pd.DataFrame, title: str) -> None:
    rates = [c[: -len("_mean")] for c in consensus.columns if c.endswith("_rate_mean")]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for s in rates:
        t = consensus["time_ms"].to_numpy()
        mu = consensus[f"{s}_mean"].to_numpy()
        sd = np.nan_to_num(consensus[f"{s}_std"].to_numpy())
        color = COLORS.get(s.split("_")[0], "k")
        ax.plot(t, mu, color=color, label=s.split("_")[0].upper())
        ax.fill_between(t, mu - sd, mu + sd, color=color, alpha=0.2, lw=0)
    n = int(consensus["n"].iloc[0]) if len(consensus) else 0
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("population rate (Hz)")
    ax.legend(frameon=False)
    ax.set_title(f"{title}\nmean +- std over n = {n} seeds/repetitions", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def sweep_plots(
    out: Path, tables, keys: list[str], meta: dict,
    measures: list[str] | None = None, wanted: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """sweep.png / heatmap.png / consensus.png in `out`, chosen from the swept keys.
    Returns (files written, messages for the user)."""
    raw = tables.raw if hasattr(tables, "raw") else tables
    if raw is None or not len(raw):
        return [], []
    avail = [c for c in raw.columns if _MEASURE.match(c)]
    notes: list[str] = []
    if measures:  # every one asked for is plotted; short names stand for all they match (said)
        chosen_measures, notes = resolve_measures(measures, avail)
        notes = [f"plots: {x}" for x in notes]
    else:
        chosen_measures = primary_measures(avail, meta.get("config"))
    if not chosen_measures:
        return [], ["plots: no outcome measures to plot"]
    keys = [k for k in keys if k not in SEED_KEYS and k != "stimulus"]
    types = list(pd.unique(raw["type"]))
    files = []
    for t in types:
        sub = raw[raw["type"] == t] if len(types) > 1 else raw
        suffix = f"_{t}" if len(types) > 1 else ""
        label = f"{meta.get('batch_id', '')}" + (f" - {t}" if len(types) > 1 else "")
        plot_keys, averaged = choose_keys(sub, keys, wanted)
        avg = f" (averaged over {', '.join(averaged)})" if averaged else ""
        if averaged:
            notes.append(
                f"plots{suffix}: {len(plot_keys) + len(averaged)} swept keys; plotting "
                f"{' x '.join(plot_keys)} (most values) and averaging over {', '.join(averaged)}; "
                "choose others with --keys"
            )
        if len(plot_keys) == 1:
            name = f"sweep{suffix}.png"
            plot_sweep(out / name, sub, plot_keys[0], chosen_measures, label + avg, [t])
        elif len(plot_keys) == 2:
            name = f"heatmap{suffix}.png"
            plot_heatmap(out / name, sub, plot_keys[0], plot_keys[1], chosen_measures, label + avg, [t])
        else:
            cpath = out / "consensus.csv"
            if len(types) > 1 or not cpath.exists():
                continue
            name = f"consensus{suffix}.png"
            plot_consensus(out / name, pd.read_csv(cpath), label)
            notes.append(f"plots{suffix}: nothing swept besides seeds; {name} shows the consensus over time"
                         + (" (of the rate series; --measures is for sweep and heatmap plots)" if measures else ""))
        files.append(name)
    if len(types) > 1:
        notes.append(f"plots: {len(types)} stimulus types, one plot each: {', '.join(files)}")
    return files, notes


# -- one stimulus --------------------------------------------------------------------------------


def _peak_pressure(it) -> tuple[np.ndarray, np.ndarray] | None:
    """(times ms, max over the skin of the pressure, kPa) of a stimulus, or None."""
    import torch

    try:
        cls = REGISTRY[it.record["type"]]
        stim = cls(**it.record["params"])
        grid = Grid(it.job["grid"]["size"], it.job["grid"]["spacing"])
        x, y = grid.coords()
        t = torch.arange(it.job["steps"], dtype=torch.float64) * it.job["dt"]
        spatial, temporal = stim.factors(x, y, t)
        flat = spatial.reshape(spatial.shape[0], -1).to(torch.float64)
        if flat.shape[0] == 1:
            peak = temporal[:, 0].to(torch.float64) * flat.max()
        else:
            peak = torch.cat([(temporal[i:i + 256].to(torch.float64) @ flat).max(1).values
                              for i in range(0, temporal.shape[0], 256)])
        return t.numpy(), peak.numpy()
    except Exception:  # noqa: BLE001 - the pressure panel is a courtesy
        return None


def stimulus_plots(dirs: list[Path], out: Path, ids: list[str]) -> list[Path]:
    """<id>_raster.png and <id>_rate.png for each stimulus id (dataset numbering)."""
    col = collect([Path(d) for d in dirs])
    by_id = {it.id: it for it in col.items}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for sid in ids:
        it = by_id.get(sid)
        if it is None:
            known = sorted(by_id)
            rng = f"{known[0]} ... {known[-1]}" if known else "none"
            why = " (it failed)" if sid in col.failed else ""
            raise ConfigError(f"--plot {sid}: unknown stimulus id{why}; the dataset has {len(known)}: {rng}")
        dt, steps = it.job["dt"], it.job["steps"]
        spikes = NpzReader("spikes")
        params = ", ".join(f"{k}={fmt(v)}" for k, v in it.record["params"].items() if v is not None)
        title = f"{sid} ({it.source}): {it.record['type']} {params}\nseed={it.record['seed']} repetition={it.record['repetition']}"
        pressure = _peak_pressure(it)
        # raster
        heights = [1, 4] if pressure is not None else [4]
        fig, axs = plt.subplots(len(heights), 1, figsize=(8, 5.5), sharex=True,
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
        axs = axs[:, 0]
        if pressure is not None:
            axs[0].plot(pressure[0], pressure[1], color="0.3")
            axs[0].set_ylabel("peak\npressure (kPa)", fontsize=8)
            axs[0].grid(alpha=0.3)
        ax = axs[-1]
        base, ticks, labels = 0, [], []
        for pop in POPULATIONS:
            n = it.job["counts"][pop]
            flat = spikes.flat(it, pop)
            step, afferent = split(flat, n)
            ax.scatter(step * dt, base + afferent, s=2, marker="|", lw=0.6, color=COLORS[pop])
            ticks.append(base + n / 2)
            labels.append(f"{pop.upper()}\n({n}, {flat.size} sp)")
            base += n
            ax.axhline(base - 0.5, color="0.8", lw=0.5)
        spikes.close()
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_ylim(-0.5, max(base, 1) - 0.5)
        ax.set_xlim(0, steps * dt)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("afferent")
        axs[0].set_title(title, fontsize=8)
        fig.tight_layout()
        p = out / f"{sid}_raster.png"
        save(fig, p)
        written.append(p)
        # population rates
        ser = NpzReader("series")
        z = ser(it)
        times = z["times"]
        fig, ax = plt.subplots(figsize=(8, 3.6))
        for pop in POPULATIONS:
            key = f"{it.record['id']}/{pop}_rate"
            if key in z.files:
                ax.step(times, z[key], where="pre", color=COLORS[pop], label=f"{pop.upper()} ({it.job['counts'][pop]})")
        ser.close()
        bin_ms = it.job.get("config", {}).get("outcome", {}).get("bin")
        ax.set_xlabel("time (ms)")
        ax.set_ylabel(f"population rate (Hz){f', {bin_ms:g} ms bins' if bin_ms else ''}")
        ax.set_xlim(0, steps * dt)
        ax.grid(alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
        ax.set_title(title, fontsize=8)
        fig.tight_layout()
        p = out / f"{sid}_rate.png"
        save(fig, p)
        written.append(p)
    return written
