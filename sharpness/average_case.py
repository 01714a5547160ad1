"""Average-case m-sharpness: the mean loss increase under random weight perturbations.

For each batch of m examples, `samples` perturbations are drawn, Gaussian
N(0, rho^2) per coordinate for `ball: l2` and uniform in [-rho, rho] for
`ball: linf` (the noise models of the research code), each scaled elementwise
by |w| when adaptive; the sharpness is the mean over batches and samples of
(perturbed loss - unperturbed loss). Forward passes only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .ball import Ball
from .model_state import BorrowedModel
from .objective import Objective
from .worst_case import summarize


def average_case_sharpness(
    objective: Objective,
    model: BorrowedModel,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    settings: dict[str, Any],
    generator: torch.Generator,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Mean loss increase under `samples` random perturbations per batch, with the error increase."""
    ball = Ball(settings["ball"], settings["rho"], model.anchors, settings["adaptive"])
    noise = [torch.zeros_like(a) for a in model.anchors]
    work = [p.data for p in model.params]
    increases, error_increases, clean_losses, clean_errors = [], [], [], []
    for index, (x, y) in enumerate(batches):
        torch._foreach_copy_(work, model.anchors)
        clean_loss, clean_error = objective.value(x, y)
        # Sum the increases, not the losses: no cancellation of large equal terms (and exactly 0 at rho = 0).
        loss_increase = torch.zeros_like(clean_loss)
        error_increase = torch.zeros_like(clean_error)
        for _ in range(settings["samples"]):
            ball.random_noise_(noise, generator)
            ball.apply_(work, model.anchors, noise)
            loss, error = objective.value(x, y)
            loss_increase += loss - clean_loss
            error_increase += error - clean_error
        increases.append(loss_increase / settings["samples"])
        error_increases.append(error_increase / settings["samples"])
        clean_losses.append(clean_loss)
        clean_errors.append(clean_error)
        if report is not None:
            report(f"batch {index + 1}/{len(batches)}: mean loss increase {increases[-1].item():.6g}")
    model.reset()
    return summarize(increases, error_increases, clean_losses, clean_errors)
