"""One grid cell from config to record: skip, resume, train, measure, write.

`run(cfg)` never raises for a failure of the run itself: a non-finite loss
becomes a `diverged` record and an exception a `failed` one, so a sweep goes
on. Only a config that cannot work (`ConfigError`) stops it, before anything
is written.
"""

from __future__ import annotations

import logging
import random
import sys
import time
import traceback
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from runner import checkpoint as ckpt
from runner import distributed, identity, records
from runner.io import atomic_write_text, remove_stale_temporaries
from runner.lock import CellBusy, CellLock
from runner.loggers import Loggers, open_loggers
from runner import data
from runner.models import build_model
from runner.pipeline import build_pipelines
from runner.schedule import Schedule, remember_initial_values
from runner.train import Diverged, evaluate, full_gradient_norm, resolve_precision, train_epoch
from runner.validate import ConfigError, validate

log = logging.getLogger("runner")

def check_same_cell(stored: dict | None, cfg: DictConfig, what: str, run_dir: Path) -> None:
    """Refuse to resume or skip on the strength of a run made with other hyperparameters.

    Folders are named by the effective config, so this only fires when a folder
    was filled by an older layout or by hand; it is checked under the cell's lock,
    at the moment the stored run would be used.
    """
    if stored is None:
        return
    ours, theirs = identity.computed_values(cfg), identity.computed_values(stored)
    changed = identity.differences(ours, theirs)
    if changed:
        shown = "; ".join(f"{key}: {theirs.get(key)!r} -> {ours.get(key)!r}" for key in list(changed)[:4])
        raise ConfigError(
            f"{run_dir} holds a {what} made with a different config ({shown}{'; ...' if len(changed) > 4 else ''}); "
            f"use another experiment_name=<name> for the new values, or force=true to replace it"
        )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def _run_log(run_dir: Path, enabled: bool) -> Iterator[None]:
    """Append this run's messages to <run_dir>/run.log (one file across resumes)."""
    if not enabled:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "run.log", mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _outcome(status: str, run_dir: Path, **extra: Any) -> dict[str, Any]:
    return {"status": status, "run_dir": str(run_dir), "log": str(run_dir / "run.log"), **extra}


