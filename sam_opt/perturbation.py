"""The first half of a SAM step: move the weights from w to w + e, and keep what undoes it.

    e = rho * T^2 g / (||T g|| + 1e-12),   T = diag(|w| + eta) if adaptive else I

The norm runs over all parameters of all groups; rho, adaptive and eta are
read per group; g itself is never modified. The way back to w is per bucket
either subtracting e or copying a saved w (16-bit weights, a GradScaler,
per-worker e under DDP); docs/sam_opt.md says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from sam_opt.foreach import add_scaled_, group_by_device_dtype, squared_norm, sum_on

EPSILON = 1e-12  # guards ||T g|| = 0 (the formula's constant)
GradientBucket = tuple[dict[str, Any], list[Tensor], list[Tensor]]  # (group, params, grads)


@dataclass
class Bucket:
    """Params of one group on one device with one dtype, as the first step left them.

    The weights were moved by e = shift_factor * shift (or e = shift when
    shift_factor is None); `backups` holds the weights at w when they are
    restored by copy instead. All three are None when rho = 0.
    """

    group: dict[str, Any]
    params: list[Tensor]
    backups: list[Tensor] | None
    shift: list[Tensor] | None
    shift_factor: Tensor | None
    first_grads: list[Tensor] | None  # g at w, unmodified, kept only when the direction needs it (GSAM)

    def restore(self, part: slice = slice(None)) -> None:
        """Move this bucket's weights (those in `part` of its list) back to w."""
        params = self.params[part]
        if self.backups is not None:
            torch._foreach_copy_(params, self.backups[part])
        elif self.shift is not None:
            if self.shift_factor is None:
                torch._foreach_sub_(params, self.shift[part])
            else:
                add_scaled_(params, self.shift[part], -self.shift_factor)  # -(f * g) is exactly the e added


@dataclass
class Perturbation:
    """What the second half of the step needs from the first."""

    buckets: list[Bucket]
    first_grad_sq: Tensor | None  # ||g||^2 over all buckets, when first_grads are kept
    overflow: Tensor | None  # 0-dim bool: the first pass' gradients were not finite (scaler only)

    def restore(self) -> None:
        """Put every moved weight back to w, by subtraction or by copy (docs/sam_opt.md says which when).

        Backwards, last tensor first: the base step that follows starts from the
        first tensors and so finds them still in cache.
        """
        with torch.no_grad():
            for bucket in reversed(self.buckets):
                bucket.restore(slice(None, None, -1))


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


def restores_by_copy(dtype: torch.dtype) -> bool:
    """Whether one rounding of `dtype` is too coarse to undo e by subtraction (16-bit and narrower)."""
    return torch.finfo(dtype).bits < 32


@torch.no_grad()
def perturb(
    buckets: list[GradientBucket],
    backups: BackupBuffers,
    *,
    keep_first_grads: bool,
    unscale: Tensor | None,
    exact_restore: bool,
) -> Perturbation:
    """Move the weights to w + e (per the module docstring) and clear their gradients.

    `unscale` is 1/S when the gradients carry a GradScaler's scale S: e is then
    computed from unscaled gradients, and a non-finite gradient norm is
    recorded as `overflow` so the step can be skipped later. `exact_restore`
    asks for restoring by copy in every bucket.
    """
    device = buckets[0][1][0].device
    weighted = [_weighted(group, params, grads) for group, params, grads in buckets]
    squares = [squared_norm(grads if pair is None else pair[1]) for (_, _, grads), pair in zip(buckets, weighted)]
    norm = sum_on(squares, device).sqrt()  # ||T g||
    overflow = None
    if unscale is not None:
        overflow = ~torch.isfinite(norm)
        norm = norm * unscale
        exact_restore = True  # an overflow makes e non-finite: only a copy brings w back
    denominator = norm + EPSILON

    kept, first_grad_squares = [], []
    for (group, params, grads), pair, square in zip(buckets, weighted, squares):
        moved, shift, factor = None, None, None
        if group["rho"] != 0:
            factor = group["rho"] / denominator
            if unscale is not None:
                factor = factor * unscale
            factor = factor.to(params[0].device, non_blocking=True)
            if exact_restore or restores_by_copy(params[0].dtype):
                moved = backups(params)
                torch._foreach_copy_(moved, params)
            if pair is None:
                add_scaled_(params, grads, factor)
                shift = grads
            else:
                weights, shift = pair
                torch._foreach_mul_(shift, weights)  # T g -> T^2 g
                torch._foreach_mul_(shift, factor)  # e itself
                torch._foreach_add_(params, shift)
                factor = None
            if moved is not None:
                shift, factor = None, None  # restored by copy: e is not needed again
        first_grads = None
        if keep_first_grads:
            first_grad_squares.append(square if pair is None else squared_norm(grads))
            first_grads = grads
        kept.append(Bucket(group, params, moved, shift, factor, first_grads))
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
