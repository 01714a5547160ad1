"""Datasets for the runner: files in their official formats → tensors, PIL datasets and loaders.

- `load_tensors(dataset_cfg, split)`: uint8 N×C×H×W images + int64 labels of an
  in-memory dataset (cifar10, cifar100, tiny_imagenet, digits, synthetic), the
  input of `runner.training.device_loader`.
- `build_dataset(dataset_cfg, split, augment)`: the torchvision path (PIL
  transforms) for every dataset, ImageNet included.
- `build_loader(dataset, batch_size, ...)`: a seeded DataLoader for that path.
- `mixup_cutmix(settings, num_classes)`: the ViT recipe's batch-level mixing.
- `measure_dataset_cfg(dataset_cfg, normalization)`, `measure_subset(dataset_cfg, subset)`:
  the normalisation and the examples of a sharpness measure (as the authors' sharpness
  code, or as training / a seeded sample).
- `check_available(dataset_cfg)`: the config-time check that the data exists.
- The registries the configs and validation read: `DATASETS` (`dataset.name`),
  `AUGMENTATIONS` (`dataset.augment`), `CROPS` (`dataset.crop`), `LOADERS`
  (`dataset.loader`); `loader_problems(dataset_cfg)` checks the loader against
  the dataset, `crop_padding(image_size)` is the random crop's padding and
  `flips(dataset_cfg)` whether the recipe mirrors images.
"""

from .api import (
    DATASETS,
    IN_MEMORY,
    LOADERS,
    build_dataset,
    check_available,
    is_in_memory,
    load_tensors,
    loader_problems,
    prepare,
)
from .common import DatasetUnavailableError
from .loader import SeededBatchSampler, SeededLoader, build_loader, epoch_generator
from .measure_stats import AUTHORS_MEASURE_STATS, measure_dataset_cfg, measure_subset
from .memory import InMemoryImages
from .transforms import AUGMENTATIONS, CROPS, build_transform, crop_padding, device_can_augment, flips, mixup_cutmix

__all__ = [
    "AUTHORS_MEASURE_STATS",
    "AUGMENTATIONS",
    "CROPS",
    "DATASETS",
    "IN_MEMORY",
    "LOADERS",
    "DatasetUnavailableError",
    "InMemoryImages",
    "SeededBatchSampler",
    "SeededLoader",
    "build_dataset",
    "build_loader",
    "build_transform",
    "check_available",
    "crop_padding",
    "device_can_augment",
    "prepare",
    "epoch_generator",
    "flips",
    "is_in_memory",
    "load_tensors",
    "loader_problems",
    "measure_dataset_cfg",
    "measure_subset",
    "mixup_cutmix",
]
