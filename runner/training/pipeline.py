"""The data sources of one run, whichever loader the dataset config names.

Both loaders answer `batches(epoch, batch_size, start_batch)` with an order
that is a pure function of (seed, epoch), so the training loop is the same for
the device-resident pipeline (in-memory datasets) and the torchvision one
(ImageNet, the ViT recipe), and a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from omegaconf import DictConfig

from runner import data
from runner.training import debug
from runner.training.device_loader import DeviceLoader
from runner.training.distributed import per_rank_batch_size

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class Loader(Protocol):
    """What both loaders answer: the batches of an epoch, from a batch on, in an order fixed by (seed, epoch)."""

    def batches(
        self, epoch: int, batch_size: int, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class Pipelines:
    """Training batches by epoch, the test set, and the fixed subset for gradient norms.

    `train` gives this rank's share of every global batch; `test` and
    `grad_norm` (None when off) are read in order, `eval_batch_size` at a time.
    """

    train: Loader
    test_set: Loader
    grad_norm_set: Loader | None
    eval_batch_size: int
    batch_transform: Callable | None
    world_size: int
    rank: int

    def train_batches(self, epoch: int, global_batch_size: int, start_batch: int = 0) -> Iterator:
        """This rank's share of each global batch of `epoch`, from global batch `start_batch` on."""
        return self.train.batches(epoch, per_rank_batch_size(global_batch_size, self.world_size), start_batch)

    def test(self) -> Batches:
        return self.test_set.batches(0, self.eval_batch_size)

    def grad_norm_batches(self) -> Batches | None:
        return None if self.grad_norm_set is None else self.grad_norm_set.batches(0, self.eval_batch_size)


class _RankShare:
    """Gives each rank its slice of every global batch of a loader that produces global batches."""

    def __init__(self, loader: DeviceLoader, rank: int, world_size: int) -> None:
        self.loader, self.rank, self.world_size = loader, rank, world_size

    def batches(self, epoch: int, per_rank_batch: int, start_batch: int = 0) -> Iterator:
        lo, hi = self.rank * per_rank_batch, (self.rank + 1) * per_rank_batch
        for x, y in self.loader.batches(epoch, per_rank_batch * self.world_size, start_batch):
            yield x[lo:hi], y[lo:hi]


def _device_pipelines(
    cfg: DictConfig, device: torch.device, rank: int, world_size: int, channels_last: bool
) -> Pipelines:
    """The whole dataset on the device, batches cut there (in-memory datasets)."""
    dataset_cfg = cfg.dataset
    train_x, train_y = debug.cut(*data.load_tensors(dataset_cfg, "train"), debug.train_examples(cfg))
    test_x, test_y = debug.cut(*data.load_tensors(dataset_cfg, "test"), debug.test_examples(cfg))

    def loader(x: torch.Tensor, y: torch.Tensor, **options: Any) -> DeviceLoader:
        return DeviceLoader(x, y, mean=list(dataset_cfg.mean), std=list(dataset_cfg.std), device=device, **options)

    # The test set and the gradient-norm subset in the model's layout too, cut once per pass.
    in_order = dict(augment=False, seed=0, shuffle=False, drop_last=False, channels_last=channels_last)
    train = loader(
        train_x,
        train_y,
        augment=str(dataset_cfg.augment) != "none",
        pad=data.crop_padding(int(dataset_cfg.image_size)),
        flip=data.flips(dataset_cfg),
        seed=int(cfg.seed),
        shuffle=True,
        drop_last=True,
        channels_last=channels_last,
    )
    subset = int(cfg.train.grad_norm_examples)
    return Pipelines(
        train=train if world_size == 1 else _RankShare(train, rank, world_size),
        test_set=loader(test_x, test_y, **in_order),
        grad_norm_set=loader(train_x[:subset], train_y[:subset], **in_order) if subset > 0 else None,
        eval_batch_size=int(cfg.train.eval_batch_size),
        batch_transform=None,
        world_size=world_size,
        rank=rank,
    )


def _torchvision_pipelines(
    cfg: DictConfig, device: torch.device, rank: int, world_size: int, channels_last: bool
) -> Pipelines:
    """Datasets read and transformed by DataLoader workers (ImageNet, the ViT recipe); each rank reads its share."""
    dataset_cfg = cfg.dataset
    eval_batch = int(cfg.train.eval_batch_size)
    workers, pin = int(dataset_cfg.get("num_workers", 4)), device.type == "cuda"
    train_set = data.build_dataset(dataset_cfg, "train", augment=str(dataset_cfg.augment) != "none")
    train = data.build_loader(
        train_set,
        per_rank_batch_size(int(cfg.schedule.stages[0]["batch_size"]), world_size),
        shuffle=True,
        seed=int(cfg.seed),
        drop_last=True,
        num_workers=workers,
        repeated_aug=int(cfg.train.repeated_aug),
        rank=rank,
        world_size=world_size,
        pin_memory=pin,
    )
    test_set = data.build_loader(
        data.build_dataset(dataset_cfg, "test", augment=False),
        eval_batch,
        shuffle=False,
        seed=0,
        drop_last=False,
        num_workers=workers,
        pin_memory=pin,
    )
    subset = int(cfg.train.grad_norm_examples)
    grad_norm_set = None
    if subset > 0:
        plain = data.build_dataset(dataset_cfg, "train", augment=False)
        grad_norm_set = data.build_loader(
            torch.utils.data.Subset(plain, range(subset)),
            eval_batch,
            shuffle=False,
            seed=0,
            drop_last=False,
            num_workers=0,
        )
    mixing = data.mixup_cutmix(
        {"mixup_prob": float(cfg.train.mixup_cutmix_prob), "label_smoothing": float(cfg.train.label_smoothing)},
        int(dataset_cfg.num_classes),
    )
    return Pipelines(
        train=train,
        test_set=test_set,
        grad_norm_set=grad_norm_set,
        eval_batch_size=eval_batch,
        batch_transform=mixing,
        world_size=world_size,
        rank=rank,
    )


# The builder of each loader a dataset config may name (`dataset.loader`, registered in
# `runner.data.LOADERS`, which validation reads); tests/test_registries.py keeps the two equal.
BUILDERS: dict[str, Callable[..., Pipelines]] = {"device": _device_pipelines, "torchvision": _torchvision_pipelines}


def build_pipelines(
    cfg: DictConfig, device: torch.device, rank: int = 0, world_size: int = 1, channels_last: bool = False
) -> Pipelines:
    """Build the loaders named by `cfg.dataset.loader` for this rank.

    With `channels_last` the device pipeline cuts batches in that layout directly,
    saving the training step a copy per batch.
    """
    kind = str(cfg.dataset.loader)
    if kind not in BUILDERS:
        raise ValueError(f"dataset.loader={kind!r} is not one of {', '.join(BUILDERS)}")
    return BUILDERS[kind](cfg, device, rank, world_size, channels_last)
