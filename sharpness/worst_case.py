"""Worst-case m-sharpness: the largest loss increase within a ball around the weights, by auto-PGD.

For each batch of m examples the loss is maximised over perturbations delta in
the ball (l_inf or l_2, plain or scaled by |w|) with the weight-space auto-PGD of
Andriushchenko et al. (2023), whose code the paper used:

- start at delta = 0 (or a random point of the ball), step size 2 * rho;
- z = project(delta_k + step * direction(g_k)), then the momentum average
  delta_{k+1} = 0.75 * z + 0.25 * delta_{k-1} (the research code's form; it
  stays in the ball because the ball is convex);
- at checkpoints (after 22% of the iterations, then at intervals shrinking by
  3% down to 6%) the step is halved when fewer than 75% of the iterations since
  the last checkpoint improved the best loss, or when neither the step nor the
  best loss changed since then; a halving restarts from the best point found,
  perturbation and gradient both (the research code reloaded the best weights
  but kept stepping from the last perturbation).

Sharpness = mean over batches of (highest loss found - unperturbed loss).

Speed: the loss that decides whether an iterate improved comes from the same
forward pass as the gradient for the next step, so one iteration is one
forward-backward pass (the research code runs an extra forward to evaluate),
and the last iteration is a forward pass alone. Best point, step size and
checkpoint decisions live on the device (`torch.where`, 0/1 blends), so the
loop never waits for the GPU; the host reads one number per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .ball import Ball
from .model_state import BorrowedModel
from .objective import Objective

MOMENTUM = 0.75  # weight of the new projected point; 0.25 stays on the iterate before last
MIN_UPDATE_RATIO = 0.75  # fraction of iterations that must improve the best loss between checkpoints
STEP_SCALE = 2.0  # initial step size in units of rho


def checkpoints(iterations: int) -> list[int]:
    """0-based iterations after which auto-PGD decides whether to halve the step.

    p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); the
    checkpoints are ceil(p_j * iterations), computed with the research code's
    float arithmetic so both choose the same iterations.
    """
    fractions = [0.0, 0.22]
    points = [0, math.ceil(iterations * 0.22)]
    while points[-1] < iterations and points[-1] != points[-2]:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
        points.append(math.ceil(fractions[-1] * iterations))
    return sorted({point for point in points[1:] if point < iterations})


def _take_where(dest: list[torch.Tensor], source: list[torch.Tensor], condition: torch.Tensor) -> None:
    """dest <- source if the 0-dim bool `condition` holds, else dest unchanged; on the device, exactly.

    dest * (1 - c) + source * c with c in {0, 1} reproduces either operand bit
    for bit. (torch's foreach lerp takes its weight as a host number, so a
    tensor weight would be read back, a synchronisation per iteration.)
    """
    c = condition.float()
    torch._foreach_mul_(dest, 1.0 - c)
    torch._foreach_add_(dest, torch._foreach_mul(source, c))


class _Buffers:
    """Perturbation buffers allocated once per measure and reused for every batch and restart."""

    def __init__(self, anchors: list[torch.Tensor]) -> None:
        def zeros() -> list[torch.Tensor]:
            return [torch.zeros_like(a) for a in anchors]

        self.current, self.previous, self.spare, self.best = zeros(), zeros(), zeros(), zeros()
        self.best_grad = zeros()

    def rotate(self) -> None:
        """After an ascent step wrote `spare`: previous <- current <- spare, recycling the oldest."""
        self.previous, self.current, self.spare = self.current, self.spare, self.previous


def _ascend(
    objective: Objective,
    model: BorrowedModel,
    ball: Ball,
    buffers: _Buffers,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: dict[str, Any],
    generator: torch.Generator,
    clean: tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One restart of auto-PGD on one batch: (highest loss, its error), as device tensors."""
    work = [p.data for p in model.params]
    clean_loss, clean_error, clean_grad = clean
    rho, iterations = settings["rho"], settings["iterations"]
    checks = set(checkpoints(iterations))

    # The best point starts at delta = 0, which lies in every ball.
    best, best_error = clean_loss.clone(), clean_error.clone()
    torch._foreach_zero_(buffers.best)
    torch._foreach_copy_(buffers.best_grad, clean_grad)
    if settings["random_start"]:
        ball.random_point_(buffers.current, generator)
        ball.apply_(work, model.anchors, buffers.current)
        loss, error, grad = objective.value_and_grad(x, y)
        improved = loss > best
        best, best_error = torch.where(improved, loss, best), torch.where(improved, error, best_error)
        _take_where(buffers.best, buffers.current, improved)
        _take_where(buffers.best_grad, grad, improved)
    else:
        torch._foreach_zero_(buffers.current)
        grad = clean_grad
    torch._foreach_copy_(buffers.previous, buffers.current)

    step = torch.full((), STEP_SCALE * rho, device=best.device)
    last_step, last_best = step.clone(), best.clone()
    updates = torch.zeros((), dtype=torch.int64, device=best.device)
    last_check = 0
    for i in range(iterations):
        ball.ascent_(buffers.spare, buffers.current, grad, step)  # z, projected
        torch._foreach_mul_(buffers.spare, MOMENTUM)
        torch._foreach_add_(buffers.spare, buffers.previous, alpha=1.0 - MOMENTUM)
        buffers.rotate()
        ball.apply_(work, model.anchors, buffers.current)
        final = i == iterations - 1
        if final:  # no further step: the loss alone
            loss, error = objective.value(x, y)
        else:  # this evaluation's gradient drives the next step
            loss, error, grad = objective.value_and_grad(x, y)
        improved = loss > best
        updates += improved
        best, best_error = torch.where(improved, loss, best), torch.where(improved, error, best_error)
        _take_where(buffers.best, buffers.current, improved)
        if not final:
            _take_where(buffers.best_grad, grad, improved)
        if i in checks and not final:
            halve = (updates < MIN_UPDATE_RATIO * (i - last_check)) | ((last_step == step) & (last_best == best))
            last_step, last_best, last_check = step, best, i
            updates = torch.zeros_like(updates)
            step = torch.where(halve, step * 0.5, step)
            # Restart from the best point: perturbation, its predecessor (no momentum across a restart), gradient.
            _take_where(buffers.current, buffers.best, halve)
            _take_where(buffers.previous, buffers.best, halve)
            _take_where(grad, buffers.best_grad, halve)
    return best, best_error


