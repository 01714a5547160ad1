"""scikit-learn's handwritten digits: 1797 real 8×8 greyscale images that ship inside the package.

Used by the demo, which must run anywhere without a download. The train/test
split is stratified and fixed by `dataset.seed` and `dataset.test_fraction`,
so every run (and every cell of a sweep) sees the same split whatever the run's
own seed. Pixel values 0..16 are scaled to 0..255 so that the data looks like
every other dataset to the transforms and the device loader.

`dataset.image_size` above 8 upsamples every image bilinearly once, at load
time (8 is the native size and the default): a larger image gives the
3x3-stem ResNet more spatial positions per digit, closer to the 32 px images
the paper's recipe was tuned for, at a higher cost per step.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import check_split, dataset_name, setting

NATIVE_SIZE = 8
# Where scikit-learn keeps the digits: 1797 rows of 64 pixels (0..16) and the label, comma-separated.
PACKAGED_FILE = ("datasets", "data", "digits.csv.gz")


def packaged_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 images (float 0..16, N×8×8) and labels, as `sklearn.datasets.load_digits()` returns them.

    Read from the file scikit-learn ships, found without importing scikit-learn:
    importing it loads scipy and pandas, ~1.4 s of CPU in every cell process of
    a sweep for a 500 KB table. Falls back to `load_digits` where the file is
    not where this version keeps it.
    """
    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location).joinpath(*PACKAGED_FILE)
        if path.is_file():
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1].reshape(-1, NATIVE_SIZE, NATIVE_SIZE), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


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


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N×C×8×8 images resized bilinearly to N×C×size×size, rounded back to uint8 (unchanged at 8)."""
    if size == images.shape[-1]:
        return images
    resized = torch.nn.functional.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8).contiguous()


def image_size(dataset_cfg: Mapping[str, Any]) -> int:
    """`dataset.image_size`, checked: an integer of at least the native 8 px (larger sizes are upsampled)."""
    value = setting(dataset_cfg, "image_size", NATIVE_SIZE)
    if isinstance(value, bool) or not isinstance(value, int) or value < NATIVE_SIZE:
        raise ValueError(
            f"dataset {dataset_name(dataset_cfg)}: dataset.image_size={value!r} must be an integer "
            f">= {NATIVE_SIZE} (the digits' native size; larger sizes are upsampled)"
        )
    return value


def load_digits_tensors(dataset_cfg: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 N×1×S×S (0..255, S = dataset.image_size) and int64 labels for one side of the split."""
    size = image_size(dataset_cfg)
    test_fraction = float(setting(dataset_cfg, "test_fraction"))
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"dataset {dataset_name(dataset_cfg)}: dataset.test_fraction={test_fraction} must be in (0, 1)"
        )
    digit_images, labels = packaged_digits()
    pixels = np.rint(digit_images * (255.0 / 16.0)).astype(np.uint8)
    train_idx, test_idx = split_indices(len(labels), labels, test_fraction, int(setting(dataset_cfg, "seed")))
    chosen = train_idx if check_split(split) == "train" else test_idx
    images = upsample(torch.from_numpy(pixels[chosen]).unsqueeze(1).contiguous(), size)
    return images, torch.from_numpy(labels[chosen])
