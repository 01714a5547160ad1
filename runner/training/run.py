"""One grid cell from config to record: skip, resume, train, measure, write.

`run(cfg)` never raises for a failure of the run itself: a non-finite loss
becomes a `diverged` record and an exception a `failed` one, so a sweep goes
on. Only a config that cannot work (`ConfigError`) stops it, before anything
is written.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner import data
from runner.folder import CHECKPOINT_FILE, CONFIG_FILE, RESULT_FILE, RUN_LOG
from runner.io import atomic_write_text, remove_stale_temporaries
from runner.loggers import Loggers, open_loggers
from runner.sweep import cell_state
from runner.sweep.failures import io_line
from runner.sweep.lock import CellBusy, CellLock
from runner.sweep.validate import ConfigError, validate
from runner.sweep.verdict import REFUSE, SKIP, TRAIN, Verdict, decide
from runner.training import checkpoint as ckpt
from runner.training import checkpoint_fit, debug, distributed, records
from runner.training.build import Cell, build_cell
from runner.training.epochs import Clock, train_epochs
from runner.training.steps import Diverged, resolve_precision

log = logging.getLogger("runner")


@contextmanager
def _run_log(run_dir: Path, enabled: bool) -> Iterator[None]:
    """Append this run's messages to <run_dir>/run.log (one file across resumes)."""
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / RUN_LOG, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _outcome(status: str, run_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"status": status, "run_dir": str(run_dir), "log": str(run_dir / RUN_LOG), **extra}


