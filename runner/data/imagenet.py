"""ImageNet-1k (ILSVRC 2012) for the torchvision path; too large to hold in memory as one tensor.

Two layouts under `dataset.root` are read:

- class-folder trees `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the usual
  prepared layout) through torchvision's `ImageFolder`;
- the official archives (`ILSVRC2012_devkit_t12.tar.gz`, `ILSVRC2012_img_train.tar`,
  `ILSVRC2012_img_val.tar`) through torchvision's `ImageNet`, which extracts them
  into `train/` and `val/` beside the archives on first use.

The "test" split is the official validation set. ImageNet cannot be downloaded
automatically (its licence requires a login).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder, ImageNet

from .common import DatasetUnavailableError, check_split, data_root, dataset_name, setting

ARCHIVES = ("ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_SPLIT_FOLDER = {"train": "train", "test": "val"}


def data_folder(dataset_cfg: Mapping[str, Any]) -> Path:
    """`dataset.root` itself: the folder holding `train/` and `val/` (or the archives)."""
    return data_root(dataset_cfg)


def _is_class_tree(folder: Path) -> bool:
    return folder.is_dir() and any(child.is_dir() for child in folder.iterdir())


def open_imagenet(dataset_cfg: Mapping[str, Any], split: str, transform: Callable | None) -> Dataset:
    """The split as a PIL-decoding dataset of (transformed image, class index)."""
    name = dataset_name(dataset_cfg)
    root = data_folder(dataset_cfg)
    if not root.is_dir():
        raise DatasetUnavailableError(
            f"dataset {name}: data folder {root} does not exist; ImageNet is not downloadable automatically, "
            "put train/ and val/ class folders (or the ILSVRC2012 archives) there"
        )
    folder = root / _SPLIT_FOLDER[check_split(split)]
    if _is_class_tree(root / "train") and _is_class_tree(root / "val"):
        dataset: ImageFolder = ImageFolder(str(folder), transform=transform)
        train_classes = sorted(child.name for child in (root / "train").iterdir() if child.is_dir())
        if dataset.classes != train_classes:
            raise ValueError(f"dataset {name}: {root / 'val'} and {root / 'train'} hold different class folders")
    elif (root / ARCHIVES[0]).is_file() or (root / "meta.bin").is_file():
        dataset = ImageNet(str(root), split=_SPLIT_FOLDER[split], transform=transform)
    else:
        raise DatasetUnavailableError(
            f"dataset {name}: {root} holds neither train/ and val/ class folders nor the ILSVRC2012 archives"
        )
    num_classes = int(setting(dataset_cfg, "num_classes"))
    if len(dataset.classes) != num_classes:
        raise ValueError(
            f"dataset {name}: {folder} has {len(dataset.classes)} classes but dataset.num_classes={num_classes}"
        )
    train_size = setting(dataset_cfg, "train_size", None)
    if split == "train" and train_size is not None and int(train_size) != len(dataset):
        raise ValueError(f"dataset {name}: {folder} has {len(dataset)} images but dataset.train_size={train_size}")
    return dataset
