"""A Hydra sweeper that plans the whole sweep before launching any job of it.

For every cell of a multirun it composes the config, validates it, and works
out the cell's folder (grid axes + variant, runner.sweep.identity). Then:

- if any cell cannot work, nothing is launched: one `error:` line per bad
  cell names it and the value, and the command exits with status 2 (so does a
  pool setting that would fail at the first dispatch, runner.sweep.launcher_checks);
- cells whose folder already holds a finished run of the same effective config
  (runner.sweep.verdict, which also refuses a folder of another config), cells
  another process is training (a live lock), and cells that two points of the
  sweep map to (e.g. SGD under two values of `sam.rho`) are not launched;
- the rest go to the launcher (basic, local or SLURM) in one batch, each job
  told its variant, and `sweep_plan.json` lists every cell for `runner.sweep.status`.

Selected by conf/config.yaml (`override hydra/sweeper: validating`), so every
launcher and preset gets it.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.folder import JOB_CANCELLED, JOB_ENDED_EARLY, MULTIRUN_FILE, PLAN_FILE, RUN_LOG
from runner.io import atomic_write_json
from runner.sweep import cell_state, identity, live
from runner.sweep.failures import describe
from runner.sweep.forked_map import available_cores, forked_map
from runner.sweep.launcher_checks import launcher_problems
from runner.sweep.launchers import JobEnded
from runner.sweep.lock import lock_holder
from runner.sweep.termination import sigterm_interrupts
from runner.sweep.validate import KEYS, problems
from runner.sweep.value_checks import added_key_problems
from runner.sweep.verdict import REFUSE, SKIP, decide

log = logging.getLogger(__name__)
# Planning processes under `plan_processes: auto`: one per core, at most this many, each given at least
# CELLS_PER_PLAN_PROCESS cells (a child pays the imports of the validation once, ~5 s on a slow CPU).
MAX_PLAN_PROCESSES = 8
CELLS_PER_PLAN_PROCESS = 4


@dataclass
class PlannedCell:
    index: int
    overrides: list[str]
    run_dir: Path
    cell: str
    variant: str
    variant_values: dict[str, Any]
    action: str = "launch"  # launch | skip-finished | skip-duplicate | skip-running
    reason: str = ""
    job_num: int | None = None


class ValidatingSweeper(BasicSweeper):
    """BasicSweeper's grid, composed and validated up front; finished cells are never launched."""

    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        live: str = "auto",
        live_every: float = 2.0,
        plan_processes: Any = "auto",
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self._references: dict[tuple[str, ...], DictConfig] = {}
        self.live, self.live_every = str(live), float(live_every)
        self.plan_processes = plan_processes

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        if self.live not in live.MODES or not self.live_every > 0:
            print(
                f"error: hydra.sweeper.live={self.live!r} / live_every={self.live_every:g}: live is one of "
                f"{', '.join(live.MODES)} and live_every a number of seconds > 0",
                file=sys.stderr,
            )
            sys.exit(2)
        if planning_processes(self.plan_processes, 1) is None:
            print(
                f"error: hydra.sweeper.plan_processes={self.plan_processes!r}: auto (one process per core, up to "
                f"{MAX_PLAN_PROCESSES}) or a whole number >= 1",
                file=sys.stderr,
            )
            sys.exit(2)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        grid = self.split_arguments(parser.parse_overrides(self._parse_config() + list(arguments)), None)[0]
        cells, errors = self._plan(grid)
        errors += launcher_problems(self.config)
        errors += cell_state.sweep_problems(Path(str(self.config.hydra.sweep.dir)))
        if errors:
            for line in errors:
                print(f"error: {line}", file=sys.stderr)
            bad = len({line.partition("]: ")[0] for line in errors if line.startswith("cell [")})
            where = f"in {bad} of {bad + len(cells)} cells" if bad else "in the sweep itself, none in its cells"
            print(f"error: nothing was launched ({len(errors)} problem(s) {where})", file=sys.stderr)
            sys.exit(2)

        sweep_dir = Path(self.config.hydra.sweep.dir)
        jobs = [cell for cell in cells if cell.action == "launch"]
        for number, cell in enumerate(jobs):
            cell.job_num = number
        summary = _summary_callback(self.hydra_context)
        _write_quietly(sweep_dir / PLAN_FILE, _plan_record(cells, self.config, summary))
        if summary is not None:
            summary.note_skipped([_skipped_outcome(cell) for cell in cells if cell.action != "launch"])
        for cell in cells:
            if cell.action != "launch":
                log.info("not launched: %s (%s)", cell.cell, cell.reason)
        if not jobs:
            return []
        try:
            sweep_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(self.config, sweep_dir / MULTIRUN_FILE)
        except OSError:
            pass
        batch = [cell.overrides + [f"variant='{cell.variant}'"] for cell in jobs]
        # `max_batch_size` bounds how many jobs one launch starts (the local launcher runs a batch at once).
        size = self.max_batch_size or len(batch)
        results: list[Sequence[JobReturn]] = []
        with sigterm_interrupts(), live.LiveView(sweep_dir, mode=self.live, every=self.live_every):
            for start in range(0, len(batch), size):
                try:
                    results.append(self.launcher.launch(batch[start : start + size], initial_job_idx=start))
                except Exception as error:  # a launcher that raises for one job stops waiting for the rest
                    line = describe(error)[1]  # a full disk names the file and the remedy
                    print(f"error: the launcher stopped waiting: {line}", file=sys.stderr)
                    if summary is not None:
                        summary.note_launcher_error(line)
                    break
        if summary is not None:
            summary.note_ended_jobs([_ended_outcome(jobs[ended.job_num], ended) for ended in _ended(results)])
        return results

    def _compose(self, overrides: list[str]) -> DictConfig:
        return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

    def _compose_reference(self, overrides: list[str]) -> DictConfig:
        """References repeat across a sweep (every rho value of one cell shares one): compose each once."""
        key = tuple(overrides)
        if key not in self._references:
            self._references[key] = self._compose(list(overrides))
        return self._references[key]

    def _plan(self, grid: list[list[str]]) -> tuple[list[PlannedCell], list[str]]:
        """Compose, validate and place every cell; problems come back as one line per bad cell.

        The cells are examined independently, in several processes when the sweep is large enough
        (runner.sweep.forked_map); what one cell means for another (two points of the sweep that
        land in one folder) is decided here afterwards, in the sweep's order.
        """
        launcher = str(OmegaConf.select(self.config, "hydra.launcher._target_") or "")
        examine = functools.partial(self._examine, on_cluster="Slurm" in launcher, workers=_workers(self.config))
        processes = planning_processes(self.plan_processes, len(grid)) or 1
        cells: list[PlannedCell] = []
        errors: list[str] = []
        seen: dict[Path, PlannedCell] = {}
        for found in forked_map(examine, list(enumerate(grid)), processes):
            if isinstance(found, list):  # the cell's problems
                errors.extend(found)
                continue
            cell = found
            if cell.run_dir in seen:
                cell.action = "skip-duplicate"
                cell.reason = f"same effective config as [{' '.join(seen[cell.run_dir].overrides)}]"
            elif cell.action == "error":
                errors.append(f"cell [{_shown(cell.overrides)}]: {cell.reason}")
                continue
            seen.setdefault(cell.run_dir, cell)
            cells.append(cell)
        return cells, errors

    def _examine(self, numbered: tuple[int, list[str]], on_cluster: bool, workers: int) -> PlannedCell | list[str]:
        """One cell: its config composed and validated, its folder, and what to do there (or its problems)."""
        index, overrides = numbered
        shown = _shown(overrides)
        try:
            cfg = self._compose(overrides)
            found = added_key_problems(overrides, cfg, KEYS)
            found += problems(cfg, check_environment=not on_cluster, workers=workers)
            if found:
                return [f"cell [{shown}]: {problem}" for problem in found]
            choices = dict(cfg.hydra.runtime.choices)
            cell_identity = identity.cell_identity(cfg, overrides, self._compose_reference, choices)
            with open_dict(cfg):
                cfg.variant = cell_identity.name
            run_dir = Path(str(cfg.run_dir)).absolute()
        except Exception as error:  # a composition error names the override itself
            return [f"cell [{shown}]: {describe(error)[1]}"]
        cell = PlannedCell(
            index,
            list(overrides),
            run_dir,
            _relative(run_dir, self.config),
            cell_identity.name,
            cell_identity.values,
        )
        cell.action, cell.reason = _action(cell, cfg)
        return cell


