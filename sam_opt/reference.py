"""SAM and GSAM as the papers state them: the specification `sam_opt.SAM` and `sam_opt.GSAM` are tested against.

No speed work here: one tensor at a time, copies wherever they make the formula
plain, Python numbers where the fast path keeps tensors on the device. Read this
first, next to the papers; tests/test_sam_opt_reference.py checks that the fast
classes take the same steps (plain and adaptive, SGD with momentum and AdamW).
Left out, because they do not change the formulas: param groups with different
rho, BatchNorm freezing, DDP, GradScaler, clipping (see docs/sam_opt.md).

SAM (Foret et al., 2021, eq. 2 with p = 2, and Algorithm 1), with g = grad L(w):

    e = rho * g / ||g||                          (the ascent step, to the edge of the rho-ball)
    w <- base_step(w, grad L(w + e))             (the gradient taken at w + e, applied at w)

Adaptive SAM (ASAM, Kwon et al., 2021, Algorithm 1), T = diag(|w| + eta):

    e = rho * T^2 g / ||T g||

GSAM (Zhuang et al., 2022, Algorithm 1), with g_p = grad L(w + e):

    g_par  = (<g, g_p> / ||g_p||^2) * g_p        (the part of g along g_p)
    g_perp = g - g_par                           (the part of g orthogonal to g_p)
    w <- base_step(w, g_p - alpha * g_perp)      (descend L_p, and ascend L along g_perp to close the gap)

Norms and inner products run over all parameters together. The 1e-12 next to
||T g|| guards a zero gradient, as in the fast path; ||g_p|| = 0 gives g_par = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

EPSILON = 1e-12


class ReferenceSAM:
    """SAM (adaptive: ASAM) around a base optimizer class; `step(closure)` as for `sam_opt.SAM`.

    The closure computes the loss, calls backward on it and returns it.
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.0,
        **base_kwargs: Any,
    ) -> None:
        self.params = list(params)
        self.base_optimizer = base_optimizer(self.params, **base_kwargs)
        self.rho, self.adaptive, self.eta = rho, adaptive, eta

    def gradients(self, closure: Callable[[], Tensor]) -> tuple[Tensor, list[Tensor]]:
        """(loss, its gradient with respect to every parameter), from fresh gradients."""
        for w in self.params:
            w.grad = None
        with torch.enable_grad():
            loss = closure()
        return loss, [torch.zeros_like(w) if w.grad is None else w.grad.clone() for w in self.params]

    def perturbation(self, g: list[Tensor]) -> list[Tensor]:
        """e = rho * T^2 g / ||T g||, with T = |w| + eta when adaptive and T = 1 otherwise."""
        t = [w.detach().abs() + self.eta if self.adaptive else torch.ones_like(w) for w in self.params]
        norm = sum(((t_i * g_i) ** 2).sum() for t_i, g_i in zip(t, g)).sqrt().item()
        return [self.rho * t_i**2 * g_i / (norm + EPSILON) for t_i, g_i in zip(t, g)]

    def direction(self, g: list[Tensor], g_p: list[Tensor]) -> list[Tensor]:
        """SAM updates with the gradient at w + e alone."""
        return g_p

    def step(self, closure: Callable[[], Tensor]) -> Tensor:
        """One step; returns the loss at w."""
        loss, g = self.gradients(closure)
        w_saved = [w.detach().clone() for w in self.params]
        e = self.perturbation(g)
        with torch.no_grad():
            for w, e_i in zip(self.params, e):
                w.add_(e_i)  # w + e
        _, g_p = self.gradients(closure)
        with torch.no_grad():
            for w, w_i in zip(self.params, w_saved):
                w.copy_(w_i)  # back to w
        for w, d_i in zip(self.params, self.direction(g, g_p)):
            w.grad = d_i
        self.base_optimizer.step()
        return loss


class ReferenceGSAM(ReferenceSAM):
    """GSAM: SAM's perturbation, and the update direction g_p - alpha * g_perp."""

    def __init__(
        self,
        params: Iterable[Tensor],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        alpha: float = 0.02,
        adaptive: bool = False,
        eta: float = 0.0,
        **base_kwargs: Any,
    ) -> None:
        super().__init__(params, base_optimizer, rho, adaptive, eta, **base_kwargs)
        self.alpha = alpha

    def direction(self, g: list[Tensor], g_p: list[Tensor]) -> list[Tensor]:
        """d = g_p - alpha * (g - c g_p), c = <g, g_p> / ||g_p||^2 (0 when g_p = 0)."""
        inner = sum((g_i * gp_i).sum() for g_i, gp_i in zip(g, g_p)).item()
        g_p_squared = sum((gp_i**2).sum() for gp_i in g_p).item()
        c = inner / g_p_squared if g_p_squared > 0 else 0.0
        g_perp = [g_i - c * gp_i for g_i, gp_i in zip(g, g_p)]
        return [gp_i - self.alpha * perp_i for gp_i, perp_i in zip(g_p, g_perp)]
