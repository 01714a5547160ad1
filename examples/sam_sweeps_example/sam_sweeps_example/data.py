"""Gaussian blobs from scikit-learn, each point drawn as a bump on an 8x8 image: generated, tiny, instant.

A point (x, y) of `sklearn.datasets.make_blobs` becomes a Gaussian bump centred at (x, y) on the
image grid, so the class is where the bump sits; the classes' centres lie evenly on a circle and
`spread` (pixels) sets how much they overlap (1.0: about 80% is the best a classifier can do).
Train and test come from one draw of `train_size + test_size` points (seeded by `dataset.seed`),
split in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.datasets import make_blobs


def load_blobs(dataset_cfg: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 N x 1 x S x S images, int64 labels) of the split; N is `train_size` or `test_size`."""
    size, classes = int(dataset_cfg["image_size"]), int(dataset_cfg["num_classes"])
    train, test = int(dataset_cfg["train_size"]), int(dataset_cfg["test_size"])
    # class centres evenly on a circle around the image centre, a quarter of the image from it
    angles = 2 * np.pi * np.arange(classes) / classes
    centres = (size - 1) / 2 + size / 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    points, labels = make_blobs(
        n_samples=train + test,
        centers=centres,
        cluster_std=float(dataset_cfg["spread"]),
        random_state=int(dataset_cfg["seed"]),
    )
    grid = np.arange(size, dtype=np.float64)
    dx = grid[None, None, :] - points[:, 0, None, None]
    dy = grid[None, :, None] - points[:, 1, None, None]
    images = 255.0 * np.exp(-(dx**2 + dy**2) / 2.0)
    chosen = slice(0, train) if split == "train" else slice(train, train + test)
    pixels = torch.from_numpy(images[chosen]).round().clamp(0, 255).to(torch.uint8).unsqueeze(1)
    return pixels, torch.from_numpy(labels[chosen]).long()