def planning_processes(setting: Any, cells: int) -> int | None:
    """How many processes plan `cells` cells under `hydra.sweeper.plan_processes`; None if the setting is invalid.

    `auto` forks one per core (up to MAX_PLAN_PROCESSES) once there are at least
    CELLS_PER_PLAN_PROCESS cells for each, since every child imports what the
    validation needs (torch among it) on its own.
    """
    if str(setting) == "auto":
        return max(1, min(available_cores(), MAX_PLAN_PROCESSES, cells // CELLS_PER_PLAN_PROCESS))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        return None
    return setting


def _shown(overrides: Sequence[str]) -> str:
    """A cell as its error lines name it: its overrides as typed."""
    return " ".join(overrides) or "(no overrides)"


def _workers(config: DictConfig) -> int:
    """Processes per cell the launcher will start (DDP ranks), which must divide every batch."""
    tasks = OmegaConf.select(config, "hydra.launcher.tasks_per_node") or 1
    nodes = OmegaConf.select(config, "hydra.launcher.nodes") or 1
    return int(tasks) * int(nodes)


def _relative(run_dir: Path, config: DictConfig) -> str:
    try:
        return str(run_dir.relative_to(Path(str(config.hydra.sweep.dir)).absolute()))
    except ValueError:
        return str(run_dir)


def _action(cell: PlannedCell, cfg: DictConfig) -> tuple[str, str]:
    """What to do with a cell before launching anything, seen alone: launch it, or why not."""
    verdict = decide(cell.run_dir, cfg)
    if verdict.action == REFUSE:
        return "error", "; ".join(verdict.reason.splitlines())
    if verdict.action == SKIP:
        return "skip-finished", verdict.reason
    holder = lock_holder(cell.run_dir)
    if holder is not None:
        return "skip-running", (
            f"being trained by pid {holder.get('pid')} on {holder.get('host')}"
            + (f" (SLURM job {holder['slurm_job_id']})" if holder.get("slurm_job_id") else "")
        )
    return "launch", verdict.reason  # resumes from its checkpoint, or trains


def _summary_callback(context: Any) -> Any:
    from runner.sweep.summary import SweepSummary

    for callback in getattr(context.callbacks, "callbacks", []):
        if isinstance(callback, SweepSummary):
            return callback
    return None


def _plan_record(cells: list[PlannedCell], config: DictConfig, summary: Any) -> dict[str, Any]:
    launcher = str(OmegaConf.select(config, "hydra.runtime.choices")["hydra/launcher"])
    return {
        "schema_version": 1,
        "sweep_id": getattr(summary, "sweep_id", None),
        "created": time.time(),
        "launcher": launcher,
        "sweep_dir": str(Path(str(config.hydra.sweep.dir)).absolute()),
        "cells": [
            {
                "index": c.index,
                "job_num": c.job_num,
                "run_dir": str(c.run_dir),
                "cell": c.cell,
                "overrides": c.overrides,
                "variant": c.variant,
                "variant_values": c.variant_values,
                "action": c.action,
                "reason": c.reason,
            }
            for c in cells
        ],
    }


def _skipped_outcome(cell: PlannedCell) -> dict[str, Any]:
    return {
        "status": "skipped",
        "overrides": cell.overrides,
        "run_dir": str(cell.run_dir),
        "log": str(cell.run_dir / RUN_LOG),
        "reason": cell.reason,
        "action": cell.action,
    }


def _write_quietly(path: Path, record: dict[str, Any]) -> None:
    """The plan helps `runner.sweep.status`; a read-only results tree must not stop a relaunch that trains nothing."""
    try:
        atomic_write_json(path, record)
    except OSError as error:
        log.warning("could not write %s: %s", path, error)


def _ended(results: list[Sequence[JobReturn]]) -> list[JobEnded]:
    """The jobs that ended without returning (runner.sweep.launchers marks them), in job order."""
    return [
        r._return_value for batch in results for r in batch if isinstance(getattr(r, "_return_value", None), JobEnded)
    ]


def _ended_outcome(cell: PlannedCell, ended: JobEnded) -> dict[str, Any]:
    """The summary's record of a job that ended early: unfinished (resumable) unless its process failed."""
    job = f"SLURM job {ended.job_id}" if ended.slurm else f"job {ended.job_id}"
    if ended.detail:  # the job's own process raised
        what = "failed"
    elif ended.state == JOB_CANCELLED:
        what = "was cancelled"
    elif ended.state in JOB_ENDED_EARLY:
        what = f"ended {ended.state}"
    else:  # a local job's state says FINISHED however its process ended
        what = "was killed"
    return {
        "status": "failed" if ended.detail else "unfinished",
        "job_num": ended.job_num,
        "job_id": ended.job_id,
        "overrides": cell.overrides,
        "run_dir": str(cell.run_dir),
        "log": ended.log_path,
        "error": f"{job} {what} before the run returned" + (f": {ended.detail}" if ended.detail else ""),
    }
