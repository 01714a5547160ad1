"""Live status of a sweep: every cell's state, epoch, last metrics, wall time, ETA and SLURM job.

    python -m runner.sweep.status <sweep folder> [--watch [SECONDS]] [--json]
    sam-status <sweep folder> ...

Everything is read from the files the runs and the launcher write (never executed
or unpickled), so it works while the launcher waits, after it was killed, and on a
finished sweep. docs/status.md lists the files read, the rules that decide a cell's
state (the first that applies wins; `inspect_cell` applies them in that order) and
how ETAs are estimated.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.folder import (
    CELL_MARKERS,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FINISHED_STATUSES,
    JOB_CODES,
    JOB_RUNNING,
    JOB_WAITING,
    LOCK_FILE,
    METRICS_FILE,
    OUTCOMES_DIR,
    PLAN_FILE,
    RECORD_STATUSES,
    RESULT_FILE,
    RUN_LOG,
    SUBMITIT_DIR,
    base_state,
    read_result,
)
from runner.io import safe_load_yaml

# A cell's state: who works on it (running, busy: a second process found it locked; pending: queued),
# nobody (unfinished: resumable), or how its record ends it (runner.folder.RECORD_STATUSES).
STATES = ("running", "busy", "pending", "unfinished", *RECORD_STATUSES)
# Cells that someone works on or will: the only ones with an ETA.
ACTIVE_STATES = ("running", "busy", "pending")
# A job folder written this long before the plan's timestamp still counts as this launch's
# (file server and login node clocks may differ a little).
PLAN_CLOCK_SLACK_S = 60.0
SCHEDULER_TIMEOUT_S = 15.0


class StatusError(Exception):
    """A sweep folder that cannot be shown; the message is the one line printed."""


Scheduler = Callable[[Sequence[str]], "dict[str, str] | None"]


@dataclass
class CellStatus:
    """One row of the status: what the cell's files (and the scheduler) say about it."""

    cell: str
    run_dir: str
    state: str = "pending"
    in_plan: bool = False
    action: str | None = None
    job_num: int | None = None
    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    train_error: float | None = None
    test_loss: float | None = None
    test_error: float | None = None
    wall_time_s: float | None = None
    eta_s: float | None = None
    eta_estimated: bool = False
    job_id: str | None = None
    scheduler_state: str | None = None
    lock: dict[str, Any] | None = None
    error: str | None = None
    log: str | None = None
    # Internal: a full-run duration this cell lends to estimates of untimed cells.
    _full_run_s: float | None = field(default=None, repr=False)


# ---------------------------------------------------------------- reading files


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None  # NaN / inf (a diverged loss): no value


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def load_plan(sweep_dir: Path) -> dict[str, Any] | None:
    """The launch's sweep_plan.json, None when there is none; StatusError when it is unreadable."""
    path = sweep_dir / PLAN_FILE
    if not path.exists():
        return None
    plan = _read_json(path)
    if not isinstance(plan, dict) or not isinstance(plan.get("cells"), list):
        raise StatusError(f"{path} is not a sweep plan (JSON with a 'cells' list); remove it or relaunch the sweep")
    return plan


