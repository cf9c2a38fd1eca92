"""`sensoryforge-aggregate`: job folders -> one dataset and its summaries (sensoryforge/dataset),
and the analyses on top: `--plot` one stimulus, `--compare` two sweeps, `--validate` the physiology
battery on the dataset's config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sensoryforge.core.params import ConfigError
from sensoryforge.dataset.aggregate import FORMATS, aggregate, metadata, problem_lines
from sensoryforge.dataset.collection import collect
from sensoryforge.dataset.files import DiskFull
from sensoryforge.dataset.hdf5 import LAYOUTS


def _csv_list(text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensoryforge-aggregate",
        description="Collect sweep folders into one dataset (results.h5, results.pt or results.nwb, stimulus_index.json, "
        "batch_metadata.json), tables (raw.csv, summary.csv, consensus.csv) and plots. "
        "--plot and --compare only plot or compare (the dataset is left as it is).",
    )
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="sweep folders (or single-run folders)")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: the only DIR; required with several)")
    p.add_argument("--format", choices=FORMATS, default="both",
                   help="dataset files to write: both = hdf5 + pytorch; nwb = results.nwb (Neurodata Without Borders)")
    p.add_argument("--layout", choices=LAYOUTS, default="groups",
                   help="results.h5: groups (per-stimulus groups, the documented layout) or ragged "
                   "(one spike-index and one offsets array per population: much faster to write and read)")
    p.add_argument("--name", help="batch id (default: the folder's name)")
    p.add_argument("--no-intermediates", action="store_true", help="leave saved intermediates out of the datasets")
    p.add_argument("--no-plots", action="store_true", help="no sweep.png / heatmap.png")
    p.add_argument("--measures",
                   help="comma-separated outcome measures to plot / compare, every one of them (default: "
                   "outcome.primary and its kind in every population): full names (sa_rate_mean) or short "
                   "ones that take every series that has them (time_to_50, auc, rate_auc, sa_auc)")
    p.add_argument("--keys", help="comma-separated swept keys for the x axis (and y axis) of the sweep plot")
    p.add_argument("--validate", action="store_true", help="also run the physiology battery on the dataset's config")
    p.add_argument("--plot", metavar="STIM_ID", action="append",
                   help="raster and population-rate plots of one stimulus (repeatable)")
    p.add_argument("--compare", type=Path, metavar="B", nargs="+",
                   help="compare the outcome measures of DIR with sweep folder(s) B; writes compare.csv")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="with --compare: bootstrap 95%% CIs of the difference from N resamples")
    p.add_argument("--alpha", type=float, default=0.05, help="with --compare: family-wise significance level")
    return p


def _fail(msg: str, code: int = 2) -> None:
    print(f"sensoryforge-aggregate: error: {msg}", file=sys.stderr)
    sys.exit(code)


def _load_validate():
    """The battery, imported only when asked (it is the heaviest part of the package)."""
    try:
        from sensoryforge import physiology
    except ModuleNotFoundError as e:
        if e.name in ("sensoryforge.physiology",):
            _fail("--validate: the physiology battery (sensoryforge.physiology) is not installed")
        raise
    if not hasattr(physiology, "run_battery"):
        _fail("--validate: sensoryforge.physiology has no run_battery(cfg, out_dir)")
    return physiology


def run_validation(v, meta: dict, out: Path) -> bool:
    from omegaconf import OmegaConf

    if not meta.get("config"):
        raise ConfigError(f"{out}: no config to validate (no finished stimulus)")
    cfg = OmegaConf.create(meta["config"])
    return bool(v.run_battery(cfg, out))


def main(argv: list[str] | None = None) -> None:
    p = parser()
    args = p.parse_args(argv)
    if args.out is None and len(args.dirs) > 1:
        p.error("-o/--out is required with several folders")
    if args.bootstrap < 0:
        p.error("--bootstrap: must be >= 0")
    if args.bootstrap and not args.compare:
        p.error("--bootstrap goes with --compare")
    if not 0 < args.alpha < 1:
        p.error("--alpha: must be between 0 and 1")
    out = args.out or args.dirs[0]
    validator = _load_validate() if args.validate else None
    code = 0
    try:
        if args.plot or args.compare:
            if args.plot:
                from sensoryforge.dataset.plots import stimulus_plots

                for f in stimulus_plots(args.dirs, out, args.plot):
                    print(f"wrote {f}")
            if args.compare:
                from sensoryforge.dataset import compare

                table, text = compare.compare(
                    args.dirs, args.compare, alpha=args.alpha, bootstrap=args.bootstrap,
                    measures=_csv_list(args.measures),
                )
                path = compare.write(table, Path(out))
                print(text)
                print(f"wrote {path}")
            meta = None
        else:
            meta = aggregate(
                args.dirs, out, args.format, args.name, intermediates=not args.no_intermediates,
                plots=not args.no_plots, measures=_csv_list(args.measures), keys=_csv_list(args.keys),
                layout=args.layout,
            )
            n, k = meta["num_stimuli"], meta["num_failed"]
            print(f"{n} stimuli ({k} not in the dataset) -> {out}: " + ", ".join(meta["files"]))
            if k:  # one line per reason; every stimulus is in batch_metadata.json
                print(f"{k} of {n + k} stimuli not in the dataset (batch_metadata.json: failed_stimuli):",
                      file=sys.stderr)
                for line in problem_lines(meta["failed_stimuli"]):
                    print(f"  {line}", file=sys.stderr)
                code = 1
        if validator is not None:
            if meta is None:
                meta = metadata(collect(args.dirs), args.name)
            ok = run_validation(validator, meta, Path(out))
            print(f"validation: {'PASS' if ok else 'FAIL'}")
            if not ok:
                code = 1
    except ConfigError as e:
        _fail(str(e))
    except DiskFull as e:  # says where and how much; the same command again finishes the work
        _fail(str(e), 1)
    except OSError as e:  # an output that cannot be written (permissions, a read-only folder)
        _fail(f"{e.filename or out}: {e.strerror or e}")
    except KeyboardInterrupt:  # every output is written whole or not at all: run it again
        _fail("interrupted; nothing half-written is left: run the same command again", 130)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()
