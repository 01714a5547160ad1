"""The epoch loop of one cell: train an epoch, measure it, write it down, checkpoint; until the last epoch.

Rank 0 alone evaluates, writes metrics.csv and the checkpoint and logs; every
rank trains its share of each batch, and the epoch's training means are
averaged over the ranks.

A preemption or timeout signal (`runner.training.preemption`) stops the epoch after the
optimizer step it arrived in: the checkpoint then holds that step, with the
epoch's running sums of every rank, and the signal goes on to its handler (a
submitit job is requeued). The requeued run starts the epoch at the next batch
and ends it with the means of an epoch trained in one go.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from runner.loggers import Loggers
from runner.training import checkpoint as ckpt
from runner.training import distributed, records
from runner.training.build import Cell
from runner.training.distributed import DistContext
from runner.training.preemption import Preemption
from runner.training.steps import EpochStats, EpochSums

log = logging.getLogger("runner")


class Clock:
    """Wall time of the whole run, across resumes: what earlier segments took plus this one so far."""

    def __init__(self, before: float) -> None:
        self.before, self.started = before, time.time()

    def total(self) -> float:
        return self.before + time.time() - self.started


def train_epochs(
    cfg: DictConfig,
    run_dir: Path,
    dist: DistContext,
    cell: Cell,
    progress: ckpt.Progress,
    trackers: Loggers,
    clock: Clock,
) -> None:
    """Train from where `progress` stands to the last epoch, recording and checkpointing each.

    A watched signal is acted on after the optimizer step it arrives in
    (mid-epoch checkpoint, then the signal's own handler) or, when it arrives
    during an epoch's end, once that epoch's checkpoint is written.
    """
    config = records.config_container(cfg)
    with Preemption() as preemption:
        for epoch in epoch_bar(cfg, cell.schedule.epochs, progress.epoch, dist.is_main):
            sums = _sums_to_continue(progress, dist, cell.device)
            while not cell.train(epoch, sums, stop=preemption.requested):
                _save_mid_epoch(run_dir, dist, cell, progress, epoch, sums, config, clock)
                if dist.is_main:
                    log.info(
                        "%s: checkpoint at epoch %d, batch %d of %d (step %d)",
                        preemption.names(),
                        epoch + 1,
                        sums.steps,
                        cell.schedule.steps_in_epoch(epoch),
                        progress.step,
                    )
                preemption.forward()  # a requeue ends the process here; other handlers return to training
            progress.epoch, progress.step = epoch + 1, cell.schedule.epoch_start_step(epoch + 1)
            row = _epoch_row(cfg, dist, cell, epoch, sums.stats(cell.optimizer))
            progress.wall_time_s = row["wall_time_s"] = clock.total()
            progress.metrics.append(row)
            if dist.is_main:
                records.write_metrics(run_dir, progress.metrics)
                ckpt.save_checkpoint(run_dir, cell.model, cell.optimizer, progress, config, cell.grad_scaler)
                trackers.log_epoch(row)
                _log_epoch(row, cell.schedule.epochs)
            distributed.barrier()
            if preemption.requested():  # arrived during the epoch's end: its checkpoint is the current state
                log.info("%s: the checkpoint of epoch %d is current", preemption.names(), epoch + 1)
                preemption.forward()


def _sums_to_continue(progress: ckpt.Progress, dist: DistContext, device: torch.device) -> EpochSums:
    """This rank's running sums of the epoch a mid-epoch checkpoint stopped in, else zeros (used once)."""
    ranks, progress.epoch_in_progress = progress.epoch_in_progress, None
    if ranks is None:
        return EpochSums.zeros(device)
    if len(ranks) != dist.world_size:
        raise RuntimeError(
            f"checkpoint.pt was written in the middle of epoch {progress.epoch + 1} by {len(ranks)} rank(s) and "
            f"this run has {dist.world_size}; resume it with {len(ranks)} (as it was launched), or delete "
            f"checkpoint.pt to start the cell over"
        )
    return EpochSums.from_state(ranks[dist.rank], device)


def _save_mid_epoch(
    run_dir: Path,
    dist: DistContext,
    cell: Cell,
    progress: ckpt.Progress,
    epoch: int,
    sums: EpochSums,
    config: dict,
    clock: Clock,
) -> None:
    """The checkpoint of the step just taken: every rank sends its sums, rank 0 writes."""
    progress.step = cell.schedule.epoch_start_step(epoch) + sums.steps
    progress.wall_time_s = clock.total()
    progress.epoch_in_progress = _states_of_every_rank(sums, dist.world_size)
    if dist.is_main:
        ckpt.save_checkpoint(run_dir, cell.model, cell.optimizer, progress, config, cell.grad_scaler)
    progress.epoch_in_progress = None


def _states_of_every_rank(sums: EpochSums, world_size: int) -> list[dict[str, Any]]:
    """`sums.state()` of every rank, in rank order (all ranks call it at the same step)."""
    if world_size == 1:
        return [sums.state()]
    counts = torch.stack(
        [
            sums.errors,
            sums.first_bad,
            torch.full_like(sums.errors, sums.examples),
            torch.full_like(sums.errors, sums.steps),
        ]
    )
    every_count = [torch.empty_like(counts) for _ in range(world_size)]
    every_loss = [torch.empty_like(sums.loss) for _ in range(world_size)]
    torch.distributed.all_gather(every_count, counts)
    torch.distributed.all_gather(every_loss, sums.loss)
    return [
        EpochSums(loss, count[0], count[1], int(count[2]), int(count[3])).state()
        for loss, count in zip(every_loss, every_count)
    ]


def _epoch_row(cfg: DictConfig, dist: DistContext, cell: Cell, epoch: int, stats: EpochStats) -> dict[str, Any]:
    """metrics.csv's row of an epoch: schedule values, training means over ranks, test and gradient norm on rank 0."""
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "stage": cell.schedule.stage_at(epoch),
        "batch_size": cell.schedule.batch_size_at(epoch),
        "lr": stats.lr,
        "rho": stats.rho,
        # Each rank saw its share of the epoch: the epoch's means are the means over ranks.
        "train_loss": float(distributed.all_reduce_mean(stats.loss)),
        "train_error": float(distributed.all_reduce_mean(stats.error)),
    }
    is_last = epoch + 1 == cell.schedule.epochs
    if dist.is_main and (is_last or (epoch + 1) % int(cfg.train.eval_every) == 0):
        row["test_loss"], row["test_error"] = cell.evaluate()
    if dist.is_main:
        grad_norm = cell.grad_norm()
        if grad_norm is not None:
            row["grad_norm"] = grad_norm
    return row


def _log_epoch(row: dict[str, Any], epochs: int) -> None:
    log.info(
        "epoch %d/%d stage %d batch %d lr %.4g rho %.4g | train loss %.4f err %.2f%% | test loss %s err %s",
        row["epoch"],
        epochs,
        row["stage"],
        row["batch_size"],
        row["lr"],
        row["rho"],
        row["train_loss"],
        row["train_error"],
        _fmt(row.get("test_loss")),
        _fmt(row.get("test_error"), "%"),
    )


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.4f}{suffix}" if not suffix else f"{value:.2f}{suffix}"


def epoch_bar(cfg: DictConfig, epochs: int, start: int, is_main: bool) -> Iterable[int]:
    """Epochs left, with a progress bar on a terminal."""
    left = range(start, epochs)
    if not (cfg.progress and is_main and sys.stderr.isatty()):
        return left
    from tqdm import tqdm

    return tqdm(
        left, total=epochs, initial=start, desc=f"{cfg.optimizer.name}-{cfg.schedule.name}", unit="epoch", leave=False
    )
