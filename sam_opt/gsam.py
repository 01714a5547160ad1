"""GSAM (Zhuang et al., 2022): SAM plus one decomposition of the update direction.

With g the gradient at w and g_p the gradient at w + e (as in SAM), GSAM
removes from the update a multiple of the part of g orthogonal to g_p:

    g_perp = g - c g_p,   c = <g, g_p> / ||g_p||^2
    d      = g_p - alpha g_perp = g_p (1 + alpha c) - alpha g

Foreach kernels offer norms but no dot product, so the inner product comes
from the polarisation identity on s = g + g_p, formed in place in g's buffer:

    <g, g_p> = (||s||^2 - ||g||^2 - ||g_p||^2) / 2     (||g||^2 is left from the first step)
    d        = g_p (1 + alpha + alpha c) - alpha s        (the same d, written with s)

so the whole decomposition is three in-place passes (s, scale g_p, add s) and
two norms, with no temporary tensor and no materialised g_perp (plus one pass
dividing out the factor by which the first step turned g into e in place,
for non-adaptive groups). The error of c
this way is about float epsilon times ||g|| / ||g_p||, far below anything that
matters for d. alpha = 0 is SAM exactly: such groups skip the decomposition.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from sam_opt.base import BaseOptimizer
from sam_opt.foreach import squared_norm, sum_on
from sam_opt.perturbation import Perturbation
from sam_opt.sam import SAM


class GSAM(SAM):
    """Surrogate-gap guided SAM; `alpha` lives in every param group next to `rho`."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: BaseOptimizer,
        rho: float = 0.05,
        alpha: float = 0.02,
        adaptive: bool = False,
        eta: float = 0.0,
        *,
        model: nn.Module | None = None,
        max_grad_norm: float | None = None,
        **base_kwargs: Any,
    ) -> None:
        hyperparameters = {"rho": rho, "alpha": alpha, "adaptive": adaptive, "eta": eta}
        self._setup(params, base_optimizer, hyperparameters, model, max_grad_norm, base_kwargs)

    def _keeps_first_gradients(self) -> bool:
        return any(group["alpha"] != 0 for group in self.param_groups)

    def _combine_gradients(self, perturbation: Perturbation, second_grads: list[list[Tensor]]) -> None:
        buckets = perturbation.buckets
        if perturbation.first_grad_sq is None or all(bucket.group["alpha"] == 0 for bucket in buckets):
            return
        device = perturbation.first_grad_sq.device
        second_sq = sum_on([squared_norm(grads) for grads in second_grads], device)
        sum_squares = []
        for bucket, grads in zip(buckets, second_grads):
            sums = bucket.first_grads
            if bucket.first_grads_factor is not None:
                torch._foreach_div_(sums, bucket.first_grads_factor)  # first_step left e = factor * g here
            torch._foreach_add_(sums, grads)  # s = g + g_p, in g's buffer
            sum_squares.append(squared_norm(sums))
        inner = (sum_on(sum_squares, device) - perturbation.first_grad_sq - second_sq) / 2
        # c = 0 when g_p = 0 (then g_perp = g), without a branch on a device value.
        coefficient = inner / second_sq.clamp_min(torch.finfo(second_sq.dtype).tiny)
        for bucket, grads in zip(buckets, second_grads):
            alpha = bucket.group["alpha"]
            if alpha == 0:
                continue
            factor = (1 + alpha + alpha * coefficient).to(grads[0].device, non_blocking=True)
            torch._foreach_mul_(grads, factor)
            torch._foreach_add_(grads, bucket.first_grads, alpha=-alpha)
