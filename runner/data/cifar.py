"""CIFAR-10 and CIFAR-100 through torchvision, from the official python pickle batches.

torchvision downloads and extracts the tarball into `dataset.root` when
`dataset.download` is true and checks every file against the official md5 sums.
`dataset.verify_checksums: false` keeps the files' existence check but skips
the md5 sums, for a deliberately modified copy in the same format (a subset,
the tests' small files); it is per dataset and off only when asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import check_integrity

from .common import DatasetUnavailableError, check_split, data_root, dataset_name, setting


class _OptionalChecksums:
    """Mixin for torchvision's CIFAR classes: md5 verification can be switched off per instance.

    torchvision's `check_integrity(path, md5=None)` means "the file exists", so
    shadowing the class's file lists with md5-less copies keeps every other
    check (and the download logic) exactly as torchvision wrote it.
    """

    def __init__(self, root: str, *, train: bool, download: bool, verify_checksums: bool) -> None:
        if not verify_checksums:
            self.train_list = [[name, None] for name, _ in type(self).train_list]
            self.test_list = [[name, None] for name, _ in type(self).test_list]
            self.meta = {**type(self).meta, "md5": None}
        super().__init__(root, train=train, download=download)  # type: ignore[call-arg]


class CheckedCIFAR10(_OptionalChecksums, CIFAR10):
    """torchvision's CIFAR10 with optional md5 verification."""


class CheckedCIFAR100(_OptionalChecksums, CIFAR100):
    """torchvision's CIFAR100 with optional md5 verification."""


_CLASSES = {"cifar10": CheckedCIFAR10, "cifar100": CheckedCIFAR100}


def data_folder(dataset_cfg: Mapping[str, Any]) -> Path:
    """The extracted folder torchvision reads: `<root>/cifar-10-batches-py` or `<root>/cifar-100-python`."""
    return data_root(dataset_cfg) / _CLASSES[dataset_name(dataset_cfg)].base_folder


def _diagnose(cls: type, root: Path, verify: bool) -> Exception:
    """Name the file that is missing or fails its md5, once torchvision has refused the folder."""
    folder = root / cls.base_folder
    files = list(cls.train_list) + list(cls.test_list) + [[cls.meta["filename"], cls.meta["md5"]]]
    for name, md5 in files:
        path = folder / name
        if not path.is_file():
            return DatasetUnavailableError(f"{path} is missing")
        if verify and not check_integrity(str(path), md5):
            return ValueError(
                f"{path} does not match the official md5 sum (corrupted, or not the official file); "
                "re-download it, or set dataset.verify_checksums=false for a deliberately modified copy"
            )
    return DatasetUnavailableError(f"torchvision could not read {folder}")


def open_cifar(dataset_cfg: Mapping[str, Any], split: str) -> CIFAR10:
    """The torchvision dataset object of one split (images as `.data`, N×H×W×C uint8)."""
    name = dataset_name(dataset_cfg)
    cls = _CLASSES[name]
    root = data_root(dataset_cfg)
    download = bool(setting(dataset_cfg, "download", False))
    verify = bool(setting(dataset_cfg, "verify_checksums", True))
    if download:
        os.makedirs(root, exist_ok=True)
    try:
        return cls(str(root), train=check_split(split) == "train", download=download, verify_checksums=verify)
    except RuntimeError as error:
        if "not found or corrupted" not in str(error):
            raise
        problem = _diagnose(cls, root, verify)
        raise type(problem)(f"dataset {name}: {problem}") from None


def load_cifar(dataset_cfg: Mapping[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 N×3×32×32 and labels as int64, read from the real pickle batches."""
    dataset = open_cifar(dataset_cfg, split)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return images, labels
