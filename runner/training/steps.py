"""One epoch of training and one pass of evaluation, with the metrics kept on the device.

Every optimizer goes through the same step: `optimizer.step(closure)` with a
closure that runs the forward pass under autocast and the backward pass (SGD is
SAM with rho = 0, which calls it once). Losses, error counts and the first
non-finite step are accumulated in device tensors and read on the host once
per `check_every` steps and at the end of the epoch, so the GPU is never
stalled by a `.item()` inside the step. Those sums live in `EpochSums`, so an
epoch can stop after any step (a preemption) and continue later, in another
process, from a checkpoint of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from runner.training.schedule import Schedule

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Diverged(RuntimeError):
    """The training loss became non-finite at `step`."""

    def __init__(self, step: int) -> None:
        super().__init__(f"training loss became non-finite at step {step}")
        self.step = step


def resolve_precision(requested: str, device: torch.device) -> str:
    """`auto` is bf16 on CUDA (no loss scaling needed) and fp32 on the CPU."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return requested


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


@dataclass
class EpochStats:
    """Means over the epoch's training examples (errors in percent)."""

    loss: float
    error: float
    steps: int
    lr: float
    rho: float


@dataclass
class EpochSums:
    """The running sums of an epoch, kept on the device so that no step waits for the host.

    `loss` sums the per-example losses (float64), `errors` counts misclassified
    examples, `first_bad` is the first step whose loss was not finite (-1: none);
    `examples` and `steps` count what the epoch has seen so far. An epoch that
    stops early and continues from these sums (`train_steps`) ends with the
    same means as one trained in one go.
    """

    loss: torch.Tensor
    errors: torch.Tensor
    first_bad: torch.Tensor
    examples: int = 0
    steps: int = 0

    @classmethod
    def zeros(cls, device: torch.device) -> EpochSums:
        return cls(
            torch.zeros((), device=device, dtype=torch.float64),
            torch.zeros((), device=device, dtype=torch.int64),
            torch.full((), -1, device=device, dtype=torch.int64),
        )

    def state(self) -> dict[str, Any]:
        """The sums as a mid-epoch checkpoint stores them: CPU tensors and ints (weights-only loadable)."""
        return {
            "loss": self.loss.detach().cpu().clone(),
            "errors": self.errors.detach().cpu().clone(),
            "first_bad": self.first_bad.detach().cpu().clone(),
            "examples": int(self.examples),
            "steps": int(self.steps),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochSums:
        def tensor(key: str, dtype: torch.dtype) -> torch.Tensor:
            return state[key].to(device, dtype, copy=True)  # its own storage: the sums grow in place

        return cls(
            tensor("loss", torch.float64),
            tensor("errors", torch.int64),
            tensor("first_bad", torch.int64),
            int(state["examples"]),
            int(state["steps"]),
        )

    def stats(self, optimizer: torch.optim.Optimizer) -> EpochStats:
        """The epoch's means, with the lr and rho its last step used (reads the device once)."""
        group = optimizer.param_groups[0]
        return EpochStats(
            loss=float(self.loss) / max(self.examples, 1),
            error=100.0 * int(self.errors) / max(self.examples, 1),
            steps=self.steps,
            lr=float(group["lr"]),
            rho=float(group.get("rho", 0.0)),
        )


def _error_count(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    labels = target.argmax(dim=1) if target.ndim == 2 else target
    return (logits.argmax(dim=1) != labels).sum()


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _agreed_first_bad(first_bad: torch.Tensor) -> int:
    """The earliest non-finite step over all ranks (-1: none), so every rank stops together.

    A rank that stopped alone would leave the others waiting in their next collective.
    """
    return _agreed(first_bad, False)[0]


def _agreed(first_bad: torch.Tensor, stop: bool) -> tuple[int, bool]:
    """(the earliest non-finite step over all ranks or -1, whether any rank asks to stop), in one collective."""
    if not _distributed():
        return int(first_bad), stop
    never = torch.iinfo(torch.int64).max
    earliest = torch.where(first_bad < 0, torch.full_like(first_bad, never), first_bad)
    # MIN over [earliest, -stop]: the earliest bad step, and -1 when any rank asks to stop.
    votes = torch.stack([earliest, torch.full_like(earliest, -int(stop))])
    torch.distributed.all_reduce(votes, op=torch.distributed.ReduceOp.MIN)
    first, stopping = int(votes[0]), int(votes[1]) < 0
    return (-1 if first == never else first), stopping


def _training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    precision: str,
    device: torch.device,
    grad_scaler: torch.amp.GradScaler | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step on (x, y); returns the loss and the logits of its first forward pass."""
    first_logits: list[torch.Tensor] = []

    def closure() -> torch.Tensor:
        with autocast(precision, device):
            logits = model(x)
            loss = loss_fn(logits, y)
        if not first_logits:
            first_logits.append(logits.detach())
        (grad_scaler.scale(loss) if grad_scaler is not None else loss).backward()
        return loss

    if grad_scaler is not None:
        loss = optimizer.step(closure, grad_scaler=grad_scaler).detach()
        grad_scaler.update()
    else:
        loss = optimizer.step(closure).detach()
    return loss, first_logits[0]


def train_steps(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    sums: EpochSums,
    *,
    schedule: Schedule,
    first_step: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    precision: str,
    device: torch.device,
    channels_last: bool = False,
    batch_transform: Callable | None = None,
    check_every: int = 200,
    grad_scaler: torch.amp.GradScaler | None = None,
    stop: Callable[[], bool] | None = None,
) -> bool:
    """Train on `batches`, the rest of an epoch that starts at step `first_step`, adding to `sums`.

    `sums.steps` batches of the epoch are already behind; the schedule sets lr/rho
    for each step from its global number. `batch_transform` (e.g. mixup/cutmix)
    maps (x, y) to (x, soft targets); the training error is then measured against
    the dominant label. With fp16, `grad_scaler` scales the backward passes; the
    optimizer unscales, skips steps with inf/NaN gradients, and the scaler adapts
    after each step. Raises `Diverged` with the first step whose loss was not
    finite, looked at every `check_every` steps of the epoch and at its end.

    `stop()` is asked after every step (a Python flag, no host sync); when it says
    so, the epoch ends early and False is returned, with `sums` where the step
    left them. Under DDP the ranks agree on it at the divergence checks instead,
    so that all stop after the same step. Returns True at the epoch's end.
    """
    model.train()
    stop_here = stop if stop is not None and not _distributed() else None
    for x, y in batches:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if batch_transform is not None:
            x, y = batch_transform(x, y)
        step = first_step + sums.steps
        schedule.apply(optimizer, step)
        loss, logits = _training_step(
            model, optimizer, x, y, loss_fn=loss_fn, precision=precision, device=device, grad_scaler=grad_scaler
        )
        sums.loss += loss.double() * x.shape[0]
        sums.errors += _error_count(logits, y)
        bad = ~torch.isfinite(loss)
        sums.first_bad = torch.where(bad & (sums.first_bad < 0), torch.full_like(sums.first_bad, step), sums.first_bad)
        sums.examples += x.shape[0]
        sums.steps += 1
        if sums.steps % check_every == 0:
            first_bad, stopping = _agreed(sums.first_bad, stop is not None and stop())
            if first_bad >= 0:
                raise Diverged(first_bad)
            if stopping:
                return False
        elif stop_here is not None and stop_here():
            return False
    if _agreed_first_bad(sums.first_bad) >= 0:
        raise Diverged(_agreed_first_bad(sums.first_bad))
    return True


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    **options: Any,
) -> EpochStats:
    """One whole epoch from its first batch: `train_steps` from zero sums, and the epoch's means."""
    sums = EpochSums.zeros(device)
    train_steps(model, optimizer, batches, sums, device=device, **options)
    return sums.stats(optimizer)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    precision: str,
    device: torch.device,
    channels_last: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and top-1 error (%) over `batches`, in eval mode; the mode is restored."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    error_sum = torch.zeros((), device=device, dtype=torch.int64)
    examples = 0
    try:
        for x, y in batches:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                logits = model(x)
            loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum").double()
            error_sum += _error_count(logits, y)
            examples += x.shape[0]
    finally:
        model.train(was_training)
    return float(loss_sum) / max(examples, 1), 100.0 * int(error_sum) / max(examples, 1)


def full_gradient_norm(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
) -> float:
    """||grad f(w)|| of the mean training loss over `batches` (fixed examples, no augmentation).

    This is the quantity the paper's convergence theorems bound. BatchNorm uses
    batch statistics as in training, but its running statistics are left as they were.
    """
    from sam_opt import frozen_bn_stats

    params = [p for p in model.parameters() if p.requires_grad]
    totals = [torch.zeros_like(p) for p in params]
    examples = 0
    was_training = model.training
    model.train()
    try:
        with frozen_bn_stats(model):
            for x, y in batches:
                x, y = x.to(device), y.to(device)
                loss = nn.functional.cross_entropy(model(x).float(), y, reduction="sum")
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
                torch._foreach_add_(totals, grads)
                examples += x.shape[0]
    finally:
        model.train(was_training)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in totals]))
    return float(norm) / max(examples, 1)
