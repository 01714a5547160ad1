"""Shared helpers of the data layer: reading `dataset_cfg`, its one-line errors, shape checks.

`dataset_cfg` arrives either as an omegaconf DictConfig (from Hydra) or as a
plain dict (from tests and the sharpness CLI); everything here reads it through
`setting`, so both work and a missing key names itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

SPLITS = ("train", "test")
_REQUIRED = object()


class DatasetUnavailableError(FileNotFoundError, ValueError):
    """The data folder is missing (or incomplete) and cannot be downloaded.

    It is a FileNotFoundError for what it is and a ValueError for config
    validation, which reports bad settings as ValueErrors.
    """


def setting(dataset_cfg: Mapping[str, Any], key: str, default: Any = _REQUIRED) -> Any:
    """`dataset_cfg[key]`, or `default`; a missing required key is a one-line ValueError."""
    value = dataset_cfg.get(key, default) if hasattr(dataset_cfg, "get") else default
    if value is _REQUIRED:
        name = dataset_cfg.get("name", "?") if hasattr(dataset_cfg, "get") else "?"
        raise ValueError(f"dataset {name}: dataset.{key} is required but not set")
    return value


def dataset_name(dataset_cfg: Mapping[str, Any]) -> str:
    return str(setting(dataset_cfg, "name"))


def data_root(dataset_cfg: Mapping[str, Any]) -> Path:
    """The folder named by `dataset.root`, with `~` expanded (not resolved: messages show what the user wrote)."""
    root = setting(dataset_cfg, "root")
    if root is None or str(root) == "":
        raise ValueError(f"dataset {dataset_name(dataset_cfg)}: dataset.root is empty; set it to the data folder")
    return Path(str(root)).expanduser()


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def channel_stats(dataset_cfg: Mapping[str, Any], key: str) -> tuple[float, ...]:
    """`dataset.mean` / `dataset.std` as a tuple with one float per channel."""
    values = setting(dataset_cfg, key)
    if isinstance(values, (int, float)):
        values = [values]
    values = tuple(float(v) for v in values)
    channels = int(setting(dataset_cfg, "channels"))
    if len(values) != channels:
        raise ValueError(
            f"dataset {dataset_name(dataset_cfg)}: dataset.{key} has {len(values)} values, "
            f"expected one per channel ({channels})"
        )
    if key == "std" and any(v <= 0 for v in values):
        raise ValueError(f"dataset {dataset_name(dataset_cfg)}: dataset.std={list(values)} must be positive")
    return values


def check_tensors(
    dataset_cfg: Mapping[str, Any], split: str, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check what a loader produced against the config, so a wrong file or config fails loudly here.

    The device loader and the models trust `channels`, `image_size`, `num_classes`
    and `train_size`; a mismatch would otherwise surface as a shape error deep
    inside training (or not at all, for a wrong class count).
    """
    name = dataset_name(dataset_cfg)
    channels = int(setting(dataset_cfg, "channels"))
    size = int(setting(dataset_cfg, "image_size"))
    num_classes = int(setting(dataset_cfg, "num_classes"))
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise TypeError(f"dataset {name}: expected uint8 N×C×H×W images, got {images.dtype} {tuple(images.shape)}")
    if tuple(images.shape[1:]) != (channels, size, size):
        raise ValueError(
            f"dataset {name} ({split}): images are {tuple(images.shape[1:])} but the config says "
            f"channels={channels}, image_size={size}"
        )
    labels = labels.to(torch.int64)
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"dataset {name} ({split}): {images.shape[0]} images but labels of shape {tuple(labels.shape)}"
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"dataset {name} ({split}): labels span {int(labels.min())}..{int(labels.max())} "
            f"but dataset.num_classes={num_classes}"
        )
    train_size = setting(dataset_cfg, "train_size", None)
    if split == "train" and train_size is not None and int(train_size) != len(labels):
        raise ValueError(
            f"dataset {name}: the training split has {len(labels)} examples but dataset.train_size={train_size}; "
            "fix dataset.train_size (or the data folder)"
        )
    return images.contiguous(), labels
