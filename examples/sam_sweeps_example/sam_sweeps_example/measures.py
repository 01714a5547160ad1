"""First-order sharpness: rho * ||grad L(w)||_2 per batch, averaged over the batches.

It is what the worst-case l2 sharpness max_{||e|| <= rho} L(w + e) - L(w) becomes to first order
in rho, so it costs one backward pass per batch instead of an ascent; comparing it with
`worst_l2` shows where the linear picture stops holding. Its settings: `rho` (l2 radius, weight
units); the data settings (examples, batch_size, split, ...) are the ones every kind shares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sharpness import Kind


def first_order_sharpness(
    objective: Any,
    model: Any,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    settings: dict[str, Any],
    generator: torch.Generator,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """rho times the gradient norm of each batch's loss at the unperturbed weights, averaged."""
    values, norms = [], []
    for index, (x, y) in enumerate(batches):
        _, _, grads = objective.value_and_grad(x, y)
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        norms.append(norm)
        values.append(settings["rho"] * norm)
        if report is not None:
            report(f"batch {index + 1}/{len(batches)}: gradient norm {norm.item():.6g}")
    model.reset()
    stacked = torch.stack(values).double().cpu()
    return {"value": stacked.mean().item(), "grad_norm": torch.stack(norms).double().mean().item()}


# The registered kind: its function, its own settings with defaults, and m-sharpness batches.
FIRST_ORDER = Kind(first_order_sharpness, {"rho": 0.05}, equal_batches=True)