def _skipped(run_dir: Path, verdict: Verdict) -> dict[str, Any]:
    status = verdict.record["status"] if verdict.record else "completed"
    log.info("%s: %s (result.json); nothing to do (force=true retrains)", run_dir, verdict.reason)
    damage = cell_state.config_damage(run_dir)
    if damage:
        log.warning("%s; result.json keeps the run's config", damage)
    return _outcome("skipped", run_dir, previous_status=status)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one cell (or find it done) and return its outcome for the sweep summary.

    What to do is `runner.sweep.verdict.decide`'s, asked twice: before the lock (a
    finished cell is skipped without writing anything, so a read-only results tree
    can be relaunched) and under it, where the checkpoint's config is read too, at
    the moment it is about to be used. Everything that writes the cell happens on
    rank 0 under the cell's lock: a second process on the same cell gets a `busy`
    outcome instead of training beside the first. The other ranks of a DDP cell
    train their share and write nothing.
    """
    run_dir = Path(cfg.run_dir).absolute()
    verdict = decide(run_dir, cfg)
    if verdict.action == SKIP:
        return _skipped(run_dir, verdict)
    if verdict.action == REFUSE:
        raise ConfigError(verdict.reason)
    if distributed.env_rank() != 0:  # rank 0 decides again under the lock, and writes
        return _train_cell(cfg, run_dir, {})
    try:
        with CellLock(run_dir):
            return _under_lock(cfg, run_dir)
    except CellBusy as busy:
        log.error("%s", busy)
        return _outcome("busy", run_dir, error=str(busy))


def _under_lock(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Rank 0, holding the cell's lock: decide again, clear what earlier runs left, then train."""
    remove_stale_temporaries(run_dir)
    notes: dict[str, Any] = {}
    try:
        verdict = decide(run_dir, cfg, checkpoint_config=ckpt.checkpoint_config)
    except ckpt.CorruptCheckpoint as corrupt:  # unreadable: set aside, and the cell starts over
        moved = ckpt.quarantine(corrupt.path)
        notes["checkpoint_quarantined"] = str(moved)
        notes["warning"] = f"{corrupt}; moved it to {moved.name} and started over"
        verdict = decide(run_dir, cfg)
    if verdict.action == SKIP:  # finished by another process while this one waited for the lock
        return _skipped(run_dir, verdict)
    if verdict.action == REFUSE:
        raise ConfigError(verdict.reason)
    damage = cell_state.record_damage(run_dir)
    if damage:  # provably unfinished (no model.pt) or force=true: keep it for inspection, train anew
        moved = cell_state.set_aside(run_dir / RESULT_FILE)
        notes["record_set_aside"] = str(moved)
        notes.setdefault("warning", f"{run_dir / RESULT_FILE} was damaged ({damage}); moved it to {moved.name}")
    if verdict.action == TRAIN:  # force=true: an old checkpoint must not be resumed
        (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return _train_cell(cfg, run_dir, notes)


def _train_cell(cfg: DictConfig, run_dir: Path, notes: dict[str, Any]) -> dict[str, Any]:
    dist = distributed.setup_distributed(str(cfg.device))
    try:
        with _run_log(run_dir, dist.is_main):
            if "warning" in notes:
                log.warning("%s", notes["warning"])
            return _train_and_record(cfg, run_dir, dist, notes)
    finally:
        distributed.teardown()


def _train_and_record(
    cfg: DictConfig, run_dir: Path, dist: distributed.DistContext, notes: dict[str, Any]
) -> dict[str, Any]:
    started = time.time()
    precision = resolve_precision(str(cfg.precision), dist.device)
    trackers = open_loggers(cfg, run_dir, {"variant": str(cfg.variant or "")}) if dist.is_main else Loggers([])
    try:
        return _train_and_write(cfg, run_dir, dist, notes, trackers, started, precision)
    finally:
        trackers.close()  # without log_final the trackers mark the run interrupted; a requeue resumes it


def _train_and_write(
    cfg: DictConfig,
    run_dir: Path,
    dist: distributed.DistContext,
    notes: dict[str, Any],
    trackers: Loggers,
    started: float,
    precision: str,
) -> dict[str, Any]:
    try:
        if dist.is_main:
            config = OmegaConf.create(records.config_container(cfg))
            atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(config))
        summary = _train(cfg, run_dir, dist, precision, trackers, notes)
    except Diverged as error:
        log.error("%s", error)
        record = records.build_record(
            cfg,
            "diverged",
            error=str(error),
            diverged_at_step=error.step,
            precision=precision,
            wall_time_s=time.time() - started,
        )
        status = "diverged"
    except ConfigError:
        raise
    except Exception as error:  # the sweep goes on; the record says why this cell did not
        if isinstance(error, OSError):  # a full disk or a folder gone read-only: the file and the remedy suffice
            log.error("run failed: %s", io_line(error))
        else:
            log.error("run failed: %s\n%s", error, traceback.format_exc())
        record = records.build_record(
            cfg,
            "failed",
            error=io_line(error) if isinstance(error, OSError) else f"{type(error).__name__}: {error}",
            precision=precision,
            wall_time_s=time.time() - started,
        )
        status = "failed"
    else:
        record, status = summary, "completed"
    record.update(notes)
    if dist.is_main:
        records.write_result(run_dir, record)
        trackers.log_final(record)
        if status == "completed" and not cfg.keep_checkpoint:
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return _outcome(status, run_dir, test_error=record.get("test_error"), error=record.get("error"))


def _train(
    cfg: DictConfig,
    run_dir: Path,
    dist: distributed.DistContext,
    precision: str,
    trackers: Loggers,
    notes: dict[str, Any],
) -> dict[str, Any]:
    """Build the cell, continue it from its checkpoint if it has one, train the epochs left, finish."""
    cell = build_cell(cfg, dist, precision)
    try:
        progress = _start_or_resume(cell, run_dir)
    except ckpt.CorruptCheckpoint as corrupt:  # plain data that is not this cell's: set aside, start over
        distributed.barrier()  # every rank has read it (and found the same); rank 0 holds the lock and moves it
        if dist.is_main:
            moved = ckpt.quarantine(corrupt.path)
            notes["checkpoint_quarantined"] = str(moved)
            notes["warning"] = f"{corrupt}; moved it to {moved.name} and started over"
            log.warning("%s", notes["warning"])
        cell = build_cell(cfg, dist, precision)  # loading may have changed weights and RNGs: rebuild from scratch
        progress = ckpt.Progress()
    clock = Clock(progress.wall_time_s)
    # The debug presets' profiler and overfit check (rank 0, which writes the cell); nothing otherwise.
    with debug.debug_run(cfg, run_dir) if dist.is_main else nullcontext():
        train_epochs(cfg, run_dir, dist, cell, progress, trackers, clock)
    return _finish(cfg, run_dir, dist, cell, progress, clock)


