"""Which images a sharpness measure sees and how they are normalised: as the authors' sharpness code, or otherwise.

The authors measured sharpness with their own loader (my_sharpness/data.py),
which normalises CIFAR-10 with std (0.2023, 0.1994, 0.2010) rather than the
dataset's true per-channel std that training uses here, and CIFAR-100 with
their training statistics. A measure's `normalization` setting picks one of:

- `authors`: the statistics of `AUTHORS_MEASURE_STATS` for the datasets the
  authors' sharpness code knows, the training statistics for the others;
- `training`: `dataset.mean` and `dataset.std`, exactly the model's training inputs.

The choice moves the numbers: on CIFAR-10 the authors' std is about 20 %
smaller, so every measured input is about 1.2 times larger than in training.

A measure's `subset` picks the examples: `first` (the split's first ones in
its stored order, as the authors' loader takes them, without shuffling),
`random` (a seeded sample) or `authors`, which is `first` for the datasets
their sharpness code loads and `random` for the others: Tiny-ImageNet and
ImageNet are stored class by class, so their first 1,024 training images
would cover 3 of 200 classes (one of 1,000), and no code of the authors says
how they chose them.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .common import dataset_name

# dataset.name -> the mean and std the authors' sharpness loader normalises with (the datasets it loads).
AUTHORS_MEASURE_STATS: Mapping[str, Mapping[str, tuple[float, ...]]] = MappingProxyType(
    {
        "cifar10": {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)},
        "cifar100": {
            "mean": (0.5070751592371323, 0.48654887331495095, 0.4409178433670343),
            "std": (0.2673342858792401, 0.2564384629170883, 0.27615047132568404),
        },
    }
)


def measure_subset(dataset_cfg: Mapping[str, Any], subset: str) -> str:
    """`first` or `random`: the `subset` setting with `authors` resolved for this dataset."""
    if subset not in ("authors", "first", "random"):
        raise ValueError(f"subset={subset!r} must be one of authors, first, random")
    if subset != "authors":
        return subset
    return "first" if dataset_name(dataset_cfg) in AUTHORS_MEASURE_STATS else "random"


def measure_dataset_cfg(dataset_cfg: Mapping[str, Any], normalization: str) -> dict[str, Any]:
    """A copy of `dataset_cfg` whose `mean` and `std` are the ones a measure normalises with."""
    if normalization not in ("authors", "training"):
        raise ValueError(f"normalization={normalization!r} must be one of authors, training")
    copy = {str(key): dataset_cfg[key] for key in dataset_cfg}
    stats = AUTHORS_MEASURE_STATS.get(dataset_name(dataset_cfg)) if normalization == "authors" else None
    if stats is not None:
        copy["mean"], copy["std"] = list(stats["mean"]), list(stats["std"])
    return copy
