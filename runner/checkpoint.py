"""Epoch-end checkpoints that make a resumed run bitwise equal to an uninterrupted one (on the CPU).

A checkpoint holds everything the rest of the run depends on: weights and
buffers, the optimizer (base state such as momentum, and each group's lr/rho),
the position in the schedule, every RNG the run draws from, the metrics so far
and the config it was written under. The data order needs no state: the
pipelines derive each epoch's order from (seed, epoch).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from runner.io import atomic_torch_save

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel / DataParallel / torch.compile wrappers.

    The wrappers share the module's parameters, so its state_dict (without
    wrapper prefixes) is what checkpoints store and what measures perturb.
    """
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


@dataclass
class Progress:
    """Where a run stands: epochs finished, optimizer steps taken, and what it measured so far."""

    epoch: int = 0
    step: int = 0
    wall_time_s: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)


def _rng_states() -> dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    config: dict,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> Path:
    path = Path(run_dir) / CHECKPOINT_FILE
    atomic_torch_save(
        path,
        {
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": progress.epoch,
            "step": progress.step,
            "wall_time_s": progress.wall_time_s,
            "metrics": progress.metrics,
            "rng": _rng_states(),
            "config": config,
            "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,
        },
    )
    return path


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> Progress:
    """Restore model, optimizer, loss scale and RNGs from `path`; returns where to continue."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if grad_scaler is not None and state.get("grad_scaler"):
        grad_scaler.load_state_dict(state["grad_scaler"])
    _restore_rng_states(state["rng"])
    return Progress(state["epoch"], state["step"], state["wall_time_s"], list(state["metrics"]))


def checkpoint_config(path: Path) -> dict | None:
    """The config a checkpoint was written under (None when unreadable)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False).get("config")
    except Exception:  # a truncated or foreign file: treat as no checkpoint
        return None


def save_final_model(run_dir: Path, model: nn.Module) -> Path:
    path = Path(run_dir) / MODEL_FILE
    atomic_torch_save(path, unwrap(model).state_dict())
    return path
