"""The cell folder's contract: every name a cell folder and a sweep folder hold, and the scheduler's job states.

A cell (one grid point, one seed) owns the folder
`<results_root>/<experiment>/<dataset>-<model>/<optimizer>-<schedule>/[<variant>/]seed=<k>/`.
The runner writes it, `python -m runner.sweep.status` and the live view read it while it
runs, the sweeper and the preflight decide from it whether a cell trains
(runner/sweep/verdict.py), `python -m sharpness` adds to its record, and `python -m analysis`
reads the records (analysis keeps its own copy of the two names it reads, since it imports no
other project package). Every module takes the names from here, so a file is renamed in one
place. docs/architecture.md ("Run folders and records") says what each file holds.

Also here: the names a multirun writes beside its cells, the statuses a record may have, the
name a damaged file is moved to, and the job states SLURM (squeue, sacct) and submitit report,
sorted by what they mean for a cell. No torch, no Hydra: everything may import this.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# -- what a cell folder holds ------------------------------------------------------------------------------

RESULT_FILE = "result.json"  # the record, written last (atomic); its presence and status say the cell is done
METRICS_FILE = "metrics.csv"  # one row per epoch, rewritten atomically each epoch
CONFIG_FILE = "config.yaml"  # the composed, resolved config, written at start
CHECKPOINT_FILE = "checkpoint.pt"  # each epoch and at a preemption signal (atomic, weights-only)
MODEL_FILE = "model.pt"  # the final state_dict, written before the record
RUN_LOG = "run.log"  # the run's log, appended across resumes
LAUNCH_LOG = "launch.log"  # Hydra's job log (Hydra names it after the task's module, runner/sweep/launch.py)
LOCK_FILE = ".lock"  # while a process works in the cell (runner/sweep/lock.py)
LOCK_CLAIM_PREFIX = ".lock-claim-"  # a claim being linked to .lock (lives for milliseconds)
LOCK_TAKEOVER_PREFIX = ".lock-takeover-"  # the marker of a stale lock being taken over
HYDRA_DIR = ".hydra"  # Hydra's config.yaml, hydra.yaml and overrides.yaml of the job
TRACKERS_FILE = "trackers.json"  # the tracker run ids (logger=...), so a requeued cell continues its runs
TENSORBOARD_DIR = "tensorboard"  # logger=tensorboard's event files
WANDB_DIR = "wandb"  # logger=wandb's offline files (W&B names the folder itself)
PROFILE_DIR = "profile"  # debug=profile: trace.json and ops.txt

# The files the runner and Hydra write in a cell, which must be plain files or absent (runner/sweep/cell_state.py).
CELL_FILES = (
    RESULT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    CHECKPOINT_FILE,
    MODEL_FILE,
    RUN_LOG,
    LAUNCH_LOG,
    LOCK_FILE,
    TRACKERS_FILE,
)
# Any of these means a run began in the folder (runner/sweep/status.py finds cells by them).
CELL_MARKERS = (RESULT_FILE, METRICS_FILE, CHECKPOINT_FILE, CONFIG_FILE)

# -- what a sweep folder holds beside its cells -------------------------------------------------------------

PLAN_FILE = "sweep_plan.json"  # every cell of the last launch and what the sweeper did with it
SUMMARY_FILE = "sweep_summary.json"  # the counts and failures of the last launch that trained
OUTCOMES_DIR = ".outcomes"  # <sweep id>/<job num>.json: each job's outcome, for the summary
SUBMITIT_DIR = ".submitit"  # submitit's job folders (logs, pickled results)
MULTIRUN_FILE = "multirun.yaml"  # Hydra's record of the multirun's config
SEARCH_FILE = "search.json"  # an Optuna search's trials and the best one
SWEEP_FILES = (MULTIRUN_FILE, PLAN_FILE, SUMMARY_FILE, OUTCOMES_DIR, SUBMITIT_DIR)

# -- a record's status ----------------------------------------------------------------------------------------

RECORD_STATUSES = ("completed", "failed", "diverged")
# After these a rerun of the cell has nothing left to do (a failed cell trains again, from its checkpoint).
FINISHED_STATUSES = ("completed", "diverged")


def read_result(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The cell's record, or None when there is none or it cannot be read (runner/sweep/cell_state.py says why)."""
    try:
        with open(Path(run_dir) / RESULT_FILE, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError, RecursionError):  # RecursionError: a deeply nested (hostile) file
        return None
    return record if isinstance(record, dict) else None


def is_finished(record: dict[str, Any] | None) -> bool:
    """Whether a record says the cell needs no more training (`force=true` aside)."""
    return bool(record) and record.get("status") in FINISHED_STATUSES


# -- a damaged file, set aside --------------------------------------------------------------------------------

SET_ASIDE_MARK = ".corrupt-"  # <name>.corrupt-<UTC time>[-<n>]: a damaged file kept for inspection
SET_ASIDE_STAMP = "%Y%m%dT%H%M%SZ"


def set_aside_name(name: str, stamp: str, counter: int = 0) -> str:
    """`result.json` -> `result.json.corrupt-20250101T120000Z` (`-<counter>` for a second one in that second)."""
    return f"{name}{SET_ASIDE_MARK}{stamp}" + (f"-{counter}" if counter else "")


# -- the scheduler's job states --------------------------------------------------------------------------------
# Base states as squeue -o %T, sacct -o State and submitit's `job.state` report them (see `base_state`).

# A job that computes now (or is about to: its node powers up, its files stage out).
JOB_RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "POWER_UP_NODE", "SIGNALING", "STAGE_OUT", "RESIZING"})
# A job that will compute (again): queued, requeued after a preemption, held, suspended or stopped.
JOB_WAITING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "SUSPENDED", "STOPPED", "RESV_DEL_HOLD"})
# Either: a lock held by such a job is live, and the cell is someone's.
JOB_ALIVE = JOB_RUNNING | JOB_WAITING
# A job that ended before its cell did, and how: the scheduler ended it (CANCELLED is said apart, as a person's
# choice). Any other end of a job whose run did not return means its process was killed or exited.
JOB_ENDED_EARLY = ("FAILED", "PREEMPTED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE")
JOB_CANCELLED = "CANCELLED"
# squeue's compact codes, so a table of states stays narrow.
JOB_CODES = {
    "PENDING": "PD",
    "RUNNING": "R",
    "COMPLETING": "CG",
    "COMPLETED": "CD",
    "CONFIGURING": "CF",
    "CANCELLED": "CA",
    "FAILED": "F",
    "TIMEOUT": "TO",
    "PREEMPTED": "PR",
    "NODE_FAIL": "NF",
    "OUT_OF_MEMORY": "OOM",
    "SUSPENDED": "S",
    "STOPPED": "ST",
    "REQUEUED": "RQ",
    "REQUEUE_HOLD": "RH",
    "REQUEUE_FED": "RF",
    "RESV_DEL_HOLD": "RD",
    "BOOT_FAIL": "BF",
    "DEADLINE": "DL",
    "SIGNALING": "SI",
    "STAGE_OUT": "SO",
    "RESIZING": "RS",
    "POWER_UP_NODE": "PU",
}


def base_state(text: Any) -> str:
    """A reported state as its base name: `CANCELLED by 1000` -> CANCELLED, `COMPLETED+` -> COMPLETED."""
    words = str(text or "").split()
    return words[0].rstrip("+").upper() if words else "UNKNOWN"