def worst_case_sharpness(
    objective: Objective,
    model: BorrowedModel,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    settings: dict[str, Any],
    generator: torch.Generator,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Mean over batches of (highest loss in the ball - unperturbed loss), with the error increase."""
    ball = Ball(settings["ball"], settings["rho"], model.anchors, settings["adaptive"])
    buffers = _Buffers(model.anchors)
    work = [p.data for p in model.params]
    increases, error_increases, clean_losses, clean_errors = [], [], [], []
    for index, (x, y) in enumerate(batches):
        torch._foreach_copy_(work, model.anchors)
        clean = objective.value_and_grad(x, y)
        best, best_error = clean[0], clean[1]
        for _ in range(settings["restarts"]):
            loss, error = _ascend(objective, model, ball, buffers, x, y, settings, generator, clean)
            better = loss > best
            best, best_error = torch.where(better, loss, best), torch.where(better, error, best_error)
        increases.append(best - clean[0])
        error_increases.append(best_error - clean[1])
        clean_losses.append(clean[0])
        clean_errors.append(clean[1])
        if report is not None:  # reading the value waits for the device: only when asked
            report(
                f"batch {index + 1}/{len(batches)}: loss increase {increases[-1].item():.6g}, "
                f"error increase {error_increases[-1].item():+.3g}%"
            )
    model.reset()
    return summarize(increases, error_increases, clean_losses, clean_errors)


def summarize(
    increases: list[torch.Tensor],
    error_increases: list[torch.Tensor],
    clean_losses: list[torch.Tensor],
    clean_errors: list[torch.Tensor],
) -> dict[str, Any]:
    """Per-batch device values -> the record's numbers, with one transfer to the host."""
    table = (
        torch.stack(
            [torch.stack(increases), torch.stack(error_increases), torch.stack(clean_losses), torch.stack(clean_errors)]
        )
        .double()
        .cpu()
    )
    values = table[0]
    count = values.numel()
    std_error = (values.std(unbiased=True) / math.sqrt(count)).item() if count > 1 else None

    def number(row: torch.Tensor) -> float | None:
        mean = row.mean().item()
        return None if math.isnan(mean) else mean

    return {
        "value": values.mean().item(),
        "std_error": std_error,
        "error_increase": number(table[1]),
        "loss": number(table[2]),
        "error": number(table[3]),
        "batches": count,
    }
