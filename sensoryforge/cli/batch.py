"""`sensoryforge batch CONFIG.yml [--dry-run] [--resume PATH] [--device D] [--output DIR]
[overrides...]`: the batch command of the older documentation, as a thin front onto the Hydra
sweep of the same file (`sensoryforge -m batch_file=CONFIG.yml ...`): same plan, same dataset,
same resume. Extra Hydra overrides follow the options and go through unchanged."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sensoryforge.core.params import ConfigError
from sensoryforge.dataset.jobs import PLAN_FILE as PLAN
from sensoryforge.dataset.progress import CHECKPOINT


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sensoryforge batch",
        description="Run a batch YAML file (metadata, base_config, batch.stimuli) as a sweep.",
        epilog="The same as `sensoryforge -m batch_file=CONFIG.yml [overrides]`; see "
        "`sensoryforge --help` for overrides, presets and launchers.",
    )
    p.add_argument("config", help="the batch YAML file (see examples/batch_config.yml)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the number of stimuli, examples, the output folder and an estimate; run and write nothing")
    p.add_argument("--resume", metavar="PATH",
                   help="an interrupted batch's checkpoint.json or its folder: finished stimuli are skipped")
    p.add_argument("--device", choices=("cpu", "cuda", "mps", "auto"), help="where the simulation runs")
    p.add_argument("--output", metavar="DIR", help="the output folder (instead of the file's batch.output_dir)")
    p.add_argument("overrides", nargs="*", help="further Hydra overrides (key=value)")
    return p


def resume_folder(path: str) -> Path:
    """The folder of an interrupted batch, from its checkpoint.json or the folder itself."""
    p = Path(path)
    if p.is_file():
        try:
            json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise ConfigError(f"--resume {path}: not a checkpoint.json ({e})") from None
        return p.parent
    if p.is_dir():
        if (p / CHECKPOINT).is_file() or (p / PLAN).is_file():
            return p
        raise ConfigError(f"--resume {path}: no {CHECKPOINT} (nor {PLAN}) in this folder: nothing to resume")
    raise ConfigError(f"--resume {path}: no such file or folder")


def to_hydra(argv: list[str]) -> list[str]:
    """`batch` arguments -> the `sensoryforge -m ...` command line they stand for."""
    from sensoryforge.sweep.batchfile import override_value

    args = parser().parse_intermixed_args(argv)
    if not Path(args.config).is_file():
        raise ConfigError(f"batch {args.config}: no such file")
    out = ["-m", f"batch_file={override_value(args.config)}"]
    folder = Path(args.output) if args.output else None
    if args.resume:
        resumed = resume_folder(args.resume)
        if folder is not None and folder.resolve() != resumed.resolve():
            raise ConfigError(f"--resume {args.resume} and --output {args.output} name different folders; give one")
        folder = resumed
    if folder is not None:
        out.append(f"hydra.sweep.dir={override_value(str(folder))}")
    if args.device:
        out.append(f"pipeline.device={args.device}")
    if args.dry_run:
        out.append("dry_run=true")
    return [*out, *args.overrides]
