"""ExtraSAM: SAM that steps beyond the perturbed gradient, d = g_p + gamma * (g_p - g).

g_p - g is (to first order) rho times the Hessian applied to the normalised gradient, so gamma
adds that much more curvature to the step: gamma = 0 is SAM, gamma > 0 penalises sharp
directions harder. The direction is linear in g and g_p, so it works with a GradScaler.
Only the two hooks of docs/sam_opt.md change; everything else is `sam_opt.SAM`'s.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from sam_opt import SAM
from sam_opt.perturbation import Perturbation


class ExtraSAM(SAM):
    """SAM with the extrapolated direction g_p + gamma (g_p - g); `gamma` lives in every param group."""

    def __init__(
        self,
        params: Any,
        base_optimizer: Any,
        rho: float = 0.05,
        gamma: float = 0.5,
        adaptive: bool = False,
        eta: float = 0.0,
        *,
        model: Any = None,
        max_grad_norm: float | None = None,
        exact_restore: bool = False,
        **base_kwargs: Any,
    ) -> None:
        hyperparameters = {"rho": rho, "gamma": gamma, "adaptive": adaptive, "eta": eta}
        self._setup(params, base_optimizer, hyperparameters, model, max_grad_norm, exact_restore, base_kwargs)

    def _check_groups(self) -> None:
        super()._check_groups()
        for index, group in enumerate(self.param_groups):
            gamma = group["gamma"]
            number = isinstance(gamma, int | float) and not isinstance(gamma, bool)
            if not (number and math.isfinite(gamma) and gamma >= 0):
                raise ValueError(f"param_groups[{index}]['gamma'] must be a finite number >= 0, got {gamma!r}")

    def _keeps_first_gradients(self) -> bool:
        return any(group["gamma"] != 0 for group in self.param_groups)

    def _restore_and_combine(self, perturbation: Perturbation, second_grads: list[list[Tensor]]) -> None:
        perturbation.restore()  # first: restoring by subtraction may read g
        for bucket, grads in zip(perturbation.buckets, second_grads):
            if bucket.first_grads is None:  # gamma = 0 everywhere: SAM's direction
                continue
            gamma = bucket.group["gamma"]
            torch._foreach_mul_(grads, 1.0 + gamma)  # (1 + gamma) g_p
            torch._foreach_add_(grads, bucket.first_grads, alpha=-gamma)  # - gamma g
