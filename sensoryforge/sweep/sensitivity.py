"""Sensitivity analysis (experiment=sensitivity): a Morris screening or Sobol indices with SALib over
user-chosen parameters, run through the ordinary chunked, resumable sweep.

The sample (SALib's, seeded) is a matrix of P points x D parameters. Each point becomes one block
of the sweep (sweeper.blocks: a block whose values are single values is one point), its values
written with repr so that they reach the stimuli exactly; blocks keep the sample's order, so
stimulus i belongs to point i // M, where M is the stimuli per point (sensitivity.repetitions, or
any sweep given beside it, e.g. repetition=range(3): a point's measure is their mean).

The sweeper writes the section as sensitivity.json into the sweep folder (under its lock) and,
once the dataset is built, `analyze` reads raw.csv, rebuilds the sample from sensitivity.json,
checks that every row holds its point's values, and writes sensitivity.csv (per measure and
parameter: Morris mu*, its bootstrap confidence interval, sigma, mu; Sobol S1, ST and theirs; the
rank; the trajectories or base samples used) and sensitivity.png. A trajectory (Morris) or base
sample (Sobol) with a failed stimulus is left out of every measure, one with an undefined measure
(NaN, e.g. a level never reached) out of that measure; both are said. A constant measure gets zeros.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sensoryforge.core.outcome_names import MEASURE_NAME, parse_outcomes, resolve_measures
from sensoryforge.core.params import ConfigError, check_fields, finite
from sensoryforge.core.schema import SEED_KEYS
from sensoryforge.dataset.files import atomic, write_json
from sensoryforge.dataset.jobs import PLAN_FILE

SPEC_FILE, CSV_FILE, PNG_FILE = "sensitivity.json", "sensitivity.csv", "sensitivity.png"
METHODS = ("morris", "sobol")
log = logging.getLogger("sensoryforge")


class SensitivityError(Exception):
    """The analysis cannot be made (one line): the sweep's results do not fit its sample."""


@dataclass
class Spec:
    method: str
    keys: list[str]
    bounds: list[list[float]]
    trajectories: int
    levels: int
    samples: int
    repetitions: int
    seed: int
    resamples: int
    measures: list[str] | None

    @property
    def group(self) -> int:
        """Points per trajectory (Morris) or per base sample (Sobol, first order and total)."""
        return len(self.keys) + (1 if self.method == "morris" else 2)

    @property
    def n_groups(self) -> int:
        return self.trajectories if self.method == "morris" else self.samples

    @property
    def n_points(self) -> int:
        return self.n_groups * self.group

    def problem(self) -> dict:
        return {"num_vars": len(self.keys), "names": list(self.keys), "bounds": [list(b) for b in self.bounds]}

    def describe(self) -> str:
        what = (f"{self.trajectories} trajectories on {self.levels} levels" if self.method == "morris"
                else f"{self.samples} base samples")
        reps = f", {self.repetitions} repetitions each" if self.repetitions > 1 else ""
        return (f"{self.method} over {len(self.keys)} parameters ({', '.join(self.keys)}), {what}: "
                f"{self.n_points} points{reps}")


