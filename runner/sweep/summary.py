"""What happened to every cell of a sweep, said once at its end.

A multirun's cells run wherever the launcher puts them (this process, local
subprocesses, SLURM nodes), so the summary is assembled from files in
`<sweep dir>/.outcomes/<sweep id>/<job num>.json`:

1. `SweepSummary.on_multirun_start` (the launching process) picks an id for this
   launch. The callback object travels with the launcher to every job (submitit
   pickles it, requeues included), so each job knows the id.
2. `SweepSummary.on_job_start` (in the job, main rank only) marks the cell
   `unfinished`, naming its log; `record_outcome(outcome)`, called after
   `runner.training.run(cfg)`, replaces that with the runner's outcome. A task that
   raised instead is recorded as `failed` by `on_job_end`.
3. `SweepSummary.on_multirun_end` (the launching process) reads them, prints the
   counts (completed, skipped, failed, diverged; each failure with its log) and
   writes `<sweep dir>/sweep_summary.json` atomically.

Hydra skips `on_multirun_end` when the sweep raises (a job that raised, or one
that SLURM cancelled or killed); the summary is then written at interpreter
exit, marked unfinished, after Hydra has printed the error.

Enable with, in conf/config.yaml:

    hydra:
      callbacks:
        sweep_summary:
          _target_: runner.sweep.summary.SweepSummary
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from runner.folder import OUTCOMES_DIR, SUMMARY_FILE
from runner.io import atomic_write_json, read_json

# Set in the job process by `SweepSummary.on_job_start` for the job now running:
# where `record_outcome` writes, and whether it already did.
_current_job: dict[str, Any] | None = None


def record_outcome(outcome: dict[str, Any]) -> None:
    """Drop this cell's outcome (the runner's dict) where the end-of-sweep summary finds it.

    Called in the job process after `runner.training.run(cfg)`. A no-op outside a
    multirun (or without the `SweepSummary` callback) and on ranks other than 0.
    Atomic, so the summary never reads half a record even if the job is killed
    right after; keyed by job number, so a requeued job overwrites its own.
    """
    job = _current_job
    if job is None or _rank() != 0:
        return
    _write_outcome(job, {**job["cell"], **outcome})
    job["recorded"] = True


def _rank() -> int:
    """This process's rank in its cell (runner.training.distributed), asked only in a job, which trains anyway."""
    from runner.training.distributed import env_rank

    return env_rank()


def _write_outcome(job: dict[str, Any], outcome: dict[str, Any]) -> None:
    path = Path(job["sweep_dir"]) / OUTCOMES_DIR / job["sweep_id"] / f"{job['job_num']}.json"
    atomic_write_json(path, {**outcome, "job_num": job["job_num"], "recorded_at": time.time()})


def _cell_of(config: DictConfig) -> dict[str, Any]:
    """What identifies a job in the summary: its overrides, job id, folder and a log to read."""
    hydra_cfg = config.hydra
    output_dir = str(hydra_cfg.runtime.output_dir)
    overrides = [str(o) for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)]
    # Until the runner reports its run.log: submitit's stderr of the job (where
    # a crash or a kill shows), else Hydra's own job log.
    log = str(Path(output_dir) / f"{hydra_cfg.job.name}.log")
    if "SUBMITIT_EXECUTOR" in os.environ:
        try:
            import submitit

            log = str(submitit.JobEnvironment().paths.stderr)
        except Exception:
            pass
    return {"overrides": overrides, "job_id": str(hydra_cfg.job.get("id") or ""), "run_dir": output_dir, "log": log}


