"""Generated class-dependent images for fast tests: class templates plus noise.

Each class has a smooth template (a random 4×4 pattern per channel, upsampled
to `image_size`), so a small network learns it in a few steps and a few pixels
of random-crop shift do not destroy it. Every image is 0.6 × its class
template + 0.4 × uniform noise. Templates and examples come from numpy
generators seeded by `dataset.seed` and the stream name, so train and test
share templates but not examples and the data never depend on the run's seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .common import check_split, dataset_name, setting

_STREAMS = {"templates": 0, "train": 1, "test": 2}


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAMS[stream]])


def class_templates(num_classes: int, channels: int, size: int, seed: int) -> torch.Tensor:
    """float32 num_classes×C×size×size templates in [0, 255]."""
    coarse = torch.from_numpy(_rng(seed, "templates").random((num_classes, channels, 4, 4), dtype=np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False) * 255.0


def load_synthetic(dataset_cfg: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N×C×S×S images and balanced int64 labels (N = train_size or test_size)."""
    name = dataset_name(dataset_cfg)
    num_classes = int(setting(dataset_cfg, "num_classes"))
    channels = int(setting(dataset_cfg, "channels"))
    size = int(setting(dataset_cfg, "image_size"))
    seed = int(setting(dataset_cfg, "seed"))
    count = int(setting(dataset_cfg, "train_size" if check_split(split) == "train" else "test_size"))
    if count <= 0 or num_classes <= 0 or channels <= 0 or size <= 0:
        raise ValueError(
            f"dataset {name}: sizes must be positive (size={count}, classes={num_classes}, image={channels}×{size}²)"
        )
    rng = _rng(seed, split)
    labels = torch.from_numpy(rng.permutation(np.arange(count) % num_classes).astype(np.int64))
    noise = torch.from_numpy(rng.random((count, channels, size, size), dtype=np.float32)) * 255.0
    images = 0.6 * class_templates(num_classes, channels, size, seed)[labels] + 0.4 * noise
    return images.round().clamp_(0, 255).to(torch.uint8), labels
