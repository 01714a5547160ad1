"""Curvature of the loss at the trained weights: the Hessian's top eigenvalue and its trace.

Both use Hessian-vector products by double backward (Pearlmutter's trick), so
the Hessian is never formed. H is the Hessian of the mean loss over all the
measured examples: each batch's product is weighted by its share of the
examples, so `batch_size` only bounds memory. Vectors are flat float32 tensors
over all parameters in their logical order.

- `hessian_eig`: power iteration from a seeded random vector until the
  Rayleigh quotient changes by less than `tolerance` (relative) or
  `iterations` products were taken. It finds the eigenvalue of largest
  magnitude, which at a trained minimum is the top one.
- `hessian_trace`: Hutchinson's estimator E[z^T H z] = trace(H) with
  Rademacher z, reported with the standard error of the mean of `samples`
  draws.

The attention kernels of torch's fused SDPA backends have no double backward,
so the math backend is selected while products are taken.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .model_state import BorrowedModel
from .objective import Objective


@contextlib.contextmanager
def _double_backward_attention() -> Iterator[None]:
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch: nothing to select
        yield
        return
    with sdpa_kernel([SDPBackend.MATH]):
        yield


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def hessian_vector_product(
    objective: Objective, batches: list[tuple[torch.Tensor, torch.Tensor]], vector: torch.Tensor
) -> torch.Tensor:
    """H v for the mean loss over all examples of `batches`, as a flat tensor."""
    params = objective.params
    total = sum(len(y) for _, y in batches)
    product = torch.zeros_like(vector)
    for x, y in batches:
        loss = objective.graph_loss(x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
        directional = torch.dot(_flat(grads), vector)
        second = torch.autograd.grad(directional, params, allow_unused=True)
        second = [torch.zeros_like(p) if g is None else g for p, g in zip(params, second)]
        product.add_(_flat(second), alpha=len(y) / total)
    return product


def _parameter_count(model: BorrowedModel) -> int:
    return sum(p.numel() for p in model.params)


def hessian_top_eigenvalue(
    objective: Objective,
    model: BorrowedModel,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    settings: dict[str, Any],
    generator: torch.Generator,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Power iteration on H; `value` is the Rayleigh quotient of the last iterate."""
    model.reset()
    device = model.anchors[0].device
    vector = torch.randn(_parameter_count(model), generator=generator, device=device)
    vector /= torch.linalg.vector_norm(vector)
    eigenvalue, converged, used = math.nan, False, 0
    with _double_backward_attention():
        for used in range(1, settings["iterations"] + 1):
            product = hessian_vector_product(objective, batches, vector)
            estimate = torch.dot(vector, product).item()  # the stopping rule needs it on the host
            if report is not None:
                report(f"iteration {used}: eigenvalue estimate {estimate:.6g}")
            previous, eigenvalue = eigenvalue, estimate
            if abs(eigenvalue - previous) <= settings["tolerance"] * abs(eigenvalue):
                converged = True
                break
            norm = torch.linalg.vector_norm(product)
            if norm.item() == 0.0:  # H v = 0: v is an eigenvector of eigenvalue 0
                converged = True
                break
            vector = product / norm
    return {"value": eigenvalue, "iterations_run": used, "converged": converged}


def hessian_trace(
    objective: Objective,
    model: BorrowedModel,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    settings: dict[str, Any],
    generator: torch.Generator,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Hutchinson's estimate of trace(H) with Rademacher vectors, and its standard error."""
    model.reset()
    device = model.anchors[0].device
    count = _parameter_count(model)
    draws = []
    with _double_backward_attention():
        for sample in range(settings["samples"]):
            z = torch.randint(0, 2, (count,), generator=generator, device=device).float().mul_(2).sub_(1)
            draws.append(torch.dot(z, hessian_vector_product(objective, batches, z)))
            if report is not None:
                report(f"sample {sample + 1}/{settings['samples']}: z^T H z = {draws[-1].item():.6g}")
    values = torch.stack(draws).double().cpu()
    return {
        "value": values.mean().item(),
        "std_error": (values.std(unbiased=True) / math.sqrt(values.numel())).item(),
    }
