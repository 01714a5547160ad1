"""The first half of a SAM step: move the weights from w to w + e, and keep what undoes it.

    e = rho * T^2 g / (||T g|| + 1e-12),   T = diag(|w| + eta) if adaptive else I

The norm runs over all parameters of all groups; rho, adaptive and eta are
read per group. The weights at w are copied into persistent buffers and copied
back later, so the base step starts from w bit for bit (w + e - e would not,
and would be NaN after an fp16 overflow). For non-adaptive groups e is formed
in place in the gradient tensors (foreach kernels have no tensor-valued alpha
for w + factor * g, and their out= variants go through a temporary on the CPU);
GSAM, which needs g again, divides that factor back out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sam_opt.foreach import group_by_device_dtype, squared_norm, sum_on

EPSILON = 1e-12  # guards ||T g|| = 0 (the formula's constant)
GradientBucket = tuple[dict[str, Any], list[Tensor], list[Tensor]]  # (group, params, grads)


@dataclass
class Bucket:
    """Params of one group on one device with one dtype, as the first step left them."""

    group: dict[str, Any]
    params: list[Tensor]
    backups: list[Tensor] | None  # the weights at w; None when rho = 0 (weights not moved)
    first_grads: list[Tensor] | None  # g at w, kept only when the direction needs it (GSAM) ...
    first_grads_factor: Tensor | None  # ... multiplied by this factor when it became e in place


@dataclass
class Perturbation:
    """What the second half of the step needs from the first."""

    buckets: list[Bucket]
    first_grad_sq: Tensor | None  # ||g||^2 over all buckets, when first_grads are kept
    overflow: Tensor | None  # 0-dim bool: the first pass' gradients were not finite (scaler only)

    def restore(self) -> None:
        """Put every moved weight back to its value at w."""
        with torch.no_grad():
            for bucket in self.buckets:
                if bucket.backups is not None:
                    torch._foreach_copy_(bucket.params, bucket.backups)


class BackupBuffers:
    """One persistent buffer per parameter for the weights at w (fresh ones cost page faults on the CPU)."""

    def __init__(self) -> None:
        self._buffers: dict[Tensor, Tensor] = {}

    def __call__(self, params: list[Tensor]) -> list[Tensor]:
        backups = []
        for param in params:
            buffer = self._buffers.get(param)
            if buffer is None or _layout(buffer) != _layout(param):
                buffer = torch.empty_like(param)
                self._buffers[param] = buffer
            backups.append(buffer)
        return backups


def _layout(tensor: Tensor) -> tuple:
    return tensor.shape, tensor.dtype, tensor.device


def gradient_buckets(param_groups: list[dict[str, Any]]) -> list[GradientBucket]:
    """The params that have a gradient, per group and per (device, dtype)."""
    buckets = []
    for group in param_groups:
        params = [param for param in group["params"] if param.grad is not None]
        if any(param.grad.is_sparse for param in params):
            raise RuntimeError("SAM/GSAM do not support sparse gradients")
        for same_kind, grads in group_by_device_dtype(params, [param.grad for param in params]):
            buckets.append((group, same_kind, grads))
    return buckets


@torch.no_grad()
def perturb(
    buckets: list[GradientBucket],
    backups: BackupBuffers,
    *,
    keep_first_grads: bool,
    unscale: Tensor | None,
) -> Perturbation:
    """Move the weights to w + e (per the module docstring) and clear their gradients.

    `unscale` is 1/S when the gradients carry a GradScaler's scale S: e is then
    computed from unscaled gradients, and a non-finite gradient norm is
    recorded as `overflow` so the step can be skipped later.
    """
    device = buckets[0][1][0].device
    weighted = [_weighted(group, params, grads) for group, params, grads in buckets]
    squares = [squared_norm(grads if pair is None else pair[1]) for (_, _, grads), pair in zip(buckets, weighted)]
    norm = sum_on(squares, device).sqrt()  # ||T g||
    overflow = None
    if unscale is not None:
        overflow = ~torch.isfinite(norm)
        norm = norm * unscale
    denominator = norm + EPSILON

    kept, first_grad_squares = [], []
    for (group, params, grads), pair, square in zip(buckets, weighted, squares):
        moved, factor = None, None
        if group["rho"] != 0:
            factor = group["rho"] / denominator
            if unscale is not None:
                factor = factor * unscale
            factor = factor.to(params[0].device, non_blocking=True)
            moved = backups(params)
            torch._foreach_copy_(moved, params)
            if pair is None:
                torch._foreach_mul_(grads, factor)  # e = factor * g, in g's buffer
                torch._foreach_add_(params, grads)
            else:
                weights, shift = pair
                torch._foreach_mul_(shift, weights)  # T g -> T^2 g
                torch._foreach_mul_(shift, factor)
                torch._foreach_add_(params, shift)
                factor = None  # g itself was left untouched
        if keep_first_grads:
            first_grad_squares.append(square if pair is None else squared_norm(grads))
            kept.append(Bucket(group, params, moved, grads, factor))
        else:
            kept.append(Bucket(group, params, moved, None, None))
        for param in params:
            param.grad = None
    first_grad_sq = sum_on(first_grad_squares, device) if keep_first_grads else None
    return Perturbation(kept, first_grad_sq, overflow)


def _weighted(
    group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]] | None:
    """(T, T g) for an adaptive group, None otherwise (T = I)."""
    if not group["adaptive"]:
        return None
    weights = torch._foreach_abs(params)
    torch._foreach_add_(weights, group["eta"])
    return weights, torch._foreach_mul(grads, weights)
