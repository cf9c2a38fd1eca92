"""`sensoryforge-status DIR`: where a sweep stands, from its folder alone (also one copied from a
cluster): stimuli done, running, pending, failed and missing, per job, with elapsed time and ETA.

    sensoryforge-status multirun/2026-12-03/10-00-00 [--jobs]

It reads the plan (sweep_plan.json), the finished job folders (job.json), the saved segments of
running jobs (partial/) and their progress ledgers (progress.jsonl), the folder's lock (a sweep
command that holds it is alive, so its unfinished jobs are running) and the cluster tasks its
launch record names (launch.json: squeue and sacct give each one's state and pending reason).
Without either, unfinished jobs were interrupted (the same sweep command resumes them).

Exit status: 0 every planned stimulus is done; 3 the sweep is running; 1 it is not running and
stimuli are failed, missing or unfinished (run the same sweep command again); 2 not a sweep folder.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path

from sensoryforge.core.text import clock
from sensoryforge.dataset.jobs import JOB_FILE, PLAN_FILE, read_plan, read_records
from sensoryforge.dataset.partial import PARTIAL, saved_ids
from sensoryforge.dataset.progress import LEDGER, read_ledger
from sensoryforge.sweep.attach import alive_tasks
from sensoryforge.sweep.lock import LOCK_FILE

COMPLETE, FAILED, NOT_A_SWEEP, RUNNING = 0, 1, 2, 3


def holder(sweep_dir: Path) -> str | None:
    """Who holds the folder's lock (a live sweep command), or None."""
    path = sweep_dir / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None  # nobody holds it
    except BlockingIOError:
        return os.pread(fd, 512, 0).decode(errors="replace").strip() or "a sweep command"
    except OSError:
        return None
    finally:
        os.close(fd)


def status(sweep_dir: Path) -> tuple[int, list[str], list[str]]:
    """(exit status, summary lines, one line per job of the latest run)."""
    if not (sweep_dir / PLAN_FILE).is_file():
        return NOT_A_SWEEP, [f"{sweep_dir}: no {PLAN_FILE}: not a sweep folder (or its plan was not written yet)"], []
    plan = read_plan(sweep_dir)
    if plan.ids is None:
        return NOT_A_SWEEP, [f"{sweep_dir}/{PLAN_FILE}: {plan.note}"], []
    planned, records, held, now = set(plan.ids), read_records(sweep_dir, plan), holder(sweep_dir), time.time()
    queued = alive_tasks(sweep_dir)  # cluster tasks of the launch record still alive (squeue, sacct)
    live = (f"the sweep command holds the folder ({held})" if held else
            f"{len(queued)} cluster tasks still alive, no command waiting for them" if queued else None)
    done = {i for i, r in records.items() if r.ok and i in planned}
    jobs = {}  # the latest run's unfinished jobs: their saved, computed and last progress
    for name, ids in plan.chunks.items():
        folder = sweep_dir / name
        if (folder / JOB_FILE).exists():
            continue
        entries, _ = read_ledger(folder / LEDGER)
        saved = saved_ids(folder) & set(ids) if (folder / PARTIAL).exists() else set()
        done |= saved
        jobs[name] = {"ids": set(ids), "started": bool(entries) or folder.exists(),
                      "computed": {i for e in entries for i in e.get("ok", [])} & set(ids),
                      "last": max((e.get("t", 0.0) for e in entries), default=None)}
    started = set().union(*(j["ids"] for j in jobs.values() if j["started"])) - done
    waiting = set().union(*(j["ids"] for j in jobs.values() if not j["started"])) - done
    failed = {i for i, r in records.items() if not r.ok and i in planned} - done - started - waiting
    missing = planned - done - failed - started - waiting
    unsaved = set().union(*(j["computed"] for j in jobs.values())) - done
    n = len(planned)
    lines = [f"sweep {sweep_dir}: {len(done)} of {n} stimuli done" + (", complete" if len(done) == n else "")]
    if live:
        lines.append(f"  done {len(done)}, running {len(started)} ({len(unsaved)} computed, not yet saved), "
                     f"pending {len(waiting)}, failed {len(failed)}, missing {len(missing)}")
    else:
        lines.append(f"  done {len(done)}, interrupted {len(started | waiting)}, failed {len(failed)}, "
                     f"missing {len(missing)}")
    this_run = sum(len(ids) for ids in plan.chunks.values()) - len(started | waiting)  # finished by it
    elapsed = now - plan.started if plan.started else None
    if len(done) == n:
        code = COMPLETE
    elif live:
        code = RUNNING
        lines.append(f"  running: {live}")
        rate = (this_run + len(unsaved)) / elapsed if elapsed else 0.0
        eta = clock(len(started | waiting) / rate) if rate > 0 else "unknown (no stimulus finished yet)"
        lines.append(f"  elapsed {clock(elapsed or 0.0)}, ETA {eta}")
    else:
        code = FAILED
        lines.append("  not running: run the same sweep command again to finish it (finished stimuli are kept)")
    per_job = []
    for name, ids in plan.chunks.items():
        j = jobs.get(name)
        if j is None:
            state = "finished"
        else:
            state = ("running" if live else "interrupted") if j["started"] else ("pending" if live else "not started")
        ok = len(set(ids) & done)
        bad = sum(1 for i in ids if i in records and not records[i].ok and i not in done)
        line = f"  {name}: {state}, {ok} of {len(ids)} done, {bad} failed"
        if name in queued:
            q = queued[name]
            line += f", Slurm task {q['task']} {q['state']}" + (f" ({q['reason']})" if q["reason"] else "")
        if j and j["last"]:
            line += f", {len(j['computed'] - done)} computed unsaved, last progress {clock(now - j['last'])} ago"
        per_job.append(line)
    return code, lines, per_job


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="sensoryforge-status", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir", type=Path, help="the sweep folder (hydra.sweep.dir)")
    p.add_argument("--jobs", action="store_true", help="one line per job of the latest run")
    args = p.parse_args(argv)
    code, lines, per_job = status(args.sweep_dir)
    out = sys.stdout if code != NOT_A_SWEEP else sys.stderr
    print("\n".join(lines + (per_job if args.jobs else [])), file=out)
    sys.exit(code)


if __name__ == "__main__":
    main()
