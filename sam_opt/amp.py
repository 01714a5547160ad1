"""GradScaler plumbing for fp16 training: unscaling without a sync, and the guarded base step.

Both passes leave gradients multiplied by the scale S; e and GSAM's c do not
depend on S, so the optimizers work on scaled gradients and fold 1/S in only
where the absolute size matters (docs/sam_opt.md, "fp16 and the GradScaler").
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def active_scaler(grad_scaler: torch.amp.GradScaler | None) -> torch.amp.GradScaler | None:
    """The scaler when it is enabled, else None (a disabled scaler is the identity)."""
    if grad_scaler is None:
        return None
    if not isinstance(grad_scaler, torch.amp.GradScaler):
        raise TypeError(f"grad_scaler must be a torch.amp.GradScaler or None, got {type(grad_scaler).__name__}")
    return grad_scaler if grad_scaler.is_enabled() else None


def inverse_scale(grad_scaler: torch.amp.GradScaler, device: torch.device) -> torch.Tensor:
    """1/S as a 0-dim float32 tensor on `device`, read without a host sync.

    `GradScaler.scale` multiplies by the scale tensor on the device, so scaling
    a one gives S without `get_scale()` (which calls `.item()`). The reciprocal
    is taken in float64, as `GradScaler.unscale_` does.
    """
    scale = grad_scaler.scale(torch.ones((), dtype=torch.float32, device=device))
    return scale.reshape(()).double().reciprocal().float()


def guarded_step(
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler | None,
    clip: Callable[[], None] | None,
) -> None:
    """Clip (optional) and step `optimizer` on unscaled gradients, skipping on inf/NaN with a scaler.

    Without a scaler this is `clip(); optimizer.step()`. With one, the
    gradients are unscaled first (clipping needs true norms), and
    `GradScaler.step` skips the update when any gradient is not finite. That
    check reads one flag on the host for ordinary optimizers; a fused base
    optimizer (e.g. `torch.optim.SGD(..., fused=True)`) receives the flag as a
    tensor and skips on the device, with no sync at all.
    """
    if grad_scaler is None:
        if clip is not None:
            clip()
        optimizer.step()
        return
    if clip is not None:
        grad_scaler.unscale_(optimizer)
        clip()
    grad_scaler.step(optimizer)
