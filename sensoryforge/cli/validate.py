"""`sensoryforge-validate`: the physiology battery on a config.

    sensoryforge-validate [key=value ...] [-o OUT] [--checks 1,2,...] [--quick]
    sensoryforge-validate --calibration SWEEP_DIR

prints PASS/FAIL per check with the measured figures, the expected ranges and the sources, writes
`validation.csv` and `validation.png` into OUT (default `validation/<timestamp>`), and exits 1 if any
check fails (2 on a bad config).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sensoryforge.config import compose_error, load_config
from sensoryforge.core.params import ConfigError


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="sensoryforge-validate",
        description="Run the physiology battery on a config (Hydra overrides, as for `sensoryforge`).",
    )
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. neurons.sa.gain=0.3 pipeline=fast")
    p.add_argument("-o", "--out", type=Path, help="output folder (default: validation/<timestamp>)")
    p.add_argument("--checks", default=None, help="comma-separated check numbers (default: all)")
    p.add_argument("--quick", action="store_true", help="fewer afferents and trials per experiment")
    p.add_argument("--calibration", type=Path, metavar="SWEEP_DIR",
                   help="instead: summarise an experiment=calibrate sweep (start vs trials, calibration.png)")
    args = p.parse_args(argv)
    # the battery (torch, plots) loads once the command line is read: --help needs none of it
    from sensoryforge.physiology import (
        QUICK,
        as_config,
        calibration_report,
        parse_checks,
        run_battery,
    )

    if args.calibration is not None:
        try:
            calibration_report(args.calibration)
        except (ConfigError, OSError) as e:
            print(f"sensoryforge-validate: error: {e}", file=sys.stderr)
            sys.exit(2)
        return
    try:
        numbers = parse_checks(args.checks)
        try:
            cfg = load_config(args.overrides)
        except Exception as e:  # noqa: BLE001 - Hydra's composition errors become one line
            raise compose_error(e) from None
        cfg = as_config(cfg)
    except ConfigError as e:
        print(f"sensoryforge-validate: error: {e}", file=sys.stderr)
        sys.exit(2)
    out = args.out or Path("validation") / time.strftime("%Y%m%d-%H%M%S")
    ok = run_battery(cfg, out, numbers, QUICK if args.quick else None)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
