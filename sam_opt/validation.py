"""Checks of SAM/GSAM settings, raising one-line errors that name the value and the valid range.

Hyperparameters are checked when the optimizer is built and again at every
step, because schedules write `group["rho"]` (and `lr`, `alpha`) between steps.
The per-step check reads Python numbers only, never tensors, so it costs no
device sync.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

NONNEGATIVE_KEYS = ("rho", "alpha", "eta")


def check_nonnegative(name: str, value: Any) -> None:
    """`value` must be a finite real number >= 0 (a Python or NumPy number, not a tensor)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def check_max_grad_norm(value: Any) -> None:
    """`max_grad_norm` is None (no clipping) or a finite number > 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"max_grad_norm must be None or a finite number > 0, got {value!r}")


def check_group(group: dict[str, Any], where: str = "") -> None:
    """The SAM/GSAM hyperparameters of one param group; `where` prefixes the names ("param_groups[1]")."""
    for key in NONNEGATIVE_KEYS:
        if key in group:
            check_nonnegative(f"{where}['{key}']" if where else key, group[key])
    if not isinstance(group.get("adaptive", False), bool):
        name = f"{where}['adaptive']" if where else "adaptive"
        raise ValueError(f"{name} must be True or False, got {group['adaptive']!r}")


def check_same_params(ours: list[torch.Tensor], base: torch.optim.Optimizer) -> None:
    """A base optimizer instance must hold exactly the parameters given to SAM."""
    theirs = [id(param) for group in base.param_groups for param in group["params"]]
    if sorted(map(id, ours)) != sorted(theirs):
        shared = len(set(map(id, ours)) & set(theirs))
        raise ValueError(
            f"base_optimizer must be built over the same params as SAM/GSAM: SAM got {len(ours)} "
            f"tensors, {type(base).__name__} holds {len(theirs)}, {shared} in common"
        )
