"""The Python API: `measure`, one sharpness measure of a model on given batches.

Every measure runs on a borrowed model (eval mode, float32 working weights,
everything restored afterwards) under exact float32 arithmetic, and returns a
`SharpnessResult` whose `record()` is the entry stored under the measure's
name in result.json: `{"value": ..., other outputs..., settings...}`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from .kinds import KINDS
from .model_state import borrowed, model_device, unwrap
from .objective import LossFn, Objective
from .precision import float32_exact
from .settings import normalize

log = logging.getLogger(__name__)

Batches = list[tuple[torch.Tensor, torch.Tensor]]  # (inputs, targets) pairs, on the model's device


@dataclass(frozen=True)
class SharpnessResult:
    """One measure's outcome: its value, the other numbers it produced and the settings it ran with."""

    name: str
    value: float
    outputs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The JSON entry for result.json's `sharpness` object (NaN/inf, e.g. of a diverged model, become null)."""
        entry = {"value": self.value, **self.outputs, **self.settings}
        return {key: None if isinstance(v, float) and not math.isfinite(v) else v for key, v in entry.items()}


def _same_device(first: torch.device, second: torch.device) -> bool:
    if first.type != second.type:
        return False
    return first.index is None or second.index is None or first.index == second.index


def _prepare(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> Batches:
    prepared = []
    for x, y in batches:
        x = x.to(device)
        prepared.append((x.float() if x.is_floating_point() else x, y.to(device)))
    if not prepared:
        raise ValueError("no batches to measure on")
    return prepared


def measure(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    settings: Mapping[str, Any] | DictConfig,
    *,
    device: torch.device | str | None = None,
    name: str | None = None,
    loss_fn: LossFn | None = None,
    seed: int | None = None,
) -> SharpnessResult:
    """Compute one sharpness measure of `model` on `batches`; the model is returned unchanged.

    `settings` is one measure's mapping (missing keys take the defaults of its
    `kind`); `name` is the measure's name in logs, errors and the result (its
    key under `sharpness:`), the kind when not given; `device` defaults to the
    model's and must be where the model is; `loss_fn(outputs, targets)`
    defaults to cross-entropy; `seed` overrides `settings.seed` for the random
    starts and noise.
    """
    settings = normalize(name or str(dict(settings).get("kind")), settings)
    name = name or settings["kind"]
    model = unwrap(model)
    here = model_device(model)
    device = here if device is None else torch.device(device)
    if not _same_device(here, device):
        raise ValueError(f"the model is on {here} but device={device}; move the model first")
    data = _prepare(batches, here)
    report = (lambda line: log.info("sharpness %s: %s", name, line)) if settings["verbose"] else None
    start = time.perf_counter()
    with float32_exact(here.type), borrowed(model) as lent, torch.enable_grad():
        generator = torch.Generator(device=here).manual_seed(settings["seed"] if seed is None else int(seed))
        outputs = KINDS[settings["kind"]].measure(
            Objective(model, lent.params, loss_fn), lent, data, settings, generator, report
        )
    outputs["wall_time_s"] = round(time.perf_counter() - start, 3)
    value = float(outputs.pop("value"))
    log.info("sharpness %s = %.6g (%.1f s)", name, value, outputs["wall_time_s"])
    return SharpnessResult(name=name, value=value, outputs=outputs, settings=settings)
