"""The run's records: `result.json` (one per run, written last) and `metrics.csv` (one row per epoch).

The analysis package reads these files and nothing else, so their schema is
versioned (`schema_version`) and every write is atomic.
"""

from __future__ import annotations

import csv
import importlib.metadata
import io
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.folder import METRICS_FILE, RESULT_FILE
from runner.io import atomic_write_json, atomic_write_text

SCHEMA_VERSION = 2  # 2: `variant` and `variant_values`
METRICS_COLUMNS = (
    "epoch",
    "stage",
    "batch_size",
    "lr",
    "rho",
    "train_loss",
    "train_error",
    "test_loss",
    "test_error",
    "grad_norm",
    "wall_time_s",
)


def versions() -> dict[str, str]:
    """Versions of what determines a run's numbers, for the record."""
    import hydra
    import numpy
    import torch
    import torchvision

    found = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
    }
    try:  # from its metadata: importing timm to read its version would cost every cell seconds
        found["timm"] = importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        pass
    if torch.cuda.is_available():
        found["cuda"] = str(torch.version.cuda)
        found["gpu"] = torch.cuda.get_device_name()
    return found


def git_commit(directory: Path | None = None) -> str | None:
    """The project's commit (with `+dirty` when the tree has changes), or None outside git."""
    where = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def config_container(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain data, without Hydra's own node."""
    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = dict(cfg)
    data.pop("hydra", None)
    return data


def build_record(
    cfg: DictConfig,
    status: str,
    *,
    metrics: Mapping[str, Any] | None = None,
    sharpness: Mapping[str, Any] | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    wall_time_s: float | None = None,
    precision: str | None = None,
    error: str | None = None,
    diverged_at_step: int | None = None,
) -> dict[str, Any]:
    """The `result.json` record of one run (see docs/architecture.md)."""
    from runner.sweep.identity import identity_in_app

    metrics = metrics or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "experiment": cfg.experiment_name,
        "dataset": cfg.dataset.name,
        "model": cfg.model.name,
        "optimizer": cfg.optimizer.name,
        "schedule": cfg.schedule.name,
        "seed": int(cfg.seed),
        "variant": str(cfg.get("variant") or ""),
        "variant_values": identity_in_app(cfg).values,
        "test_error": metrics.get("test_error"),
        "test_loss": metrics.get("test_loss"),
        "train_error": metrics.get("train_error"),
        "train_loss": metrics.get("train_loss"),
        "sharpness": dict(sharpness or {}),
        "epochs": epochs,
        "steps": steps,
        "wall_time_s": wall_time_s,
        "precision": precision,
        "config": config_container(cfg),
        "versions": versions(),
        "git_commit": git_commit(),
        "error": error,
        "diverged_at_step": diverged_at_step,
    }


def write_result(run_dir: Path, record: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / RESULT_FILE
    atomic_write_json(path, record)
    return path


def write_metrics(run_dir: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rewrite metrics.csv from all epochs so far (a few hundred rows: rewriting keeps it atomic)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key)) for key in METRICS_COLUMNS})
    atomic_write_text(Path(run_dir) / METRICS_FILE, buffer.getvalue())
