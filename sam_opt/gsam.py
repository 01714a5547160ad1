"""GSAM (Zhuang et al., 2022): SAM plus one decomposition of the update direction.

With g the gradient at w and g_p the gradient at w + e (as in SAM):

    g_perp = g - c g_p,   c = <g, g_p> / ||g_p||^2
    d      = g_p - alpha g_perp = g_p (1 + alpha c) - alpha g

computed in place over g_p; on accelerators <g, g_p> comes from the
polarisation identity on s = g + g_p (docs/sam_opt.md, "GSAM's decomposition").
alpha = 0 is SAM exactly: such groups skip the decomposition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sam_opt import foreach
from sam_opt.base import BaseOptimizer
from sam_opt.foreach import sum_on
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
        exact_restore: bool = False,
        **base_kwargs: Any,
    ) -> None:
        hyperparameters = {"rho": rho, "alpha": alpha, "adaptive": adaptive, "eta": eta}
        self._setup(params, base_optimizer, hyperparameters, model, max_grad_norm, exact_restore, base_kwargs)

    def _keeps_first_gradients(self) -> bool:
        return any(group["alpha"] != 0 for group in self.param_groups)

    def _restore_and_combine(self, perturbation: Perturbation, second_grads: list[list[Tensor]]) -> None:
        buckets = perturbation.buckets
        if perturbation.first_grad_sq is None or all(bucket.group["alpha"] == 0 for bucket in buckets):
            perturbation.restore()
            return
        by_dot_product = all(foreach.fuses_per_tensor(grads[0].device) for grads in second_grads)
        parts = [foreach.cache_blocks(grads) for grads in second_grads]
        inner, second_sq = _restore_and_measure(perturbation, second_grads, parts, by_dot_product)
        offset = 0 if by_dot_product else 1  # d = g_p (1 + alpha c) - alpha g, or ... - alpha s
        # c = 0 when g_p = 0 (then g_perp = g), without a branch on a device value.
        coefficient = inner / second_sq.clamp_min(torch.finfo(second_sq.dtype).tiny)
        # Backwards, so the base step, which starts from the first tensors, finds them still in cache.
        for bucket, grads, bucket_parts in reversed(list(zip(buckets, second_grads, parts))):
            alpha = bucket.group["alpha"]
            if alpha == 0:
                continue
            factor = (1 + offset * alpha + alpha * coefficient).to(grads[0].device, non_blocking=True)
            for part in reversed(bucket_parts):
                torch._foreach_mul_(grads[part], factor)
                torch._foreach_add_(grads[part], bucket.first_grads[part], alpha=-alpha)


def _restore_and_measure(
    perturbation: Perturbation, second_grads: list[list[Tensor]], parts: list[list[slice]], by_dot_product: bool
) -> tuple[Tensor, Tensor]:
    """Move the weights back to w and return (<g, g_p>, ||g_p||^2), block by block.

    With `by_dot_product` False, g's buffers end up holding s = g + g_p (the
    polarisation identity, docs/sam_opt.md).
    """
    device = perturbation.first_grad_sq.device
    second_squares, products = [], []  # per bucket: ||g_p||^2, and <g, g_p> or ||s||^2
    for bucket, grads, bucket_parts in zip(perturbation.buckets, second_grads, parts):
        second_norms, pieces = [], []  # per tensor, reduced once per bucket
        for part in bucket_parts:
            bucket.restore(part)  # first: restoring by subtraction reads g, which the polarisation overwrites
            first, second = bucket.first_grads[part], grads[part]
            second_norms += foreach.norms(second)
            if by_dot_product:
                pieces += foreach.inner_products(first, second)
            else:
                torch._foreach_add_(first, second)  # s = g + g_p, in g's buffer
                pieces += foreach.norms(first)
        second_squares.append(foreach.sum_of_squares(second_norms))
        if by_dot_product:
            products.append(torch.cat(pieces).to(second_squares[-1].dtype).sum())
        else:
            products.append(foreach.sum_of_squares(pieces))
    second_sq = sum_on(second_squares, device)
    if by_dot_product:
        return sum_on(products, device), second_sq
    return (sum_on(products, device) - perturbation.first_grad_sq - second_sq) / 2, second_sq