def spec_of(section) -> Spec:
    """The checked `sensitivity` section (a config node or a dict). ConfigError: one line."""
    if hasattr(section, "_get_node"):
        check_fields(section, "sensitivity")
    s = dict(section)
    method = str(s.get("method", "morris"))
    if method not in METHODS:
        raise ConfigError(f"sensitivity.method={method}: must be one of {', '.join(METHODS)}")
    keys, bounds = [], []
    for key, rng in dict(s.get("parameters") or {}).items():
        if rng is None:
            continue  # a range of null leaves a preset's parameter out
        key = str(key)
        where = f"sensitivity.parameters.{key}"
        if "." not in key or key.startswith(("hydra.", "sensitivity.")) or key in SEED_KEYS:
            raise ConfigError(f"{where}: not a parameter to screen; give a dotted key of the config, "
                              "e.g. neurons.sa.gain or stimulus.amplitude")
        rng = list(rng) if isinstance(rng, (list, tuple)) or hasattr(rng, "_iter_ex") else [rng]
        ok = len(rng) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)
        if not ok or not all(finite(float(v)) for v in rng) or not float(rng[0]) < float(rng[1]):
            shown = "[" + ", ".join(str(v) for v in rng) + "]"
            raise ConfigError(f"{where}={shown}: must be [low, high], finite numbers with low < high")
        keys.append(key)
        bounds.append([float(rng[0]), float(rng[1])])
    if not keys:
        raise ConfigError("sensitivity.parameters: no parameter to screen; give dotted key: [low, high] pairs")
    spec = Spec(method, keys, bounds, int(s.get("trajectories", 10)), int(s.get("levels", 4)),
                int(s.get("samples", 64)), int(s.get("repetitions", 1)), int(s.get("seed", 0)),
                int(s.get("resamples", 1000)), None if s.get("measures") is None else [str(m) for m in s["measures"]])
    if method == "morris" and (spec.levels < 2 or spec.levels % 2):
        raise ConfigError(f"sensitivity.levels={spec.levels}: must be an even number >= 2 (Morris grid levels)")
    if method == "morris" and spec.trajectories < 2:
        raise ConfigError(f"sensitivity.trajectories={spec.trajectories}: must be an integer >= 2")
    if method == "sobol" and (spec.samples < 2 or spec.samples & (spec.samples - 1)):
        raise ConfigError(f"sensitivity.samples={spec.samples}: must be a power of 2 >= 2 (Sobol base samples)")
    return spec


def sample(spec: Spec) -> np.ndarray:
    """The sample, [points, parameters], the same for the same spec (SALib, seeded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.method == "morris":
            from SALib.sample import morris

            return morris.sample(spec.problem(), spec.trajectories, num_levels=spec.levels, seed=spec.seed)
        from SALib.sample import sobol

        return sobol.sample(spec.problem(), spec.samples, calc_second_order=False, seed=spec.seed)


def value(x: float) -> str:
    """An override value that Hydra parses back to exactly this float."""
    return repr(float(x))


def blocks_of(spec: Spec, x: np.ndarray | None = None) -> list[dict[str, str]]:
    """One sweep block per point, in the sample's order."""
    x = sample(spec) if x is None else x
    extra = {"repetition": f"range({spec.repetitions})"} if spec.repetitions > 1 else {}
    return [{**{k: value(v) for k, v in zip(spec.keys, row)}, **extra} for row in x]


def check(spec: Spec, expand_and_check) -> None:
    """Every range's ends as points of a sweep of their own (`expand_and_check(blocks)` expands
    and checks them as the sweep's points are checked, returning the job configs: keys that
    exist, types, ranges), each key a real number, and the measures against the computed
    outcomes. ConfigError: one line naming the parameter."""
    outcome = None
    for key, (lo, hi) in zip(spec.keys, spec.bounds):
        where = f"sensitivity.parameters.{key}=[{lo:g}, {hi:g}]"
        try:
            cfgs = expand_and_check([{key: value(lo)}, {key: value(hi)}])
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        outcome = outcome or cfgs[0].outcome
        if not key.startswith("stimulus."):
            node = cfgs[0]
            for part in key.split("."):
                node = node[part]
            if isinstance(node, bool) or not isinstance(node, float):
                raise ConfigError(f"{where}: must be a real-valued key; it holds {type(node).__name__} values")
    if spec.measures is not None and outcome is not None:
        names = [f"{s}_{m}" for s, m in parse_outcomes(outcome)]
        resolve_measures(spec.measures, names, option="sensitivity.measures", where="computed")


