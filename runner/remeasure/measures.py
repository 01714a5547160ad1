"""`measure_all`: every sharpness measure of a run's config, on examples of the run's dataset.

What the runner records under `"sharpness"` in result.json at the end of
training, and what `python -m sharpness` records when re-measuring a saved run.
It lives on the runner side because building the examples needs the data
layer; the measures themselves (`sharpness.measure`) take ready batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn
from omegaconf import DictConfig

from sharpness import Batches, measure
from sharpness.model_state import is_channels_last, unwrap
from sharpness.settings import normalize_all

from .examples import data_key, example_batches, mixed_seed


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
    for name, settings in measures.items():
        key = data_key(settings)
        if key not in cache:
            cache[key] = example_batches(
                dataset_cfg, settings, name=name, device=device, seed=seed, channels_last=channels_last
            )
    return {
        name: measure(
            model,
            cache[data_key(settings)],
            settings,
            device=device,
            name=name,
            seed=mixed_seed(seed, settings["seed"]),
        ).record()
        for name, settings in measures.items()
    }
