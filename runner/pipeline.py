"""The data sources of one run, whichever loader the dataset config names.

Both loaders answer `batches(epoch, batch_size, start_batch)` with an order
that is a pure function of (seed, epoch), so the training loop is the same for
the device-resident pipeline (in-memory datasets) and the torchvision one
(ImageNet, the ViT recipe), and a resumed run sees the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from omegaconf import DictConfig

from runner import data
from runner.device_loader import DeviceLoader

LOADERS = ("device", "torchvision")

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Pipelines:
    """Training batches by epoch, the test set, and the fixed subset for gradient norms."""

    train: Any  # .batches(epoch, batch_size, start_batch) -> iterator of (x, y)
    test: Callable[[], Batches]
    grad_norm_subset: Callable[[], Batches] | None
    batch_transform: Callable | None
    world_size: int
    rank: int

    def train_batches(self, epoch: int, global_batch_size: int, start_batch: int = 0) -> Iterator:
        """This rank's share of each global batch of `epoch`."""
        return self.train.batches(epoch, global_batch_size // self.world_size, start_batch)


class _RankShare:
    """Gives each rank its slice of every global batch of a loader that produces global batches."""

    def __init__(self, loader: DeviceLoader, rank: int, world_size: int) -> None:
        self.loader, self.rank, self.world_size = loader, rank, world_size

    def batches(self, epoch: int, per_rank_batch: int, start_batch: int = 0) -> Iterator:
        lo, hi = self.rank * per_rank_batch, (self.rank + 1) * per_rank_batch
        for x, y in self.loader.batches(epoch, per_rank_batch * self.world_size, start_batch):
            yield x[lo:hi], y[lo:hi]


def _pad_for(dataset_cfg: DictConfig) -> int:
    """Padding of the random crop: 4 px for 32 px images, as in the protocol (image_size / 8)."""
    return max(1, int(dataset_cfg.image_size) // 8)


def build_pipelines(
    cfg: DictConfig, device: torch.device, rank: int = 0, world_size: int = 1, channels_last: bool = False
) -> Pipelines:
    """Build the loaders named by `cfg.dataset.loader` for this rank.

    With `channels_last` the device pipeline cuts batches in that layout directly,
    saving the training step a copy per batch.
    """
    dataset_cfg = cfg.dataset
    loader_kind = str(dataset_cfg.loader)
    augment = str(dataset_cfg.augment) != "none"
    eval_batch = int(cfg.train.eval_batch_size)
    grad_examples = int(cfg.train.grad_norm_examples)

    if loader_kind == "device":
        train_x, train_y = data.load_tensors(dataset_cfg, "train")
        test_x, test_y = data.load_tensors(dataset_cfg, "test")
        common = dict(mean=list(dataset_cfg.mean), std=list(dataset_cfg.std), device=device)
        train_loader = DeviceLoader(
            train_x, train_y, augment=augment, pad=_pad_for(dataset_cfg), seed=int(cfg.seed), shuffle=True,
            drop_last=True, channels_last=channels_last, **common,
        )
        test_loader = DeviceLoader(test_x, test_y, augment=False, seed=0, shuffle=False, drop_last=False, **common)
        train: Any = train_loader if world_size == 1 else _RankShare(train_loader, rank, world_size)

        def test() -> Batches:
            return test_loader.batches(0, eval_batch)

        grad_subset = None
        if grad_examples > 0:
            subset = DeviceLoader(
                train_x[:grad_examples], train_y[:grad_examples], augment=False, seed=0, shuffle=False,
                drop_last=False, **common,
            )

            def grad_subset() -> Batches:
                return subset.batches(0, eval_batch)

        return Pipelines(train, test, grad_subset, None, world_size, rank)

    if loader_kind == "torchvision":
        workers = int(dataset_cfg.get("num_workers", 4))
        pin = device.type == "cuda"
        train_set = data.build_dataset(dataset_cfg, "train", augment=augment)
        test_set = data.build_dataset(dataset_cfg, "test", augment=False)
        first_stage_batch = int(cfg.schedule.stages[0]["batch_size"]) // world_size
        train = data.build_loader(
            train_set, first_stage_batch, shuffle=True, seed=int(cfg.seed), drop_last=True, num_workers=workers,
            repeated_aug=int(cfg.train.repeated_aug), rank=rank, world_size=world_size, pin_memory=pin,
        )
        test_loader = data.build_loader(
            test_set, eval_batch, shuffle=False, seed=0, drop_last=False, num_workers=workers, pin_memory=pin
        )
        mixing = data.mixup_cutmix(
            {"mixup_prob": float(cfg.train.mixup_cutmix_prob), "label_smoothing": float(cfg.train.label_smoothing)},
            int(dataset_cfg.num_classes),
        )

        def test() -> Batches:
            return test_loader.batches(0)

        grad_subset = None
        if grad_examples > 0:
            plain = data.build_dataset(dataset_cfg, "train", augment=False)
            subset_loader = data.build_loader(
                torch.utils.data.Subset(plain, range(grad_examples)), eval_batch, shuffle=False, seed=0,
                drop_last=False, num_workers=0,
            )

            def grad_subset() -> Batches:
                return subset_loader.batches(0)

        return Pipelines(train, test, grad_subset, mixing, world_size, rank)

    raise ValueError(f"dataset.loader={loader_kind!r} is not one of {', '.join(LOADERS)}")