def plan_blocks(section, blocks, params: dict, arguments: list[str], loader, compose) -> tuple[Spec, list[dict]]:
    """The sweeper's side (prepare): the checked spec and the sweep's blocks, one per point."""
    from sensoryforge.sweep.plan import check_sweep, expand, parse_overrides

    spec = spec_of(section)
    if blocks:
        raise ConfigError("sensitivity: its sample is the sweep; it cannot be run with hydra.sweeper.blocks "
                          "or a batch_file (set sensitivity=null to run those)")
    given = [*params, *(o.key_or_group for o in parse_overrides(list(arguments)))]
    for key in spec.keys:
        if key in given:  # it would replace the sample's values at every point
            raise ConfigError(f"{key}: screened by sensitivity.parameters.{key}; set its range there rather than "
                              "on the command line")
    check(spec, lambda b: check_sweep(expand(params, b, arguments, loader), compose))
    return spec, blocks_of(spec)


def keep_spec(sweep_dir: Path, spec: Spec | None) -> None:
    """sensitivity.json for the analysis at the end (and a re-run's); a sweep without one removes
    an earlier sweep's."""
    path = Path(sweep_dir) / SPEC_FILE
    if spec is None:
        path.unlink(missing_ok=True)
    else:
        write_json(path, asdict(spec))


def finish(sweep_dir: Path) -> bool:
    """The sweeper's side (finish, after the dataset): the analysis of a sensitivity sweep, its
    lines logged; False (and one line) when it could not be made."""
    if read_spec(sweep_dir) is None:
        return True
    try:
        lines, notes = analyze(sweep_dir)
    except (SensitivityError, ConfigError) as e:
        print(f"sensoryforge: error: sensitivity: {e}", file=sys.stderr)
        return False
    for line in lines:
        log.info("%s", line)
    for line in notes:
        log.warning("%s", line)
    return True


def read_spec(sweep_dir: Path) -> Spec | None:
    path = Path(sweep_dir) / SPEC_FILE
    if not path.is_file():
        return None
    return Spec(**json.loads(path.read_text()))


# -- the analysis ----------------------------------------------------------------------------------


