"""Training schedules as pure functions of explicit counters.

The training loop reads `batch_size_at(epoch)` and `epoch_start_step(epoch)` at
the start of each epoch and calls `apply(optimizer, step)` before each optimizer
step, which sets every param group's lr (and, for GSAM's rho scheduler, rho)
from the values the group started with. Constant, increasing-batch, cosine and
linear schedules differ only in data (the stage list and the lr policy, a key of
`LR_POLICIES`), never in code paths, and a resumed run gets the same values as
an uninterrupted one because nothing here has state.

A `Schedule` built from a config trusts it: `runner.sweep.validate` has checked the
stages, the policy and the ratios at launch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# progress through the decay (0 after the warm-up, 1 at the last step), min_lr_ratio -> lr multiplier
LrPolicy = Callable[[float, float], float]


def _constant(progress: float, min_lr_ratio: float) -> float:
    return 1.0


def _cosine(progress: float, min_lr_ratio: float) -> float:
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(progress: float, min_lr_ratio: float) -> float:
    return 1.0 - (1.0 - min_lr_ratio) * progress


# The lr policies `schedule.lr_policy` may name; validation and `Schedule` both read this table.
# A read-only view: a user's package adds its own through `runner.sweep.registry.register_lr_policy`.
_POLICIES: dict[str, LrPolicy] = {
    "constant": _constant,
    "cosine": _cosine,
    "linear": _linear,
}
LR_POLICIES: Mapping[str, LrPolicy] = MappingProxyType(_POLICIES)


@dataclass(frozen=True)
class Stage:
    """A block of epochs trained with one batch size (the global batch, over all workers)."""

    batch_size: int
    epochs: int


class Schedule:
    """Batch size per epoch and the lr (and rho) multiplier per optimizer step.

    Steps per epoch depend on the stage's batch size (the last partial batch is
    dropped), so the step counter is mapped to epochs through the cumulative
    step count of every epoch, computed once.
    """

    def __init__(
        self,
        stages: Iterable[Stage],
        train_size: int,
        lr_policy: str = "constant",
        min_lr_ratio: float = 0.01,
        warmup_epochs: int = 0,
        warmup_start_ratio: float = 0.01,
        rho_follows_lr: bool = False,
    ) -> None:
        if lr_policy not in LR_POLICIES:  # the one check kept: the name is looked up here anyway
            raise ValueError(f"schedule.lr_policy={lr_policy!r} is not one of {', '.join(LR_POLICIES)}")
        self.stages = tuple(stages)
        self.train_size = train_size
        self.lr_policy = lr_policy
        self._decay = LR_POLICIES[lr_policy]
        self.min_lr_ratio = min_lr_ratio
        self.warmup_start_ratio = warmup_start_ratio
        self.rho_follows_lr = rho_follows_lr

        # epoch -> stage index, and the global step at which each epoch starts.
        self._epoch_stage: list[int] = []
        for index, stage in enumerate(self.stages):
            self._epoch_stage.extend([index] * stage.epochs)
        self._epoch_start_step = [0]
        for epoch in range(self.epochs):
            self._epoch_start_step.append(self._epoch_start_step[-1] + self.steps_in_epoch(epoch))
        self.warmup_steps = self._epoch_start_step[warmup_epochs]

    @classmethod
    def from_config(cls, schedule_cfg: Mapping[str, Any], train_size: int) -> Schedule:
        """Build from a `schedule/` config option (stages already resolved); its YAML holds every value."""
        stages = [Stage(int(s["batch_size"]), int(s["epochs"])) for s in schedule_cfg["stages"]]
        return cls(
            stages,
            train_size=train_size,
            lr_policy=str(schedule_cfg["lr_policy"]),
            min_lr_ratio=float(schedule_cfg["min_lr_ratio"]),
            warmup_epochs=int(schedule_cfg["warmup_epochs"]),
            warmup_start_ratio=float(schedule_cfg["warmup_start_ratio"]),
            rho_follows_lr=bool(schedule_cfg["rho_follows_lr"]),
        )

    @property
    def epochs(self) -> int:
        return len(self._epoch_stage)

    @property
    def total_steps(self) -> int:
        return self._epoch_start_step[-1]

    def stage_at(self, epoch: int) -> int:
        """Index of the stage that trains `epoch` (0-based)."""
        return self._epoch_stage[epoch]

    def batch_size_at(self, epoch: int) -> int:
        return self.stages[self.stage_at(epoch)].batch_size

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimizer steps in `epoch`: full batches only, as the protocol drops the last partial one."""
        return self.train_size // self.batch_size_at(epoch)

    def epoch_start_step(self, epoch: int) -> int:
        """The global step at which `epoch` starts (`epoch == epochs` gives `total_steps`)."""
        return self._epoch_start_step[epoch]

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak lr at optimizer step `step` (0-based): the linear warm-up, then the policy."""
        if step < self.warmup_steps:
            progress = step / self.warmup_steps
            return self.warmup_start_ratio + (1.0 - self.warmup_start_ratio) * progress
        decay_steps = max(self.total_steps - self.warmup_steps - 1, 1)
        return self._decay(min((step - self.warmup_steps) / decay_steps, 1.0), self.min_lr_ratio)

    def apply(self, optimizer: Any, step: int) -> None:
        """Set every param group's lr for `step` from the value it started with; rho too when it follows the lr."""
        factor = self.lr_factor(step)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
            if "rho" in group and self.rho_follows_lr:
                group["rho"] = group["initial_rho"] * factor


def remember_initial_values(optimizer: Any) -> None:
    """Store each group's peak lr and rho, which `Schedule.apply` scales (kept by state_dict)."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        if "rho" in group:
            group.setdefault("initial_rho", group["rho"])
