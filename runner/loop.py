"""The epoch loop of one cell: train an epoch, measure it, write it down, checkpoint; until the last epoch.

Rank 0 alone evaluates, writes metrics.csv and the checkpoint and logs; every
rank trains its share of each batch, and the epoch's training means are
averaged over the ranks.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner import checkpoint as ckpt
from runner import distributed, records
from runner.cell import Cell
from runner.distributed import DistContext
from runner.loggers import Loggers
from runner.train import EpochStats, EpochSums

log = logging.getLogger("runner")


class Clock:
    """Wall time of the whole run, across resumes: what earlier segments took plus this one so far."""

    def __init__(self, before: float) -> None:
        self.before, self.started = before, time.time()

    def total(self) -> float:
        return self.before + time.time() - self.started


def train_epochs(cfg: DictConfig, run_dir: Path, dist: DistContext, cell: Cell, progress: ckpt.Progress,
                 trackers: Loggers, clock: Clock) -> None:
    """Train from the epoch `progress` stands at to the last one, recording and checkpointing each."""
    config = records.config_container(cfg)
    for epoch in epoch_bar(cfg, cell.schedule.epochs, progress.epoch, dist.is_main):
        sums = EpochSums.zeros(cell.device)
        cell.train(epoch, sums)
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


def _epoch_row(cfg: DictConfig, dist: DistContext, cell: Cell, epoch: int, stats: EpochStats) -> dict[str, Any]:
    """metrics.csv's row of an epoch: schedule values, training means over ranks, test and gradient norm on rank 0."""
    row: dict[str, Any] = {
        "epoch": epoch + 1, "stage": cell.schedule.stage_at(epoch), "batch_size": cell.schedule.batch_size_at(epoch),
        "lr": stats.lr, "rho": stats.rho,
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
        row["epoch"], epochs, row["stage"], row["batch_size"], row["lr"], row["rho"], row["train_loss"],
        row["train_error"], _fmt(row.get("test_loss")), _fmt(row.get("test_error"), "%"),
    )


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.4f}{suffix}" if not suffix else f"{value:.2f}{suffix}"


def epoch_bar(cfg: DictConfig, epochs: int, start: int, is_main: bool) -> Iterable[int]:
    """Epochs left, with a progress bar on a terminal."""
    left = range(start, epochs)
    if not (cfg.progress and is_main and sys.stderr.isatty()):
        return left
    from tqdm import tqdm

    return tqdm(left, total=epochs, initial=start, desc=f"{cfg.optimizer.name}-{cfg.schedule.name}",
                unit="epoch", leave=False)
