"""Building or adopting the base optimizer that SAM/GSAM wrap.

`base_optimizer` may be an optimizer already built over the same params, or a
class / `functools.partial` (what Hydra's `_partial_: true` gives) that is
called with the params and the remaining keyword arguments. Either way SAM then
shares the base's `param_groups` and `state`, so there is one source of truth
for lr, momentum buffers and SAM's own per-group settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sam_opt import validation

BaseOptimizer = torch.optim.Optimizer | Callable[..., torch.optim.Optimizer]


def build_base(
    params: list[Any],
    base_optimizer: BaseOptimizer,
    base_kwargs: dict[str, Any],
    sam_keys: tuple[str, ...],
) -> torch.optim.Optimizer:
    """The base optimizer: checked if given built, else built over `params` with `base_kwargs`."""
    if isinstance(base_optimizer, torch.optim.Optimizer):
        if base_kwargs:
            raise ValueError(
                f"keyword arguments {sorted(base_kwargs)} are for building the base optimizer, but "
                f"base_optimizer is already a {type(base_optimizer).__name__}; pass them to it instead"
            )
        groups = [item if isinstance(item, dict) else {"params": [item]} for item in params]
        flat = [param for group in groups for param in _as_list(group["params"])]
        validation.check_same_params(flat, base_optimizer)
        _copy_group_settings(groups, base_optimizer, sam_keys)
        return base_optimizer
    if not callable(base_optimizer):
        raise TypeError(f"base_optimizer must be an optimizer, a class or a partial, got {base_optimizer!r}")
    base = base_optimizer(params, **base_kwargs)
    if not isinstance(base, torch.optim.Optimizer):
        raise TypeError(f"base_optimizer(...) must build a torch.optim.Optimizer, got {type(base).__name__}")
    return base


def _as_list(params: Any) -> list[Tensor]:
    return [params] if isinstance(params, Tensor) else list(params)


def _copy_group_settings(groups: list[dict[str, Any]], base: torch.optim.Optimizer, keys: tuple[str, ...]) -> None:
    """Per-group rho/alpha given in SAM's params go to the matching groups of a prebuilt base."""
    settings = [{key: group[key] for key in keys if key in group} for group in groups]
    if not any(settings):
        return
    same_groups = len(groups) == len(base.param_groups) and all(
        [id(p) for p in _as_list(ours["params"])] == [id(p) for p in theirs["params"]]
        for ours, theirs in zip(groups, base.param_groups)
    )
    if not same_groups:
        raise ValueError(
            "per-group SAM settings in params need a base_optimizer built over the same param groups, "
            f"got {len(groups)} groups for SAM and {len(base.param_groups)} in the base optimizer"
        )
    for theirs, ours in zip(base.param_groups, settings):
        theirs.update(ours)
