"""The `debug` presets (conf/debug/): a cell cut to a few batches, an overfit check, a profile.

    python launch.py debug=fdr            # every part of a cell on two batches: a bug shows in seconds
    python launch.py debug=overfit        # a few batches trained until they are learnt, or it says not
    python launch.py debug=profile        # a torch.profiler trace of the training, in <run_dir>/profile/

The presets set `debug.*` (absent otherwise, so a normal run never reads them):

- `train_batches`: the training set cut to this many batches of the largest stage batch size
  (the schedule counts steps on the cut set); `test_batches`: the test set cut to this many
  evaluation batches. In-memory datasets only (`dataset.loader=device`); other loaders run whole.
- `overfit_check`: after training, run.log says whether the last epoch's training error is below
  `OVERFIT_ERROR` percent: a model that cannot learn two batches has a bug.
- `profile`: the training epochs run under torch.profiler; `profile/trace.json` opens in
  chrome://tracing or Perfetto, `profile/ops.txt` lists the operators by their own time.

Debug runs go to `results/debug/...` and always retrain (`force=true`).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from runner.folder import METRICS_FILE, PROFILE_DIR
from runner.io import atomic_write_text

if TYPE_CHECKING:
    import torch

log = logging.getLogger("runner")
OVERFIT_ERROR = 1.0  # percent: the last epoch's training error below which a few batches count as learnt


BATCH_KEYS = ("train_batches", "test_batches")
SWITCH_KEYS = ("overfit_check", "profile")


def problems(cfg: DictConfig) -> list[str]:
    """One line per bad `debug.*` value, and for a cut the loader cannot make (validation calls this)."""
    node = OmegaConf.select(cfg, "debug", default=None)
    if node is None:
        return []
    found = []
    for key in BATCH_KEYS:
        value = node.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            found.append(f"debug.{key}={value!r} must be an integer >= 1 (or null: no cut)")
    for key in SWITCH_KEYS:
        if not isinstance(node.get(key, False), bool):
            found.append(f"debug.{key}={node.get(key)!r} must be true or false")
    if any(node.get(key) for key in BATCH_KEYS) and not _cuts_data(cfg):
        found.append(
            f"debug.train_batches / debug.test_batches cut in-memory datasets only; dataset.loader="
            f"{cfg.dataset.loader} runs whole (set debug.train_batches=null debug.test_batches=null)"
        )
    return found


def _setting(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, f"debug.{key}", default=None)


def _cuts_data(cfg: DictConfig) -> bool:
    return str(OmegaConf.select(cfg, "dataset.loader", default="device")) == "device"


def train_examples(cfg: DictConfig) -> int:
    """The training examples a cell uses: the whole set, or `debug.train_batches` of the largest batch."""
    full = int(cfg.dataset.train_size)
    batches = _setting(cfg, "train_batches")
    if not batches or not _cuts_data(cfg):
        return full
    largest = max(int(stage.batch_size) for stage in cfg.schedule.stages)
    return min(full, int(batches) * largest)


def test_examples(cfg: DictConfig) -> int | None:
    """The test examples a cell evaluates on when a debug preset cuts them; None: all."""
    batches = _setting(cfg, "test_batches")
    if not batches or not _cuts_data(cfg):
        return None
    return int(batches) * int(cfg.train.eval_batch_size)


def cut(images: torch.Tensor, labels: torch.Tensor, count: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` examples (all of them for None)."""
    return (images, labels) if count is None else (images[:count], labels[:count])


@contextmanager
def debug_run(cfg: DictConfig, run_dir: Path) -> Iterator[None]:
    """Around the training epochs: the profiler when `debug.profile`, the overfit verdict when asked."""
    if _setting(cfg, "profile"):
        with _profiled(run_dir):
            yield
    else:
        yield
    if _setting(cfg, "overfit_check"):
        _overfit_verdict(run_dir)


@contextmanager
def _profiled(run_dir: Path) -> Iterator[None]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as profiler:
        yield
    folder = Path(run_dir) / PROFILE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".trace.json.{os.getpid()}"
    profiler.export_chrome_trace(str(partial))
    os.replace(partial, folder / "trace.json")
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    atomic_write_text(folder / "ops.txt", profiler.key_averages().table(sort_by=sort, row_limit=40) + "\n")
    log.info("profile: %s (chrome://tracing or ui.perfetto.dev) and %s", folder / "trace.json", folder / "ops.txt")


def _overfit_verdict(run_dir: Path) -> None:
    try:
        with open(Path(run_dir) / METRICS_FILE, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        error = float(rows[-1]["train_error"])
    except (OSError, IndexError, KeyError, ValueError):
        log.warning("overfit check: metrics.csv has no training error to judge")
        return
    if error < OVERFIT_ERROR:
        log.info("overfit check passed: training error %.2f%% after %d epochs", error, len(rows))
    else:
        log.warning(
            "overfit check FAILED: training error %.2f%% after %d epochs (expected below %.0f%%): the model, the "
            "loss or the optimizer cannot learn a few batches",
            error,
            len(rows),
            OVERFIT_ERROR,
        )