def _point_values(spec: Spec, sweep_dir: Path, x: np.ndarray):
    """(measure names, [points, measures] means over each point's stimuli (NaN where any is
    NaN), which points lack a stimulus)."""
    import pandas as pd

    n_points = len(x)
    try:
        planned = int(json.loads((sweep_dir / PLAN_FILE).read_text())["n_stimuli"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SensitivityError(f"{sweep_dir / PLAN_FILE}: missing or unreadable; no plan to map stimuli to "
                               "sample points") from None
    per = planned // n_points
    if per < 1 or per * n_points != planned:
        raise SensitivityError(f"the sweep planned {planned} stimuli, not a multiple of the sample's "
                               f"{n_points} points")
    try:
        # floats as written (repr): pandas 3 reads them back exactly, pandas 2 when asked to
        exact = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
        raw = pd.read_csv(sweep_dir / "raw.csv", **exact)
    except (OSError, pd.errors.EmptyDataError):
        raw = pd.DataFrame()
    if not len(raw) or "stimulus_id" not in raw.columns:
        raise SensitivityError("raw.csv holds no stimulus: nothing to analyse")
    nums = raw["stimulus_id"].str.slice(5).astype(int).to_numpy()
    order = np.argsort(nums, kind="stable")
    raw, nums = raw.iloc[order].reset_index(drop=True), nums[order]
    points = nums // per
    for j, key in enumerate(spec.keys):
        if key not in raw.columns:
            continue  # a key with one value over the sweep is no column of raw.csv
        got = raw[key].to_numpy(dtype=float)
        bad = np.flatnonzero(got != x[points, j])
        if bad.size:
            i = bad[0]
            raise SensitivityError(
                f"{raw['stimulus_id'][i]}: {key}={got[i]!r} in raw.csv, the sample ({SPEC_FILE}) says "
                f"{x[points[i], j]!r}; this folder holds another sweep"
            )
    available = [c for c in raw.columns if MEASURE_NAME.match(c)]
    measures = available if spec.measures is None else resolve_measures(
        spec.measures, available, option="sensitivity.measures", where="in raw.csv")[0]
    values = raw[measures].to_numpy(dtype=float)
    sums = np.zeros((n_points, len(measures)))
    np.add.at(sums, points, values)  # NaN stays NaN
    counts = np.bincount(points, minlength=n_points)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = sums / counts[:, None]
    return measures, y, counts < per


def _indices(spec: Spec, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """SALib's indices of one measure over whole groups (x, y hold only complete ones)."""
    d = len(spec.keys)
    names = ("mu_star", "mu_star_conf", "sigma", "mu") if spec.method == "morris" else ("S1", "S1_conf", "ST", "ST_conf")
    if len(y) == 0:
        return {k: np.full(d, math.nan) for k in names}
    if np.ptp(y) == 0:  # a constant measure: nothing moves it
        return {k: np.zeros(d) for k in names}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if spec.method == "morris":
            from SALib.analyze import morris

            r = morris.analyze(spec.problem(), x, y, num_levels=spec.levels, num_resamples=spec.resamples,
                               seed=spec.seed)
        else:
            from SALib.analyze import sobol

            # SALib 1.6 leaves its bootstrap unseeded for seed 0: seed + 1
            r = sobol.analyze(spec.problem(), y, calc_second_order=False, num_resamples=spec.resamples,
                              seed=spec.seed + 1)
    return {k: np.asarray(r[k], dtype=float) for k in names}


def _ranks(score: np.ndarray) -> list[float]:
    """1 = the largest; ties share the best rank; NaN unranked."""
    out = []
    for s in score:
        out.append(math.nan if math.isnan(s) else float(1 + sum(1 for t in score if not math.isnan(t) and t > s)))
    return out


def analyze(sweep_dir: Path, spec: Spec | None = None, plot: bool = True) -> tuple[list[str], list[str]]:
    """sensitivity.csv and sensitivity.png of a finished sweep folder; returns lines for people:
    what was written with the first measure's ranking, and notes (what was left out).
    SensitivityError (one line) when the results do not fit the sample."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    spec = spec or read_spec(sweep_dir)
    if spec is None:
        raise SensitivityError(f"{sweep_dir / SPEC_FILE}: not found; not a sensitivity sweep")
    x = sample(spec)
    measures, y, missing = _point_values(spec, sweep_dir, x)
    g, n_groups = spec.group, spec.n_groups
    unit = "trajectories" if spec.method == "morris" else "base samples"
    lost = missing.reshape(n_groups, g).any(axis=1)
    notes = []
    if lost.any():
        which = ", ".join(str(i) for i in np.flatnonzero(lost))
        notes.append(f"sensitivity: {lost.sum()} of {n_groups} {unit} incomplete (a stimulus not in the dataset: "
                     f"{unit} {which}, counted from 0); analysed the other {n_groups - lost.sum()}")
    rows, undefined = [], []
    for m, name in enumerate(measures):
        ym = y[:, m].reshape(n_groups, g)
        keep = ~lost & np.isfinite(ym).all(axis=1)
        if (~lost & ~keep).any():
            undefined.append(f"{name} ({(~lost & ~keep).sum()})")
        usable = int(keep.sum())
        if usable < 2:
            keep[:] = False
            usable = 0
        rx = x.reshape(n_groups, g, -1)[keep].reshape(-1, x.shape[1])
        res = _indices(spec, rx, ym[keep].reshape(-1))
        score = res["mu_star"] if spec.method == "morris" else res["ST"]
        for j, key in enumerate(spec.keys):
            rows.append({"measure": name, "parameter": key, **{k: float(v[j]) for k, v in res.items()},
                         "rank": _ranks(score)[j], unit.replace(" ", "_"): usable})
    if undefined:
        notes.append(f"sensitivity: undefined (NaN) measures, {unit} left out of each: " + ", ".join(undefined)
                     + "; fewer than 2 left: NaN in sensitivity.csv")
    df = pd.DataFrame(rows)
    with atomic(sweep_dir / CSV_FILE) as tmp:
        df.to_csv(tmp, index=False)
    files = [CSV_FILE]
    if plot and len(df):
        try:
            plot_indices(df, spec, sweep_dir / PNG_FILE)
            files.append(PNG_FILE)
        except Exception as e:  # noqa: BLE001 - a plot must not cost the table; said
            notes.append(f"sensitivity: plot failed: {type(e).__name__}: {e}")
    lines = [f"sensitivity: {spec.describe()} -> {', '.join(files)}"]
    if len(df):
        first = df[df["measure"] == measures[0]].sort_values("rank", na_position="last")
        col = "mu_star" if spec.method == "morris" else "ST"
        lines.append(f"  {measures[0]} ({col}): "
                     + " > ".join(f"{r.parameter} {getattr(r, col):.3g}" for r in first.itertuples()))
    return lines, notes


def plot_indices(df, spec: Spec, path: Path) -> None:
    """One panel per measure: a horizontal bar per parameter, largest on top, with the bootstrap
    confidence interval (Morris mu*; Sobol ST and S1 side by side)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = list(dict.fromkeys(df["measure"]))
    d = len(spec.keys)
    cols = min(len(measures), 6)
    rows = math.ceil(len(measures) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, (0.28 * d + 1.1) * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(measures):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, measures):
        sub = df[df["measure"] == name]
        order = sub.sort_values("rank", ascending=False, na_position="first")
        pos = np.arange(len(order))
        if spec.method == "morris":
            ax.barh(pos, order["mu_star"].fillna(0), xerr=order["mu_star_conf"].fillna(0), color="#1f77b4",
                    error_kw={"lw": 0.8})
            ax.set_xlabel("mu*", fontsize=7)
        else:
            ax.barh(pos + 0.2, order["ST"].fillna(0), 0.4, xerr=order["ST_conf"].fillna(0), color="#1f77b4",
                    label="ST", error_kw={"lw": 0.8})
            ax.barh(pos - 0.2, order["S1"].fillna(0), 0.4, xerr=order["S1_conf"].fillna(0), color="#ff7f0e",
                    label="S1", error_kw={"lw": 0.8})
            ax.legend(fontsize=6, loc="lower right")
        ax.set_yticks(pos, order["parameter"], fontsize=6)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(name, fontsize=8)
        score = sub["mu_star" if spec.method == "morris" else "ST"]
        empty = "undefined (NaN)" if score.isna().all() else "constant" if (score == 0).all() else None
        if empty:
            ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", fontsize=7, color="0.4")
            ax.set_xticks([])
    unit = f"{spec.trajectories} trajectories" if spec.method == "morris" else f"{spec.samples} base samples"
    fig.suptitle(f"sensitivity ({spec.method}, {unit}, {spec.n_points} points)", fontsize=9,
                 y=1 - 0.15 / fig.get_figheight())
    # fixed margins: tight_layout costs seconds on dozens of panels; the labels are the parameters'
    width = max(len(k) for k in spec.keys) * 0.055 + 0.15  # inches for the tick labels
    fig.subplots_adjust(left=width / fig.get_figwidth() * 1.1, right=0.98, bottom=0.6 / fig.get_figheight(),
                        top=1 - 0.7 / fig.get_figheight(), wspace=width / 2.6 + 0.25, hspace=0.6)
    with atomic(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def describe_points(spec: Spec, n_stimuli: int) -> str:
    per = n_stimuli // spec.n_points if spec.n_points else 0
    return f"sensitivity: {spec.describe()} ({per} stimuli per point)"

