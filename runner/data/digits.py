"""scikit-learn's handwritten digits: 1797 real 8×8 greyscale images that ship inside the package.

Used by the demo, which must run anywhere without a download. The train/test
split is stratified and fixed by `dataset.seed` and `dataset.test_fraction`,
so every run (and every cell of a sweep) sees the same split whatever the run's
own seed. Pixel values 0..16 are scaled to 0..255 so that the data looks like
every other dataset to the transforms and the device loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .common import check_split, dataset_name, setting


def split_indices(
    num_examples: int, labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sorted train/test index arrays; each class is split in the same proportion.

    Within each class, a seeded permutation puts round(test_fraction × class size)
    examples into the test set (at least one), so the split never depends on
    library versions, only on numpy's PCG64 stream.
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, int(round(test_fraction * len(members))))
        test.append(rng.permutation(members)[:take])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(num_examples), test_idx)
    return train_idx, test_idx


def load_digits_tensors(dataset_cfg: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 N×1×8×8 (0..255) and labels as int64 for one side of the fixed split."""
    from sklearn.datasets import load_digits

    test_fraction = float(setting(dataset_cfg, "test_fraction"))
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"dataset {dataset_name(dataset_cfg)}: dataset.test_fraction={test_fraction} must be in (0, 1)"
        )
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = split_indices(len(labels), labels, test_fraction, int(setting(dataset_cfg, "seed")))
    chosen = train_idx if check_split(split) == "train" else test_idx
    images = torch.from_numpy(pixels[chosen]).unsqueeze(1).contiguous()
    return images, torch.from_numpy(labels[chosen])
