"""Running the battery on a config: which checks, in what order, with what sizes; the validation
loss; and the report written to a folder."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from sensoryforge.core.params import ConfigError, check_fields
from sensoryforge.core.schema import NeuronsConfig, PipelineConfig
from sensoryforge.physiology.checks import CHECKS, SHORT
from sensoryforge.physiology.criteria import Check
from sensoryforge.physiology.lab import Lab, Options
from sensoryforge.physiology.report import plot_battery, report_lines, write_csv


@dataclass
class Subject:
    """What the battery reads from a config: the population and the base seed of the noise."""

    pipeline: Any = None
    neurons: Any = None
    seed: int = 0


def as_config(cfg: DictConfig | dict) -> DictConfig:
    """The battery's config (pipeline, neurons, seed, typed and range-checked by the schema) from a
    composed DictConfig, or from a plain dict such as a dataset's stored config (missing keys take
    the schema's defaults; unknown keys are refused)."""
    d = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    try:
        out = OmegaConf.structured(Subject)
        out.pipeline = OmegaConf.merge(OmegaConf.structured(PipelineConfig), d.get("pipeline") or {})
        out.neurons = OmegaConf.merge(OmegaConf.structured(NeuronsConfig), d.get("neurons") or {})
        out.seed = int(d.get("seed", 0))
    except Exception as e:  # noqa: BLE001 - reported as one config line
        raise ConfigError(str(e).strip().splitlines()[0]) from None
    check_fields(out.pipeline, "pipeline")
    check_fields(out.neurons, "neurons")
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def parse_checks(checks: Iterable[int] | str | None) -> list[int]:
    if checks is None or checks == "" or checks == []:
        return sorted(CHECKS)
    if isinstance(checks, str):
        checks = [int(x) for x in checks.replace(" ", "").split(",") if x]
    out = sorted({int(x) for x in checks})
    bad = [x for x in out if x not in CHECKS]
    if bad:
        raise ConfigError(f"checks={bad}: unknown check; allowed: 1..{max(CHECKS)}")
    return out


def battery(
    cfg: DictConfig | dict,
    checks: Iterable[int] | str | None = None,
    options: Options | None = None,
    progress: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run the chosen checks (default all) on a config; returns their results in order."""
    cfg = as_config(cfg)
    numbers = parse_checks(checks)
    # many small tensor operations: one thread is fastest (and much faster on a shared machine)
    with torch_threads(int(cfg.pipeline.threads) or 1), torch.no_grad():
        lab = Lab(cfg, options or Options())
        # check 9 reads every spike train simulated before it: it runs last
        order = [n for n in numbers if n != 9] + ([9] if 9 in numbers else [])
        results = {}
        for n in order:
            t0 = time.perf_counter()
            try:
                r = CHECKS[n](lab)
            except Exception as e:  # noqa: BLE001 - a crashing check is a failing check
                r = Check(n, SHORT.get(n, CHECKS[n].__name__), "", error=f"{type(e).__name__}: {e}")
            r.seconds = time.perf_counter() - t0
            results[n] = r
            if progress:
                progress(r)
    return [results[n] for n in numbers]


def validation_loss(cfg: DictConfig | dict, checks: Iterable[int] | str | None = None,
                    options: Options | None = None) -> float:
    """Sum over the criteria of the chosen checks of their distance to the expected range (each
    in its own scale); 0 when every criterion passes."""
    return float(sum(c.loss for c in battery(cfg, checks, options)))


def run_battery(cfg: DictConfig | dict, out_dir: str | Path, checks: Iterable[int] | str | None = None,
                options: Options | None = None, quiet: bool = False) -> bool:
    """Run the battery, print the report, write validation.csv and validation.png into out_dir.
    Returns True when every check passed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def show(c: Check) -> None:
        if not quiet:
            print("\n".join(report_lines(c)), flush=True)

    results = battery(cfg, checks, options, progress=show)
    results.sort(key=lambda c: c.number)
    write_csv(results, out / "validation.csv")
    plot_battery(results, out / "validation.png")
    ok = all(c.passed for c in results)
    if not quiet:
        passed = sum(c.passed for c in results)
        loss = sum(c.loss for c in results)
        print(f"{passed}/{len(results)} checks passed, validation loss {loss:.3f}, "
              f"{time.perf_counter() - t0:.1f} s -> {out}", flush=True)
    return ok