def outcome_from_job(job_return: JobReturn) -> dict[str, Any]:
    """The outcome of a Hydra job that did not record one: its task's dict, or `failed` with the exception."""
    if job_return.status == JobStatus.COMPLETED:
        value = job_return._return_value
        if isinstance(value, dict) and "status" in value:
            return value
        return {"status": "unknown", "error": f"the task returned {type(value).__name__}, not the runner's outcome"}
    error = job_return._return_value
    return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def summarize(
    sweep_dir: str | os.PathLike,
    sweep_id: str,
    finished: bool = True,
    not_launched: list[dict[str, Any]] | None = None,
    ended: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Counts, failures and where the results are, from the outcomes recorded by one launch.

    `ended` holds what the launcher saw of jobs that ended without returning
    (cancelled, preempted, killed): it names the job and its state for a cell
    whose own record says no more than `unfinished`, or that has none (a job
    cancelled before it started).
    """
    sweep_dir = Path(sweep_dir).resolve()
    recorded: dict[Any, dict[str, Any]] = {}
    for path in sorted((sweep_dir / OUTCOMES_DIR / sweep_id).glob("*.json")):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue  # a record from a job that died mid-write is simply absent
        recorded[record.get("job_num", path.stem)] = record
    for job in ended or []:
        mine = recorded.get(job["job_num"])
        if mine is None or mine.get("status") == "unfinished":
            recorded[job["job_num"]] = {**(mine or {}), **job}
    outcomes = list(not_launched or []) + list(recorded.values())
    outcomes.sort(key=lambda o: (o.get("job_num") is None, o.get("job_num") or 0, str(o.get("run_dir"))))
    counts: dict[str, int] = {"completed": 0, "skipped": 0, "failed": 0, "diverged": 0, "unfinished": 0}
    for outcome in outcomes:
        status = str(outcome.get("status", "unknown"))
        counts[status] = counts.get(status, 0) + 1
    failures = [
        {key: o.get(key) for key in ("job_num", "status", "overrides", "run_dir", "log", "error")}
        for o in outcomes
        if o.get("status") not in ("completed", "skipped")
    ]
    return {
        "sweep_dir": str(sweep_dir),
        "sweep_id": sweep_id,
        "finished": finished,
        "cells_recorded": len(outcomes),
        "counts": counts,
        "failures": failures,
        "runs": [
            {key: o.get(key) for key in ("job_num", "status", "overrides", "run_dir", "job_id")} for o in outcomes
        ],
        "tables": f"{analysis_command()} {sweep_dir}",
    }


def analysis_command() -> str:
    """The analysis command that works where the sweep was launched: `sam-analysis` after `sam-train`
    (an installed package, perhaps outside any venv on PATH), `python -m analysis` in a checkout."""
    return "sam-analysis" if Path(sys.argv[0]).name.startswith("sam-") else "python -m analysis"


def _cell_name(run_dir: str | None, sweep_dir: str) -> str | None:
    """A cell's folder relative to the sweep dir (`synthetic-resnet18/sam-batch/seed=0`): its name."""
    if not run_dir:
        return None
    try:
        return str(Path(run_dir).resolve().relative_to(sweep_dir))
    except ValueError:
        return run_dir


def format_summary(summary: dict[str, Any], written: bool = True) -> str:
    """The summary as the few lines printed at the end of a sweep."""
    counts = summary["counts"]
    head = "Sweep summary" if summary["finished"] else "Sweep did NOT finish (see the error above); recorded so far"
    lines = [
        f"{head}: {summary['cells_recorded']} cells",
        "  " + ", ".join(f"{name}: {count}" for name, count in counts.items()),
    ]
    for failure in summary["failures"]:  # one line each: what ended how, and the log that says why
        cell = _cell_name(failure.get("run_dir"), summary["sweep_dir"]) or " ".join(failure.get("overrides") or [])
        error = str(failure.get("error") or "").strip().splitlines()
        reason = error[-1] if error else "no error message"
        lines.append(f"  {str(failure['status']).upper()} {cell}: {reason} (log: {failure.get('log')})")
    lines.append(f"  results: {summary['sweep_dir']}")
    if written:
        lines.append(f"  summary: {Path(summary['sweep_dir']) / SUMMARY_FILE}")
    lines.append(f"  tables:  {summary['tables']}")
    return "\n".join(lines)


# Statuses after which a sweep's cell needs no more work; anything else makes the command exit 1.
DONE_STATUSES = ("completed", "skipped")
# The summary of the last sweep this process ran (launch.py turns it into the exit status).
last_summary: dict[str, Any] | None = None


def exit_status(summary: dict[str, Any] | None) -> int:
    """0 when every cell completed or was already done, 1 when any failed, diverged or did not finish."""
    if summary is None:
        return 0
    counts = summary.get("counts", {})
    return (
        0
        if summary.get("finished", True)
        and all(count == 0 for status, count in counts.items() if status not in DONE_STATUSES)
        else 1
    )


class SweepSummary(Callback):
    """Hydra callback: records each cell's outcome in its job and summarizes them at the end of the sweep."""

    def __init__(self) -> None:
        self.sweep_id: str | None = None
        self._sweep_dir: str | None = None
        self._written = False
        self._not_launched: list[dict[str, Any]] = []
        self._ended: list[dict[str, Any]] = []
        self._launcher_error: str | None = None

    def note_ended_jobs(self, outcomes: list[dict[str, Any]]) -> None:
        """Jobs the launcher saw end without returning (runner.sweep.launchers), as summary records."""
        self._ended = list(outcomes)

    def note_launcher_error(self, line: str) -> None:
        """The launcher raised and stopped waiting: the sweep did not finish (the line was printed)."""
        self._launcher_error = line

    def note_skipped(self, outcomes: list[dict[str, Any]]) -> None:
        """Cells the sweeper did not launch (finished, duplicates, running elsewhere), for the counts.

        Kept in memory, not in the outcomes folder: a relaunch of a finished
        sweep on a read-only results tree must still work.
        """
        self._not_launched = list(outcomes)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Unique per launch: a relaunch into the same sweep dir starts a fresh tally.
        self.sweep_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]
        self._sweep_dir = str(config.hydra.sweep.dir)
        self._written = False
        self._not_launched = []
        self._ended = []
        self._launcher_error = None
        atexit.register(self._write_if_unfinished)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        global _current_job
        # Only multirun jobs carry a sweep id; of a DDP cell's ranks, rank 0 speaks.
        if self.sweep_id is None or _rank() != 0:
            return
        _current_job = {
            "sweep_dir": str(config.hydra.sweep.dir),
            "sweep_id": self.sweep_id,
            "job_num": int(config.hydra.job.num),
            "cell": _cell_of(config),
            "recorded": False,
        }
        # Marks the cell as started: if the job dies (cancelled, killed, out of
        # memory) this is all the summary will know, and it names the log.
        _write_outcome(
            _current_job,
            {
                **_current_job["cell"],
                "status": "unfinished",
                "error": "the job ended before the run returned (cancelled, killed, out of memory or exited)",
            },
        )

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        global _current_job
        job, _current_job = _current_job, None
        if job is None or job["recorded"]:
            return
        # The task raised, or launch.py did not call record_outcome.
        _write_outcome(job, {**job["cell"], **outcome_from_job(job_return)})

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._write(finished=self._launcher_error is None)

    def _write(self, finished: bool) -> None:
        global last_summary
        if self._written or self.sweep_id is None or self._sweep_dir is None:
            return
        summary = summarize(
            self._sweep_dir, self.sweep_id, finished=finished, not_launched=self._not_launched, ended=self._ended
        )
        launched = summary["cells_recorded"] - len(self._not_launched)
        last_summary = summary  # an unfinished sweep exits 1 even when no cell could record anything (a full disk)
        if not finished and not summary["cells_recorded"]:
            return  # failed before any cell ran (e.g. a bad override): the error says it all
        self._written = True
        if launched:  # a relaunch that trained nothing keeps the summary of the sweep that did
            try:
                atomic_write_json(Path(self._sweep_dir) / SUMMARY_FILE, summary)
            except OSError as error:
                print(f"warning: could not write {SUMMARY_FILE}: {error}", file=sys.stderr)
        print(format_summary(summary, written=bool(launched)), flush=True)

    def _write_if_unfinished(self) -> None:
        self._write(finished=False)
