"""The perturbation ball of a sharpness measure: ascent steps, projections and random points.

Perturbations are stored in scaled coordinates u, with the weight perturbation
delta = s * u, where s = |w| elementwise for an adaptive ball and s = 1
otherwise. In u every ball is a plain one: the adaptive l_inf ball
|delta_i| <= rho |w_i| is the box |u_i| <= rho, and the adaptive l_2 ball, the
ellipsoid ||delta / |w|||_2 <= rho, is the sphere ||u||_2 <= rho. Adaptive
sharpness is thus plain sharpness of the reparametrised loss u -> L(w + |w| u)
(Kwon et al. 2021), and the ascent works on that loss: its gradient is
|w| * g, its l_2 step is |w| g / |||w| g||, its projection onto the ellipsoid
is the radial one in u. This differs from the research code's adaptive l_2
step (|w| g / ||g|| in delta, then the Euclidean projection of delta onto the
ellipsoid): that pair stops where |w| g is normal to the ellipsoid, i.e. where
g is parallel to delta / |w|^3, not at the maximiser (g parallel to
delta / w^2), and on a quadratic it stalls below the closed-form value. The
l_inf steps agree with the research code's exactly (sign(|w| g) = sign(g)).

Every operation works on lists of tensors with torch's foreach kernels (one
launch for all parameters on a GPU), keeps each parameter's memory layout
(channels_last weights included) and never synchronises with the host.
"""

from __future__ import annotations

import torch

_TINY = 1e-12  # guards divisions by a zero gradient norm


def global_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The l2 norm of all tensors together, as a 0-dim tensor on their device."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


class Ball:
    """An l_inf or l_2 ball of radius rho, plain or scaled by |w| (adaptive), in u coordinates."""

    def __init__(self, ball: str, rho: float, anchors: list[torch.Tensor], adaptive: bool) -> None:
        if ball not in ("linf", "l2"):
            raise ValueError(f"ball={ball!r} must be 'linf' or 'l2'")
        self.kind = ball
        self.rho = float(rho)
        self.adaptive = bool(adaptive)
        # delta = scales * u; None stands for ones (no multiplication at all).
        self.scales = torch._foreach_abs(anchors) if adaptive else None
        self._numels = [t.numel() for t in anchors]

    # -- moves -----------------------------------------------------------------------------------
    def ascent_(
        self, out: list[torch.Tensor], u: list[torch.Tensor], grads: list[torch.Tensor], step: torch.Tensor
    ) -> None:
        """out <- project(u + step * direction), the steepest ascent step in u.

        Direction: sign(g) for l_inf (|w| > 0 does not change a sign), and
        (s g) / ||s g|| for l_2, where s g is the gradient with respect to u.
        `step` is a 0-dim tensor so the step size schedule can change it on the device.
        """
        torch._foreach_copy_(out, grads)
        if self.kind == "linf":
            torch._foreach_sign_(out)
            torch._foreach_mul_(out, step)
        else:
            if self.scales is not None:
                torch._foreach_mul_(out, self.scales)
            torch._foreach_mul_(out, step / global_norm(out).clamp_min(_TINY))
        torch._foreach_add_(out, u)
        self.project_(out)

    def project_(self, u: list[torch.Tensor]) -> None:
        """Project u onto the ball in place (onto the box, or radially onto the sphere)."""
        if self.kind == "linf":
            torch._foreach_clamp_min_(u, -self.rho)
            torch._foreach_clamp_max_(u, self.rho)
        else:
            norm = global_norm(u)
            torch._foreach_mul_(u, torch.where(norm > self.rho, self.rho / norm, torch.ones_like(norm)))

    # -- points ----------------------------------------------------------------------------------
    def random_point_(self, u: list[torch.Tensor], generator: torch.Generator) -> None:
        """u <- a uniformly random point of the ball (a random start)."""
        flat = self._random_flat(u, generator)
        if self.kind == "l2":
            # Uniform in the ball: a Gaussian direction, radius rho * U^(1/d).
            radius = self.rho * torch.rand((), generator=generator, device=flat.device).pow(1.0 / flat.numel())
            flat.mul_(radius / torch.linalg.vector_norm(flat).clamp_min(_TINY))
        self._scatter(u, flat)

    def random_noise_(self, u: list[torch.Tensor], generator: torch.Generator) -> None:
        """u <- average-case noise: N(0, rho^2) per coordinate (l_2) or uniform in [-rho, rho] (l_inf).

        These are the research code's noise models; with `apply_` they are scaled
        by |w| when adaptive. The Gaussian's norm is about rho * sqrt(d): rho is a
        per-coordinate scale here, not a radius.
        """
        self._scatter(u, self._random_flat(u, generator))

    def _random_flat(self, u: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """Uniform in [-rho, rho] (l_inf) or N(0, rho^2) (l_2) per coordinate, for all parameters at once."""
        flat = torch.empty(sum(self._numels), dtype=u[0].dtype, device=u[0].device)
        if self.kind == "linf":
            return flat.uniform_(-self.rho, self.rho, generator=generator)
        return flat.normal_(0.0, self.rho, generator=generator)

    def _scatter(self, u: list[torch.Tensor], flat: torch.Tensor) -> None:
        pieces = [piece.view(t.shape) for piece, t in zip(flat.split(self._numels), u)]
        torch._foreach_copy_(u, pieces)

    def apply_(self, work: list[torch.Tensor], anchors: list[torch.Tensor], u: list[torch.Tensor]) -> None:
        """work <- anchors + s * u: the perturbed weights, written into the parameters' storage."""
        torch._foreach_copy_(work, anchors)
        if self.scales is None:
            torch._foreach_add_(work, u)
        else:
            torch._foreach_addcmul_(work, self.scales, u)
