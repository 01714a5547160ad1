"""An lr policy: the multiplier decays geometrically from 1 to `min_lr_ratio` over training."""

from __future__ import annotations


def exponential(progress: float, min_lr_ratio: float) -> float:
    """`min_lr_ratio ** progress`: 1 at the first step after the warm-up, `min_lr_ratio` at the last."""
    return min_lr_ratio**progress
