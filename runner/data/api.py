"""The data layer's entry points: `load_tensors`, `build_dataset`, `check_available`, and its two registries.

`DATASETS` maps each `dataset.name` to how it is read; the functions here are
the only place that branches on the name, so adding a dataset is one entry here
and one `conf/dataset/<name>.yaml` (its augmentation and crop are keys there,
see `runner.data.transforms`). `LOADERS` are the values of `dataset.loader`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from . import digits, synthetic, tiny_imagenet
from .common import DatasetUnavailableError, check_split, check_tensors, dataset_name, setting
from .memory import InMemoryImages
from .transforms import augmentation, build_transform, cropping, device_can_augment


def _deferred(module: str, function: str) -> Callable:
    """`runner.data.<module>.<function>`, imported at the first call.

    The CIFAR and ImageNet readers build on torchvision's dataset classes, whose
    import costs seconds; deferring it keeps the start of every job (and the
    instant exit of an already finished cell) fast.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"{__package__}.{module}"), function)(*args, **kwargs)

    call.__name__ = function
    return call


TensorLoader = Callable[[Mapping[str, Any], str], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class DatasetKind:
    """How one dataset is read: into memory (`load`) or file by file (imagenet), and where its files live."""

    load: TensorLoader | None  # None: too large for memory, torchvision path only
    folder: Callable[[Mapping[str, Any]], Path] | None  # None: nothing on disk (generated / shipped)
    downloadable: bool


DATASETS: dict[str, DatasetKind] = {
    "cifar10": DatasetKind(_deferred("cifar", "load_cifar"), _deferred("cifar", "data_folder"), downloadable=True),
    "cifar100": DatasetKind(_deferred("cifar", "load_cifar"), _deferred("cifar", "data_folder"), downloadable=True),
    "tiny_imagenet": DatasetKind(tiny_imagenet.load_tiny_imagenet, tiny_imagenet.data_folder, downloadable=True),
    "imagenet": DatasetKind(None, _deferred("imagenet", "data_folder"), downloadable=False),
    "digits": DatasetKind(digits.load_digits_tensors, None, downloadable=False),
    "synthetic": DatasetKind(synthetic.load_synthetic, None, downloadable=False),
}
IN_MEMORY = tuple(name for name, kind in DATASETS.items() if kind.load is not None)

# `dataset.loader`: `device` holds an in-memory dataset on the training device and cuts augmented
# batches there (runner.training.device_loader); `torchvision` reads PIL images through a DataLoader (any dataset).
LOADERS = ("device", "torchvision")


def _kind(dataset_cfg: Mapping[str, Any]) -> DatasetKind:
    name = dataset_name(dataset_cfg)
    if name not in DATASETS:
        raise ValueError(f"dataset.name={name!r} is unknown; valid: {sorted(DATASETS)}")
    return DATASETS[name]


def is_in_memory(dataset_cfg: Mapping[str, Any]) -> bool:
    """Whether `load_tensors` serves this dataset (so the device loader can)."""
    return _kind(dataset_cfg).load is not None


def loader_problems(dataset_cfg: Mapping[str, Any]) -> list[str]:
    """Why `dataset.loader` cannot serve this dataset as configured, one line each (empty when it can)."""
    loader = str(setting(dataset_cfg, "loader"))
    if loader not in LOADERS:
        return [f"dataset.loader={loader!r} must be one of {', '.join(LOADERS)}"]
    if loader != "device":
        return []
    name = dataset_name(dataset_cfg)
    if not is_in_memory(dataset_cfg):
        return [f"dataset.loader=device cannot hold {name} in memory; use dataset.loader=torchvision"]
    if not device_can_augment(dataset_cfg):
        return [
            f"dataset.loader=device cannot apply dataset.augment={augmentation(dataset_cfg)} with "
            f"dataset.crop={cropping(dataset_cfg)} (it does crop_flip or crop with the padded crop, or none); "
            f"use dataset.loader=torchvision"
        ]
    return []


def check_available(dataset_cfg: Mapping[str, Any]) -> None:
    """Fail fast, before any work, when the data folder is missing and cannot be downloaded.

    Only looks at the folder (cheap); a folder with missing or corrupted files
    is reported by the loaders with the file's name.
    """
    kind = _kind(dataset_cfg)
    if kind.folder is None:
        return
    folder = kind.folder(dataset_cfg)
    download = bool(setting(dataset_cfg, "download", False))
    if folder.is_dir() or (download and kind.downloadable):
        return
    name = dataset_name(dataset_cfg)
    if kind.downloadable:
        hint = "set dataset.download=true or point dataset.root at the folder that holds it"
    else:
        hint = f"{name} cannot be downloaded automatically; point dataset.root at your copy"
    raise DatasetUnavailableError(f"dataset {name}: data folder {folder} does not exist and download is off; {hint}")


def prepare(dataset_cfg: Mapping[str, Any]) -> None:
    """Download what `dataset.download=true` asks for now, before any work, so that a missing
    network is one line at launch rather than a traceback inside the first epoch."""
    kind = _kind(dataset_cfg)
    if kind.folder is None or not kind.downloadable or not bool(setting(dataset_cfg, "download", False)):
        return
    folder = kind.folder(dataset_cfg)
    if folder.is_dir():
        return
    name = dataset_name(dataset_cfg)
    try:
        kind.load(dataset_cfg, "test")  # the readers download what is missing
    except DatasetUnavailableError:
        raise
    except OSError as error:  # URLError, timeouts, refused connections, a read-only data_dir
        reason = getattr(error, "reason", None) or error.strerror or error
        raise DatasetUnavailableError(
            f"cannot download {name} into {folder.parent}: {reason}; put the files there "
            f"or set dataset.download=false and dataset.root=<the folder that holds them>"
        ) from None


def load_tensors(dataset_cfg: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as (uint8 N×C×H×W images, int64 N labels), checked against the config."""
    kind = _kind(dataset_cfg)
    check_split(split)
    if kind.load is None:
        raise ValueError(
            f"dataset {dataset_name(dataset_cfg)} does not fit in memory as one tensor; "
            "use build_dataset (dataset.loader=torchvision) instead"
        )
    images, labels = kind.load(dataset_cfg, split)
    return check_tensors(dataset_cfg, split, images, labels)


def build_dataset(dataset_cfg: Mapping[str, Any], split: str, augment: bool) -> Dataset:
    """The torchvision path: a Dataset of (normalised float C×H×W tensor, int label).

    `augment=True` applies the `dataset.augment` recipe to the train split; the
    test split is never augmented.
    """
    kind = _kind(dataset_cfg)
    transform = build_transform(dataset_cfg, train=check_split(split) == "train", augment=augment)
    if kind.load is None:
        return _deferred("imagenet", "open_imagenet")(dataset_cfg, split, transform)
    images, labels = load_tensors(dataset_cfg, split)
    return InMemoryImages(images, labels, transform)


__all__ = [
    "DATASETS",
    "IN_MEMORY",
    "LOADERS",
    "DatasetUnavailableError",
    "build_dataset",
    "check_available",
    "is_in_memory",
    "load_tensors",
    "loader_problems",
]
