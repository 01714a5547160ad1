"""The objective every measure probes: the model's loss on one batch, its error and its gradient.

Kept apart from the measures so that they all evaluate the same quantity
(cross-entropy of the logits by default, the training loss without label
smoothing) and so that the gradient is taken with `torch.autograd.grad`, which
leaves the model's `.grad` fields alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Objective:
    """Loss (and top-1 error in percent) of `model` on a batch, as 0-dim tensors on the device."""

    def __init__(self, model: nn.Module, params: list[nn.Parameter], loss_fn: LossFn | None = None) -> None:
        self.model = model
        self.params = params
        self.loss_fn = loss_fn or F.cross_entropy

    def _loss_and_error(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(x)
        loss = self.loss_fn(outputs, y)
        if outputs.ndim == 2 and y.ndim == 1 and not y.is_floating_point():
            error = (outputs.detach().argmax(1) != y).float().mean() * 100.0
        else:  # not a classifier (e.g. a test's quadratic): no error rate
            error = torch.full((), math.nan, device=loss.device)
        return loss, error

    def value(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, error) without building a graph."""
        with torch.no_grad():
            loss, error = self._loss_and_error(x, y)
        return loss.detach().float(), error

    def value_and_grad(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(loss, error, gradient w.r.t. every parameter) from one forward-backward pass."""
        loss, error = self._loss_and_error(x, y)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
        return loss.detach().float(), error, grads

    def graph_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The loss with its graph, for Hessian-vector products (double backward)."""
        return self._loss_and_error(x, y)[0]
