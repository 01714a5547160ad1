"""The Python API: `measure` (one measure on given batches) and `measure_all` (what a run records).

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
from typing import Any, Callable

import torch
import torch.nn as nn
from omegaconf import DictConfig

from runner.checkpoint import unwrap

from .average_case import average_case_sharpness
from .examples import Batches, data_key, example_batches, mixed_seed
from .hessian import hessian_top_eigenvalue, hessian_trace
from .model_state import borrowed, is_channels_last, model_device
from .objective import LossFn, Objective
from .precision import float32_exact
from .settings import normalize, normalize_all
from .worst_case import worst_case_sharpness

log = logging.getLogger(__name__)

_MEASURES: dict[str, Callable[..., dict[str, Any]]] = {
    "worst_case": worst_case_sharpness,
    "average_case": average_case_sharpness,
    "hessian_eig": hessian_top_eigenvalue,
    "hessian_trace": hessian_trace,
}


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


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    return a.index is None or b.index is None or a.index == b.index


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
    `kind`); `device` defaults to the model's and must be where the model is;
    `loss_fn(outputs, targets)` defaults to cross-entropy; `seed` overrides
    `settings.seed` for the random starts and noise.
    """
    s = normalize(name or str(dict(settings).get("kind")), settings)
    name = name or s["kind"]
    model = unwrap(model)
    here = model_device(model)
    device = here if device is None else torch.device(device)
    if not _same_device(here, device):
        raise ValueError(f"the model is on {here} but device={device}; move the model first")
    data = _prepare(batches, here)
    report = (lambda line: log.info("sharpness %s: %s", name, line)) if s["verbose"] else None
    start = time.perf_counter()
    with float32_exact(here.type), borrowed(model) as lent, torch.enable_grad():
        generator = torch.Generator(device=here).manual_seed(s["seed"] if seed is None else int(seed))
        outputs = _MEASURES[s["kind"]](Objective(model, lent.params, loss_fn), lent, data, s, generator, report)
    outputs["wall_time_s"] = round(time.perf_counter() - start, 3)
    value = float(outputs.pop("value"))
    log.info("sharpness %s = %.6g (%.1f s)", name, value, outputs["wall_time_s"])
    return SharpnessResult(name=name, value=value, outputs=outputs, settings=s)


def measure_all(
    model: nn.Module,
    dataset_cfg: Mapping[str, Any] | DictConfig,
    sharpness_cfg: Mapping[str, Any] | DictConfig | None,
    *,
    device: torch.device | str,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Every measure of a run's `sharpness` config: `{name: record}` for result.json.

    All settings are checked and all example batches are built before the
    first measure starts, so a bad setting or too small a dataset fails before
    any work. The examples and random starts derive from (`seed`, the
    measure's `seed`).
    """
    measures = normalize_all(sharpness_cfg)
    channels_last = is_channels_last(unwrap(model))
    cache: dict[tuple, Batches] = {}
    for name, s in measures.items():
        key = data_key(s)
        if key not in cache:
            cache[key] = example_batches(dataset_cfg, s, name=name, device=device, seed=seed,
                                         channels_last=channels_last)
    return {
        name: measure(model, cache[data_key(s)], s, device=device, name=name,
                      seed=mixed_seed(seed, s["seed"])).record()
        for name, s in measures.items()
    }