def build_optimizer(optimizer_cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer config's SAM/GSAM over its base optimizer, with lr from `optimizer.lr`."""
    import hydra.utils

    settings = OmegaConf.to_container(optimizer_cfg, resolve=True)
    base = settings.pop("base")
    settings.pop("name")
    lr = settings.pop("lr")
    base_factory = hydra.utils.instantiate(base, lr=lr)
    return hydra.utils.instantiate(settings, model.parameters(), base_optimizer=base_factory, model=model)


def _finished(record: dict | None, cfg: DictConfig) -> bool:
    return bool(record) and record.get("status") in records.FINISHED_STATUSES and not cfg.force


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train one cell (or find it done) and return its outcome for the sweep summary.

    A finished cell is skipped without writing anything, so a read-only results
    tree can be relaunched. Everything else happens under the cell's lock: a
    second process on the same cell gets a `busy` outcome instead of training
    beside the first, and the checkpoint is checked when it is about to be used.
    """
    run_dir = Path(cfg.run_dir).absolute()
    existing = records.read_result(run_dir)
    if _finished(existing, cfg):
        check_same_cell(existing.get("config"), cfg, f"{existing['status']} run", run_dir)
        log.info("%s: already %s (result.json); nothing to do (force=true retrains)", run_dir, existing["status"])
        return _outcome("skipped", run_dir, previous_status=existing["status"])
    if distributed.env_rank() != 0:  # rank 0 holds the lock for the whole cell
        return _run_unlocked(cfg, run_dir)
    try:
        with CellLock(run_dir):
            return _run_unlocked(cfg, run_dir)
    except CellBusy as busy:
        log.error("%s", busy)
        return _outcome("busy", run_dir, error=str(busy))


def _run_unlocked(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    existing = records.read_result(run_dir)
    if _finished(existing, cfg):  # finished by another process while this one waited for the lock
        return _outcome("skipped", run_dir, previous_status=existing["status"])
    notes: dict[str, Any] = {}
    checkpoint_path = run_dir / ckpt.CHECKPOINT_FILE
    if distributed.env_rank() == 0:
        remove_stale_temporaries(run_dir)
        if cfg.force:
            checkpoint_path.unlink(missing_ok=True)
        elif checkpoint_path.exists():
            try:
                check_same_cell(ckpt.checkpoint_config(checkpoint_path), cfg, "checkpoint", run_dir)
            except ckpt.CorruptCheckpoint as corrupt:
                moved = ckpt.quarantine(checkpoint_path)
                notes["checkpoint_quarantined"] = str(moved)
                notes["warning"] = f"{corrupt}; moved it to {moved.name} and started over"

    dist = distributed.setup_distributed(str(cfg.device))
    try:
        with _run_log(run_dir, dist.is_main):
            if "warning" in notes:
                log.warning("%s", notes["warning"])
            return _train_and_record(cfg, run_dir, dist, notes)
    finally:
        distributed.teardown()


def _train_and_record(cfg: DictConfig, run_dir: Path, dist: distributed.DistContext,
                      notes: dict[str, Any]) -> dict[str, Any]:
    started = time.time()
    precision = resolve_precision(str(cfg.precision), dist.device)
    trackers = open_loggers(cfg, run_dir, {"variant": str(cfg.variant or "")}) if dist.is_main else Loggers([])
    try:
        return _train_and_write(cfg, run_dir, dist, notes, trackers, started, precision)
    finally:
        trackers.close()  # without log_final the trackers mark the run interrupted; a requeue resumes it


def _train_and_write(cfg: DictConfig, run_dir: Path, dist: distributed.DistContext, notes: dict[str, Any],
                     trackers: Loggers, started: float, precision: str) -> dict[str, Any]:
    try:
        if dist.is_main:
            atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(records.config_container(cfg))))
        summary = _train(cfg, run_dir, dist, precision, trackers)
    except Diverged as error:
        log.error("%s", error)
        record = records.build_record(cfg, "diverged", error=str(error), diverged_at_step=error.step,
                                      precision=precision, wall_time_s=time.time() - started)
        status = "diverged"
    except ConfigError:
        raise
    except Exception as error:  # the sweep goes on; the record says why this cell did not
        log.error("run failed: %s\n%s", error, traceback.format_exc())
        record = records.build_record(cfg, "failed", error=f"{type(error).__name__}: {error}",
                                      precision=precision, wall_time_s=time.time() - started)
        status = "failed"
    else:
        record, status = summary, "completed"
    record.update(notes)
    if dist.is_main:
        records.write_result(run_dir, record)
        trackers.log_final(record)
        if status == "completed" and not cfg.keep_checkpoint:
            (run_dir / ckpt.CHECKPOINT_FILE).unlink(missing_ok=True)
    return _outcome(status, run_dir, test_error=record.get("test_error"), error=record.get("error"))


def _train(cfg: DictConfig, run_dir: Path, dist: distributed.DistContext, precision: str,
           trackers: Loggers) -> dict[str, Any]:
    device = dist.device
    if cfg.cpu_threads:
        torch.set_num_threads(int(cfg.cpu_threads))
    _seed_everything(int(cfg.seed))
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    model = build_model(cfg.model).to(device)
    channels_last = (cfg.channels_last == "auto" and device.type == "cuda" and cfg.model.family == "cnn") or (
        cfg.channels_last is True
    )
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_model: nn.Module = model
    if dist.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        train_model = torch.compile(train_model)
    optimizer = build_optimizer(cfg.optimizer, train_model)
    remember_initial_values(optimizer)

    schedule = Schedule.from_config(cfg.schedule, int(cfg.dataset.train_size))
    pipes = build_pipelines(cfg, device, dist.rank, dist.world_size, channels_last)
    if pipes.batch_transform is not None:
        from timm.loss import SoftTargetCrossEntropy

        loss_fn = SoftTargetCrossEntropy()
    else:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=float(cfg.train.label_smoothing))

    # Loss scaling only for fp16; bf16 has fp32's exponent range and needs none.
    grad_scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    config = records.config_container(cfg)
    progress = ckpt.Progress()
    checkpoint_path = run_dir / ckpt.CHECKPOINT_FILE
    if checkpoint_path.exists():
        progress = ckpt.load_checkpoint(checkpoint_path, model, optimizer, grad_scaler)
        log.info("resuming %s from epoch %d (step %d)", run_dir, progress.epoch, progress.step)
    else:
        log.info("training %s: %d epochs, %d steps, precision %s, device %s",
                 run_dir, schedule.epochs, schedule.total_steps, precision, device)

    segment_start = time.time()
    wall_before = progress.wall_time_s
    epochs = _epoch_bar(cfg, schedule, progress.epoch, dist.is_main)
    for epoch in epochs:
        batch_size = schedule.batch_size_at(epoch)
        stats = train_epoch(
            train_model, optimizer, pipes.train_batches(epoch, batch_size),
            schedule=schedule, first_step=schedule.epoch_start_step(epoch), loss_fn=loss_fn,
            precision=precision, device=device, channels_last=channels_last,
            batch_transform=pipes.batch_transform, check_every=int(cfg.train.divergence_check_every),
            grad_scaler=grad_scaler,
        )
        progress.epoch, progress.step = epoch + 1, schedule.epoch_start_step(epoch + 1)
        is_last = epoch + 1 == schedule.epochs
        # Each rank saw its share of the epoch: the epoch's means are the means over ranks.
        train_loss = float(distributed.all_reduce_mean(stats.loss))
        train_error = float(distributed.all_reduce_mean(stats.error))
        row = {"epoch": epoch + 1, "stage": schedule.stage_at(epoch), "batch_size": batch_size,
               "lr": stats.lr, "rho": stats.rho, "train_loss": train_loss, "train_error": train_error}
        if dist.is_main and (is_last or (epoch + 1) % int(cfg.train.eval_every) == 0):
            row["test_loss"], row["test_error"] = evaluate(
                model, pipes.test(), precision=precision, device=device, channels_last=channels_last
            )
        if dist.is_main and pipes.grad_norm_subset is not None:
            row["grad_norm"] = full_gradient_norm(model, pipes.grad_norm_subset(), device=device)
        progress.wall_time_s = wall_before + time.time() - segment_start
        row["wall_time_s"] = progress.wall_time_s
        progress.metrics.append(row)
        if dist.is_main:
            records.write_metrics(run_dir, progress.metrics)
            ckpt.save_checkpoint(run_dir, model, optimizer, progress, config, grad_scaler)
            trackers.log_epoch(row)
            log.info(
                "epoch %d/%d stage %d batch %d lr %.4g rho %.4g | train loss %.4f err %.2f%% | test loss %s err %s",
                epoch + 1, schedule.epochs, row["stage"], batch_size, stats.lr, stats.rho, train_loss, train_error,
                _fmt(row.get("test_loss")), _fmt(row.get("test_error"), "%"),
            )
        distributed.barrier()

    final = progress.metrics[-1] if progress.metrics else {}
    if final.get("test_error") is None and dist.is_main:  # resumed after the last epoch's checkpoint
        test_loss, test_error = evaluate(model, pipes.test(), precision=precision, device=device,
                                         channels_last=channels_last)
        final = {**final, "test_loss": test_loss, "test_error": test_error}
    sharpness_values: dict[str, Any] = {}
    if dist.is_main:
        ckpt.save_final_model(run_dir, model)
        if cfg.sharpness:
            from runner.remeasure.measures import measure_all

            log.info("measuring sharpness: %s", ", ".join(cfg.sharpness.keys()))
            sharpness_values = measure_all(model, cfg.dataset, cfg.sharpness, device=device, seed=int(cfg.seed))
    return records.build_record(
        cfg, "completed",
        metrics={key: final.get(key) for key in ("test_error", "test_loss", "train_error", "train_loss")},
        sharpness=sharpness_values, epochs=schedule.epochs, steps=progress.step,
        wall_time_s=wall_before + time.time() - segment_start,
        precision=precision,
    )


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.4f}{suffix}" if not suffix else f"{value:.2f}{suffix}"


def _epoch_bar(cfg: DictConfig, schedule: Schedule, start: int, is_main: bool) -> Any:
    """Epochs left, with a progress bar on a terminal."""
    epochs = range(start, schedule.epochs)
    if not (cfg.progress and is_main and sys.stderr.isatty()):
        return epochs
    from tqdm import tqdm

    return tqdm(epochs, total=schedule.epochs, initial=start, desc=f"{cfg.optimizer.name}-{cfg.schedule.name}",
                unit="epoch", leave=False)


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
    from runner.sweep_summary import record_outcome

    record_outcome(outcome)
    return outcome