def discover_cells(sweep_dir: Path) -> list[Path]:
    """Folders under `sweep_dir` that hold a run's files (hidden folders such as .hydra, .submitit skipped)."""
    found = []
    for folder, dirs, files in os.walk(sweep_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if any(name in files for name in CELL_MARKERS):
            found.append(Path(folder))
    return found


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv's rows, numbers as floats (empty cells as None); [] when absent or unreadable."""
    try:
        with open(run_dir / METRICS_FILE, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    return [{key: _float(value) for key, value in row.items() if key} for row in rows]


# config.yaml by (path, modification time, size): a cell writes it once, and the live view
# would otherwise parse every running cell's copy on every poll.
_CONFIGS: dict[tuple[str, int, int], Any] = {}


def _read_config(path: Path) -> Any:
    """A cell's config.yaml as plain data, None when absent or unreadable; parsed once per version."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in _CONFIGS:
            if len(_CONFIGS) > 4096:  # a view that has outlived many sweeps' cells
                _CONFIGS.clear()
            with open(path, encoding="utf-8") as handle:
                _CONFIGS[key] = safe_load_yaml(handle)
        return _CONFIGS[key]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def total_epochs(run_dir: Path, result: dict[str, Any] | None) -> int | None:
    """N: `train.epochs` of the cell's config.yaml (plain YAML, never resolved), else of its result."""
    config = _read_config(run_dir / CONFIG_FILE)
    if not isinstance(config, dict) and isinstance(result, dict):
        config = result.get("config")
    if isinstance(config, dict):
        train = config.get("train")
        epochs = _int(train.get("epochs")) if isinstance(train, dict) else None
        if epochs:
            return epochs
        schedule = config.get("schedule")
        stages = schedule.get("stages") if isinstance(schedule, dict) else None
        if isinstance(stages, list):
            counts = [_int(stage.get("epochs")) for stage in stages if isinstance(stage, dict)]
            if counts and all(counts):
                return sum(counts)
    return _int(result.get("epochs")) if isinstance(result, dict) else None


def read_outcomes(sweep_dir: Path, sweep_id: str | None) -> list[dict[str, Any]]:
    """Outcome records of one launch (`sweep_id`), or of every launch oldest first when None."""
    root = sweep_dir / OUTCOMES_DIR
    if sweep_id is not None:
        launches = [root / sweep_id]
    else:
        launches = sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []
    records = []
    for launch in launches:
        for path in sorted(launch.glob("*.json")):
            record = _read_json(path)
            if isinstance(record, dict):
                records.append(record)
    return records


def submitit_array_jobs(sweep_dir: Path, created: float, launched: int) -> dict[int, str]:
    """job_num -> SLURM job id from `.submitit/` folders written since the plan.

    Arrays name their folders `<array id>_<task>` with task = job_num; the newest
    array (highest id) is this launch's. A launch of one cell submits a plain job,
    whose folder is the newest numeric one.
    """
    root = sweep_dir / SUBMITIT_DIR
    if not root.is_dir():
        return {}
    arrays: dict[int, dict[int, str]] = {}
    singles: list[int] = []
    for entry in root.iterdir():
        mtime = _mtime(entry)
        if not entry.is_dir() or mtime is None or mtime < created - PLAN_CLOCK_SLACK_S:
            continue
        match = re.fullmatch(r"(\d+)_(\d+)", entry.name)
        if match:
            arrays.setdefault(int(match[1]), {})[int(match[2])] = entry.name
        elif entry.name.isdigit():
            singles.append(int(entry.name))
    if arrays:
        return arrays[max(arrays)]
    if launched == 1 and singles:
        return {0: str(max(singles))}
    return {}


# ---------------------------------------------------------------- scheduler


def _run_command(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_job_states(text: str) -> dict[str, str]:
    """`JOBID|STATE` lines (squeue -o '%i|%T', sacct -P -o JobID,State) -> {job id: base state}."""
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 2 or not parts[0] or parts[0].lower() == "jobid":
            continue
        if parts[1].strip():
            states[parts[0].strip()] = base_state(parts[1])  # "CANCELLED by 1000" -> CANCELLED
    return states


def query_scheduler(job_ids: Sequence[str]) -> dict[str, str] | None:
    """SLURM state of each job id (array tasks as `<array>_<task>`), None when no scheduler answers.

    squeue first (all states, so recently finished jobs too; by user rather than
    by id, since one purged id makes `squeue -j` fail as a whole), then sacct
    for the ids squeue no longer knows.
    """
    if not job_ids:
        return {}
    wanted = set(job_ids)
    states: dict[str, str] = {}
    answered = False
    if shutil.which("squeue"):
        out = _run_command(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T", "-u", getpass.getuser()])
        if out is not None:
            answered = True
            states.update({k: v for k, v in parse_job_states(out).items() if k in wanted})
    missing = sorted(wanted - set(states))
    if missing and shutil.which("sacct"):
        out = _run_command(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(missing)])
        if out is not None:
            answered = True
            states.update({k: v for k, v in parse_job_states(out).items() if k in wanted})
    return states if answered else None


# ---------------------------------------------------------------- one cell


def lock_holder(run_dir: Path, scheduler_states: dict[str, str] | None) -> dict[str, Any] | None:
    """The cell's `.lock` with `live` (its holder still works on the cell) and `verified` (we could check).

    A holder on this host is judged as the runner judges it (runner.sweep.lock: the
    pid runs and is the same process); one on another host by its SLURM job's
    state, from the one scheduler query of the whole sweep, and assumed live
    when there is no job or no answer. The lock file is hard-linked complete,
    so one that is not a lock record holds nobody.
    """
    path = run_dir / LOCK_FILE
    if not path.exists():
        return None
    lock = _read_json(path)
    if not isinstance(lock, dict) or not isinstance(lock.get("pid"), int) or not isinstance(lock.get("host"), str):
        return {"live": False, "verified": True}
    info = {key: lock.get(key) for key in ("host", "pid", "slurm_job_id", "started")}
    job = str(lock["slurm_job_id"]) if lock.get("slurm_job_id") else None
    if lock["host"] == socket.gethostname():
        from runner.sweep.lock import holder_is_live  # the runner's own rule, so status and runner agree

        # `_path` lets the runner's rule recognise a lock this very process holds (the basic launcher).
        return {**info, "live": holder_is_live({**lock, "_path": str(path)}), "verified": True}
    if job and scheduler_states is not None and job in scheduler_states:
        state = scheduler_states[job]
        return {**info, "live": state in JOB_RUNNING, "verified": True, "slurm_state": state}
    return {**info, "live": True, "verified": False}


def _recent_epoch_time(rows: list[dict[str, Any]]) -> float | None:
    """Mean duration of the last (up to 5) epochs trained at the current batch size."""
    durations: list[tuple[float | None, float]] = []
    previous = 0.0
    for row in rows:
        wall = row.get("wall_time_s")
        if wall is None:
            continue
        if wall > previous:
            durations.append((row.get("batch_size"), wall - previous))
        previous = wall
    if not durations:
        return None
    current = durations[-1][0]
    same = [seconds for batch, seconds in durations if batch == current][-5:]
    return sum(same) / len(same)


def _last_line(text: Any) -> str | None:
    lines = [line.strip() for line in str(text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else None


def inspect_cell(
    row: CellStatus,
    outcome: dict[str, Any] | None,
    scheduler_states: dict[str, str] | None,
    now: float,
) -> CellStatus:
    """Fill `row` from the cell's files, its outcome record and its SLURM job's state (rules in the docstring)."""
    run_dir = Path(row.run_dir)
    result = read_result(run_dir)
    metrics = read_metrics(run_dir)
    row.epochs = total_epochs(run_dir, result)
    row.lock = lock_holder(run_dir, scheduler_states)

    result_time = _mtime(run_dir / RESULT_FILE)
    progress_times = [t for t in (_mtime(run_dir / CHECKPOINT_FILE), _mtime(run_dir / METRICS_FILE)) if t]
    # A lock, even a stale one, means a run began here.
    started = bool(progress_times) or (run_dir / CONFIG_FILE).exists() or row.lock is not None
    result_status = result.get("status") if result else None
    # A finished record is what a relaunch goes by (it skips the cell), however old the other files;
    # a failed one counts only if nothing was written after it.
    result_current = result_status in FINISHED_STATUSES or (
        result_status in RECORD_STATUSES and result_time is not None and all(result_time >= t for t in progress_times)
    )
    outcome_status = (outcome or {}).get("status")
    job_state = row.scheduler_state

    if row.lock and row.lock["live"]:
        row.state = "busy" if (row.action == "skip-running" or outcome_status == "busy") else "running"
    elif job_state in JOB_RUNNING and not result_current:
        row.state = "running"
    elif job_state in JOB_WAITING or (row.lock or {}).get("slurm_state") in JOB_WAITING:
        row.state = "pending"  # queued, or requeued after a preemption (the holder will resume it)
    elif result_current:
        row.state = str(result_status)
        row.error = _last_line(result.get("error")) if result_status != "completed" else None
    elif outcome_status in ("failed", "diverged"):
        row.state = str(outcome_status)
        row.error = _last_line(outcome.get("error"))
    elif started or outcome_status == "unfinished":
        row.state = "unfinished"
    else:
        row.state = "pending"

    _fill_progress(row, metrics, result if result_current else None, now)
    run_log = run_dir / RUN_LOG
    row.log = str(run_log) if run_log.exists() else (outcome or {}).get("log")
    return row


def _fill_progress(row: CellStatus, metrics: list[dict[str, Any]], result: dict[str, Any] | None, now: float) -> None:
    """Epoch k, last metrics, wall time and the cell's own ETA (only for cells someone works on or will)."""
    if metrics:
        last = metrics[-1]
        row.epoch = _int(last.get("epoch")) or len(metrics)
        row.train_loss, row.train_error = last.get("train_loss"), last.get("train_error")
        tested = [r for r in metrics if r.get("test_error") is not None]
        if tested:
            row.test_loss, row.test_error = tested[-1].get("test_loss"), tested[-1].get("test_error")
        row.wall_time_s = last.get("wall_time_s")
    elif row.state in ("unfinished", "running", "busy"):
        row.epoch = 0
    if result is not None:
        for key in ("train_loss", "train_error", "test_loss", "test_error"):
            if result.get(key) is not None:
                setattr(row, key, _float(result.get(key)))
        row.wall_time_s = _float(result.get("wall_time_s")) or row.wall_time_s
        if row.epoch is None and row.state == "completed":
            row.epoch = row.epochs
    per_epoch = _recent_epoch_time(metrics)
    if row.state == "completed":
        row._full_run_s = row.wall_time_s
        row.eta_s = 0.0
        return
    if per_epoch is not None and row.epochs:
        row._full_run_s = per_epoch * row.epochs
    if row.state not in ACTIVE_STATES:
        return  # failed, diverged, or unfinished with nobody on it: it will not end by itself
    if per_epoch is not None and row.epochs and row.epoch is not None:
        left = per_epoch * max(row.epochs - row.epoch, 0)
        if row.state in ("running", "busy"):
            since = _since_progress(row, now)
            row.wall_time_s = (row.wall_time_s or 0.0) + since
            left = max(left - since, 0.0)
        row.eta_s = left


def _since_progress(row: CellStatus, now: float) -> float:
    """Seconds the current process has trained since the cell's last epoch was written.

    metrics.csv's wall times count training only, across resumes; the time since
    its last write counts from when the current holder of the lock started
    when that is later, so the idle gap before a resume is not counted.
    """
    marks = [_mtime(Path(row.run_dir) / METRICS_FILE), _float((row.lock or {}).get("started"))]
    latest = max((m for m in marks if m is not None), default=now)
    return max(now - latest, 0.0)


# ---------------------------------------------------------------- the sweep


def _similarity_keys(cell: str) -> list[str]:
    """Keys from most to least similar: the cell without its seed, optimizer-schedule, dataset-model, any."""
    parts = [p for p in Path(cell).parts if not p.startswith("seed=")]
    keys = ["/".join(parts)]
    if len(parts) >= 2:
        keys.append("os:" + parts[1])
    if parts:
        keys.append("dm:" + parts[0])
    keys.append("*")
    return keys


def _estimate_untimed(cells: list[CellStatus]) -> None:
    """Give active cells without timed epochs the mean full-run time of their most similar timed cells."""
    pool: dict[str, list[float]] = {}
    for cell in cells:
        if cell._full_run_s:
            for key in _similarity_keys(cell.cell):
                pool.setdefault(key, []).append(cell._full_run_s)
    for cell in cells:
        if cell.eta_s is not None or cell.state not in ACTIVE_STATES:
            continue
        for key in _similarity_keys(cell.cell):
            if key in pool:
                full = sum(pool[key]) / len(pool[key])
                done = (cell.epoch or 0) / cell.epochs if cell.epochs else 0.0
                cell.eta_s = full * max(1.0 - done, 0.0)
                cell.eta_estimated = True
                break


def sweep_eta(cells: list[CellStatus]) -> tuple[float | None, int]:
    """(seconds until running and pending cells are done, workers assumed); None when a cell has no estimate.

    As many workers as cells run now (at least one). Pending cells take the
    first free worker in launch order, so a pending cell's ETA becomes the time
    it will be done (its wait plus its own run), marked as an estimate.
    """
    active = [c for c in cells if c.state in ("running", "busy")]
    queued = sorted((c for c in cells if c.state == "pending"), key=lambda c: (c.job_num is None, c.job_num or 0))
    workers = max(len(active), 1)
    if not active and not queued:
        return 0.0, workers
    if any(c.eta_s is None for c in active + queued):
        return None, workers
    free_at = sorted(c.eta_s or 0.0 for c in active) or [0.0]
    free_at += [0.0] * (workers - len(free_at))
    for cell in queued:
        start = free_at.pop(0)
        cell.eta_s = start + (cell.eta_s or 0.0)
        cell.eta_estimated = cell.eta_estimated or start > 0
        free_at = sorted([*free_at, cell.eta_s])
    return max(free_at), workers


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def collect(
    sweep_dir: str | os.PathLike, scheduler: Scheduler = query_scheduler, now: float | None = None
) -> dict[str, Any]:
    """The status of every cell of the sweep as plain data (what `--json` prints)."""
    root = Path(sweep_dir)
    if not root.exists():
        raise StatusError(f"{sweep_dir} does not exist; give a sweep folder such as results/<experiment_name>")
    if not root.is_dir():
        raise StatusError(f"{sweep_dir} is not a folder; give a sweep folder such as results/<experiment_name>")
    root = root.resolve()
    now = time.time() if now is None else now
    plan = load_plan(root)

    rows: dict[str, CellStatus] = {}
    slurm_ids: set[str] = set()
    by_job_num: dict[int, dict[str, Any]] = {}
    by_run_dir: dict[str, dict[str, Any]] = {}
    if plan is not None:
        launched = [c for c in plan["cells"] if isinstance(c, dict) and c.get("job_num") is not None]
        array = submitit_array_jobs(root, _float(plan.get("created")) or 0.0, len(launched))
        # `hydra/launcher` choice: slurm (conf/hydra/launcher), submitit_slurm, or a site's own
        # name; job arrays are made by SLURM only.
        slurm = "slurm" in str(plan.get("launcher") or "").lower() or any("_" in job for job in array.values())
        for record in read_outcomes(root, str(plan.get("sweep_id") or "")) if plan.get("sweep_id") else []:
            if _int(record.get("job_num")) is not None:
                by_job_num[int(record["job_num"])] = record
        moved = Path(str(plan.get("sweep_dir") or root)).resolve() != root
        for entry in plan["cells"]:
            if not isinstance(entry, dict):
                continue
            run_dir = Path(str(entry.get("run_dir") or root / str(entry.get("cell") or "")))
            if entry.get("cell") and moved:
                run_dir = root / str(
                    entry["cell"]
                )  # moved or copied since the launch: this copy's cells, not the original's
            key = str(run_dir.resolve())
            job_num = _int(entry.get("job_num"))
            existing = rows.get(key)
            if existing is not None and (existing.job_num is not None or job_num is None):
                continue  # a duplicate spelling of a cell: keep the entry that was launched
            row = CellStatus(
                cell=str(entry.get("cell") or _relative(run_dir, root)),
                run_dir=key,
                in_plan=True,
                action=entry.get("action"),
                job_num=job_num,
            )
            if job_num is not None and slurm:
                outcome_id = (by_job_num.get(job_num) or {}).get("job_id")
                row.job_id = str(outcome_id) if outcome_id else array.get(job_num)
                if row.job_id:
                    slurm_ids.add(row.job_id)
            rows[key] = row
    else:
        for record in read_outcomes(root, None):  # oldest launch first: the latest outcome wins
            if record.get("run_dir"):
                by_run_dir[str(Path(str(record["run_dir"])).resolve())] = record
    for folder in discover_cells(root):
        key = str(folder.resolve())
        if key not in rows:
            rows[key] = CellStatus(cell=_relative(folder, root), run_dir=key)
    if not rows:
        raise StatusError(
            f"{root} is not a sweep folder: no {PLAN_FILE} and no cell ({', '.join(CELL_MARKERS)}) under it"
        )

    outcomes = {}
    for key, row in rows.items():
        outcome = outcomes[key] = by_job_num.get(row.job_num) if row.job_num is not None else by_run_dir.get(key)
        job_id = str((outcome or {}).get("job_id") or "")
        if plan is None and "_" in job_id:  # array task ids only come from SLURM (local job ids are pids)
            row.job_id = job_id
            slurm_ids.add(job_id)
        lock = _read_json(Path(key) / LOCK_FILE)
        if isinstance(lock, dict) and lock.get("slurm_job_id"):
            slurm_ids.add(str(lock["slurm_job_id"]))
            if not row.job_id:  # the job of whoever holds the cell
                row.job_id = str(lock["slurm_job_id"])
    scheduler_states = scheduler(sorted(slurm_ids)) if slurm_ids else None

    cells = []
    for key, row in rows.items():
        if scheduler_states is not None and row.job_id in slurm_ids:
            row.scheduler_state = scheduler_states.get(row.job_id)
        cells.append(inspect_cell(row, outcomes[key], scheduler_states, now))
    _estimate_untimed(cells)
    eta, workers = sweep_eta(cells)
    counts = {state: sum(c.state == state for c in cells) for state in STATES}
    return {
        "schema_version": 1,
        "sweep_dir": str(root),
        "generated_at": now,
        "plan": None if plan is None else {key: plan.get(key) for key in ("sweep_id", "launcher", "created")},
        "scheduler": scheduler_states is not None,
        "cells": [{k: v for k, v in asdict(c).items() if not k.startswith("_")} for c in cells],
        "counts": counts,
        "eta_s": eta,
        "eta_workers": workers,
    }


# ---------------------------------------------------------------- text


def format_duration(seconds: float | None) -> str:
    """45s, 9m05s, 3h07m, 2d05h: at most six characters."""
    if seconds is None:
        return "-"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}" if abs(value) >= 1000 else f"{value:.3f}"


def _shorten(text: str, width: int) -> str:
    """Cut the middle of a too-long cell path, keeping its first and last parts (model, seed)."""
    if len(text) <= width:
        return text
    head = (width - 3) // 2
    return text[:head] + "..." + text[len(text) - (width - 3 - head) :]


def short_names(names: Sequence[str]) -> tuple[list[str], str | None]:
    """The cell names without the path parts every cell shares, and the pattern of those parts.

    `digits-resnet18/sgd-constant/seed=0` and `digits-resnet18/sam-batch/seed=0`
    become `sgd-constant` and `sam-batch`, shared as `digits-resnet18/*/seed=0`:
    a narrow table keeps the part that tells rows apart. Names of equal depth
    lose every part that is the same in all of them; otherwise only the shared
    leading and trailing parts go. No name is left empty; one cell keeps its name.
    """
    split = [Path(name).parts for name in names]
    if len(split) < 2 or any(not parts for parts in split):
        return list(names), None
    depth = len(split[0])
    if all(len(parts) == depth for parts in split):
        shared = [all(parts[i] == split[0][i] for parts in split) for i in range(depth)]
        if all(shared) or not any(shared):
            return list(names), None
    else:
        shortest = min(len(parts) for parts in split)
        lead = 0
        while lead < shortest - 1 and all(parts[lead] == split[0][lead] for parts in split):
            lead += 1
        tail = 0
        while tail < shortest - lead - 1 and all(parts[-1 - tail] == split[0][-1 - tail] for parts in split):
            tail += 1
        if not lead and not tail:
            return list(names), None
        kept = ["/".join(parts[lead : len(parts) - tail]) for parts in split]  # the varying middle, of any depth
        pattern = "/".join([*split[0][:lead], "*", *(split[0][len(split[0]) - tail :] if tail else [])])
        return kept, pattern
    kept = ["/".join(p for p, same in zip(parts, shared) if not same) for parts in split]
    pattern_parts: list[str] = []
    for part, same in zip(split[0], shared):
        if same:
            pattern_parts.append(part)
        elif not pattern_parts or pattern_parts[-1] != "*":
            pattern_parts.append("*")
    return kept, "/".join(pattern_parts)


def format_table(status: dict[str, Any], width: int = 100) -> str:
    """The status as one aligned table, counts and the ETA, at most `width` columns wide (cell paths cut)."""
    cells = status["cells"]
    show_jobs = any(c["job_id"] for c in cells)
    columns: list[tuple[str, str, bool]] = [  # key, header, right-aligned
        ("cell", "cell", False),
        ("state", "state", False),
        ("epoch", "epoch", True),
        ("train", "train err", True),
        ("test", "test err", True),
        ("train_loss", "train loss", True),
        ("test_loss", "test loss", True),
        ("wall", "wall", True),
        ("eta", "eta", True),
    ]
    if show_jobs:
        columns.append(("job", "job", False))
    if status["scheduler"]:
        columns.append(("slurm", "slurm", False))
    names, shared = short_names([c["cell"] for c in cells])
    table = []
    for c, name in zip(cells, names):
        epoch = "-" if c["epoch"] is None and c["epochs"] is None else f"{c['epoch'] or 0}/{c['epochs'] or '?'}"
        eta = format_duration(c["eta_s"]) if c["state"] in ACTIVE_STATES else "-"
        if c["eta_estimated"] and c["eta_s"] is not None:
            eta = "~" + eta
        table.append(
            {
                "cell": name,
                "state": c["state"],
                "epoch": epoch,
                "train": _pct(c["train_error"]),
                "test": _pct(c["test_error"]),
                "train_loss": _loss(c["train_loss"]),
                "test_loss": _loss(c["test_loss"]),
                "wall": format_duration(c["wall_time_s"]),
                "eta": eta,
                "job": c["job_id"] or "-",
                "slurm": JOB_CODES.get(c["scheduler_state"] or "", c["scheduler_state"] or "-"),
            }
        )

    def widths(cols: list[tuple[str, str, bool]]) -> dict[str, int]:
        return {key: max([len(head)] + [len(r[key]) for r in table]) for key, head, _ in cols}

    gap = 2
    # Losses, then the train error, go when the table is too wide.
    for optional in ("test_loss", "train_loss", "train"):
        w = widths(columns)
        if sum(w.values()) + gap * (len(columns) - 1) <= width:
            break
        columns = [col for col in columns if col[0] != optional]
    w = widths(columns)
    others = sum(v for k, v in w.items() if k != "cell") + gap * (len(columns) - 1)
    w["cell"] = max(min(w["cell"], width - others), 12)

    def line(values: dict[str, str]) -> str:
        out = []
        for key, _, right in columns:
            text = _shorten(values[key], w[key]) if key == "cell" else values[key]
            out.append(text.rjust(w[key]) if right else text.ljust(w[key]))
        return (" " * gap).join(out).rstrip()

    plan = status["plan"]
    if plan:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(plan["created"])) if plan.get("created") else "?"
        head = f"sweep {status['sweep_dir']}\n  launch {plan.get('sweep_id')} ({plan.get('launcher')}, {when})"
    else:
        head = f"sweep {status['sweep_dir']}\n  no {PLAN_FILE}: the cells found on disk"
    if shared:
        head += f"\n  cells: {shared}"
    lines = [
        *(_shorten(text, width) for text in head.splitlines()),
        "",
        line({key: header for key, header, _ in columns}),
    ]
    lines += [line(r) for r in table]

    counts = status["counts"]
    lines.append("")
    tally = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    lines.append(f"{len(cells)} cell{'s' if len(cells) != 1 else ''}: {tally}")
    active = counts["running"] + counts["busy"] + counts["pending"]
    if not active:
        lines.append("ETA: nothing is running or queued")
    elif status["eta_s"] is None:
        lines.append("ETA: unknown until a cell has finished an epoch")
    else:
        done_at = time.strftime("%H:%M", time.localtime(status["generated_at"] + status["eta_s"]))
        lines.append(
            f"ETA: {format_duration(status['eta_s'])} (about {done_at}; "
            f"{active} cell{'s' if active > 1 else ''} left, {status['eta_workers']} at a time)"
        )
    if counts["unfinished"]:
        lines.append(f"{counts['unfinished']} unfinished: nobody works on them; relaunch the sweep to resume them")
    for c, name in zip(cells, names):
        if c["state"] in ("failed", "diverged") and c["error"]:
            lines.append(_shorten(f"{c['state']} {name}: {c['error']}", width))
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"--watch {text!r}: give a refresh interval in seconds > 0, e.g. --watch 10")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the sweep's status once, as JSON, or redrawn every few seconds (`--watch`)."""
    parser = _Parser(prog="runner.sweep.status", description="Status of every cell of a sweep, from its files.")
    parser.add_argument("sweep_dir", help="the sweep folder (results/<experiment_name>) or a single run's folder")
    parser.add_argument(
        "--watch",
        nargs="?",
        const=10.0,
        type=_positive_seconds,
        metavar="SECONDS",
        help="redraw every SECONDS (default 10) until Ctrl-C",
    )
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    args = parser.parse_args(argv)
    if args.json and args.watch:
        parser.error("--json prints once; use it without --watch")
    width = shutil.get_terminal_size((100, 24)).columns
    try:
        status = collect(args.sweep_dir)
    except StatusError as error:
        print(f"runner.sweep.status: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(status, indent=2, allow_nan=False, default=str))
        return 0
    if not args.watch:
        print(format_table(status, width))
        return 0
    try:
        while True:
            text = format_table(status, shutil.get_terminal_size((100, 24)).columns)
            sys.stdout.write("\033[H\033[2J")
            print(f"every {args.watch:g} s, Ctrl-C to stop; {time.strftime('%H:%M:%S')}")
            print(text, flush=True)
            time.sleep(args.watch)
            try:
                status = collect(args.sweep_dir)
            except StatusError as error:  # e.g. the folder was moved away: say so, keep the last table
                print(f"runner.sweep.status: {error}", file=sys.stderr, flush=True)
                time.sleep(args.watch)
    except KeyboardInterrupt:
        print()
        return 0


if __name__ == "__main__":
    sys.exit(main())