def _start_or_resume(cell: Cell, run_dir: Path) -> ckpt.Progress:
    """Where training starts: the checkpoint's state loaded into the cell, or the beginning."""
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if not checkpoint_path.exists():
        log.info(
            "training %s: %d epochs, %d steps, precision %s, device %s",
            run_dir,
            cell.schedule.epochs,
            cell.schedule.total_steps,
            cell.precision,
            cell.device,
        )
        return ckpt.Progress()
    state = ckpt.read_checkpoint(checkpoint_path)
    problem = checkpoint_fit.mismatch(state, cell.model, cell.optimizer, cell.schedule)
    if problem:
        raise ckpt.CorruptCheckpoint(checkpoint_path, f"it does not belong to this cell: {problem}")
    try:
        progress = ckpt.restore(state, cell.model, cell.optimizer, cell.grad_scaler)
    except Exception as error:  # a value of the right shape that torch still refuses
        raise ckpt.CorruptCheckpoint(checkpoint_path, f"it cannot be loaded into this cell: {error}") from None
    if progress.epoch_in_progress is None:
        log.info("resuming %s from epoch %d (step %d)", run_dir, progress.epoch, progress.step)
    else:
        log.info(
            "resuming %s mid-epoch: epoch %d at batch %d of %d (step %d)",
            run_dir,
            progress.epoch + 1,
            progress.step - cell.schedule.epoch_start_step(progress.epoch),
            cell.schedule.steps_in_epoch(progress.epoch),
            progress.step,
        )
    return progress


def _finish(
    cfg: DictConfig, run_dir: Path, dist: distributed.DistContext, cell: Cell, progress: ckpt.Progress, clock: Clock
) -> dict[str, Any]:
    """After the last epoch: the final test numbers, model.pt, the sharpness measures and the record."""
    final = progress.metrics[-1] if progress.metrics else {}
    if final.get("test_error") is None and dist.is_main:  # resumed after the last epoch's checkpoint
        test_loss, test_error = cell.evaluate()
        final = {**final, "test_loss": test_loss, "test_error": test_error}
    sharpness_values: dict[str, Any] = {}
    if dist.is_main:
        ckpt.save_final_model(run_dir, cell.model)
        if cfg.sharpness:
            from runner.remeasure.measures import measure_all

            log.info("measuring sharpness: %s", ", ".join(cfg.sharpness.keys()))
            sharpness_values = measure_all(
                cell.model, cfg.dataset, cfg.sharpness, device=cell.device, seed=int(cfg.seed)
            )
    return records.build_record(
        cfg,
        "completed",
        metrics={key: final.get(key) for key in ("test_error", "test_loss", "train_error", "train_loss")},
        sharpness=sharpness_values,
        epochs=cell.schedule.epochs,
        steps=progress.step,
        wall_time_s=clock.total(),
        precision=cell.precision,
    )


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (where one cell must not end the sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def main(cfg: DictConfig) -> dict[str, Any]:
    """Validate, fetch the data, run, and leave the outcome for the sweep summary (launch.py's whole job).

    A single run raises `ConfigError` for a config that cannot work; in a
    multirun the cell is recorded as failed instead (the sweeper validated every
    cell already, so this is what only the training machine can tell, such as
    a missing GPU) and the other cells go on.
    """
    try:
        validate(cfg)
        data.prepare(cfg.dataset)
        outcome = run(cfg)
    except (ConfigError, data.DatasetUnavailableError) as error:
        if not in_multirun():
            raise ConfigError(str(error)) from None
        outcome = _outcome("failed", Path(cfg.run_dir).absolute(), error=str(error))
    from runner.sweep.summary import record_outcome

    record_outcome(outcome)
    return outcome
