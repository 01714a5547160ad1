"""The device-resident data pipeline for datasets that fit in memory.

The research code feeds the GPU through PIL transforms in two DataLoader
workers, which caps a small CNN far below what the GPU can do. Here the whole
uint8 dataset lives on the training device as one tensor (zero-padded once),
and each batch is cut out of it with a handful of batched tensor ops: one
gather of the crop windows, one flip, one conversion to normalised float32.

The distribution is the torchvision recipe's, not an approximation of it:
`RandomCrop(size, padding=pad)` (fill 0) draws the window's top-left corner
uniformly from the (2*pad+1)^2 offsets of the padded image,
`RandomHorizontalFlip()` flips with probability 0.5, and `Normalize(ToTensor(x))`
is computed with the same float32 operations in the same order, so a batch is
bit for bit what the PIL path would produce for the same offsets and flips.

Everything random about an epoch (its order, every crop offset and flip) is
drawn at its start from generators seeded by (seed, epoch), so an epoch is a
pure function of those two numbers: resuming at `start_batch=k` reproduces the
rest of an uninterrupted epoch exactly, and the batch size may change between
epochs (stages) without rebuilding anything. The example order comes from the
same CPU generator as the torchvision path's (`runner.data.epoch_generator`),
so both loaders visit the examples in the same order; the crops and flips are
drawn by a generator on the device, so no random numbers cross the bus.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

from runner.data.loader import epoch_generator

# Extra word mixed into the seed of the augmentation stream, so it never
# coincides with the order stream of the same (seed, epoch).
_AUGMENT_STREAM = 1


class EpochPlan(NamedTuple):
    """Every random choice of one epoch, indexed by position in the epoch.

    `order[i]` is the example at position i; `tops[i]`, `lefts[i]` the crop's
    top-left corner in padded coordinates (0 .. 2*pad) and `flips[i]` whether it
    is mirrored. The augmentation fields are None when the loader does not augment.
    """

    order: torch.Tensor
    tops: torch.Tensor | None
    lefts: torch.Tensor | None
    flips: torch.Tensor | None


def augmentation_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """A generator on `device` for the crops and flips of epoch `epoch` of run `seed`."""
    mixed = np.random.SeedSequence([int(seed), int(epoch), _AUGMENT_STREAM]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(mixed >> 1))


class DeviceLoader:
    """Batches of normalised, augmented images cut on the device from one uint8 tensor.

    `augment` turns on random crop (zero padding `pad`) and, unless `flip` is
    off, horizontal flip. The flips are drawn either way, so a seed cuts the
    same crops with and without them.
    `shuffle` defaults to `augment` and `drop_last` to `shuffle`: a training set
    is shuffled and drops its last partial batch (the protocol), an evaluation
    set is read in order and keeps it. Pass them explicitly to train without
    augmentation. `channels_last` makes the batches channels-last in memory.
    """

    def __init__(
        self,
        images_uint8: torch.Tensor,
        labels: torch.Tensor,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool,
        pad: int = 4,
        flip: bool = True,
        device: torch.device | str = "cpu",
        seed: int = 0,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        channels_last: bool = False,
    ) -> None:
        if images_uint8.dtype != torch.uint8 or images_uint8.ndim != 4:
            raise ValueError(
                f"images_uint8 must be a uint8 N×C×H×W tensor, got {images_uint8.dtype} {tuple(images_uint8.shape)}"
            )
        num, channels, height, width = images_uint8.shape
        if labels.ndim != 1 or len(labels) != num or labels.is_floating_point():
            raise ValueError(f"labels must be {num} integer class indices, got {labels.dtype} {tuple(labels.shape)}")
        if num == 0:
            raise ValueError("the dataset is empty")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need one value per channel ({channels}), got {list(mean)} and {list(std)}")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        if pad < 0:
            raise ValueError(f"pad={pad} must be >= 0")
        self.device = torch.device(device)
        self.augment = bool(augment)
        self.pad = int(pad) if self.augment else 0
        self.flip = bool(flip)
        self.seed = int(seed)
        self.shuffle = self.augment if shuffle is None else bool(shuffle)
        self.drop_last = self.shuffle if drop_last is None else bool(drop_last)
        self.channels_last = bool(channels_last)
        self.image_size = (height, width)

        images = images_uint8.to(self.device)
        if self.pad:
            # Pad once, so a crop is a window of the padded image (torchvision pads with fill 0).
            padded = images.new_zeros((num, channels, height + 2 * self.pad, width + 2 * self.pad))
            padded[:, :, self.pad : self.pad + height, self.pad : self.pad + width] = images
            images = padded
        self.images = images.contiguous()
        self.labels = labels.to(self.device, torch.int64)
        # (N, C, 2p+1, 2p+1, H, W): every crop window of every example, a view without a copy,
        # so one advanced-indexing gather cuts a whole batch of differently placed crops.
        self._windows = self.images.unfold(2, height, 1).unfold(3, width, 1) if self.augment else None
        # Normalize(ToTensor(x)) = (x / 255 - mean) / std, with mean and std as float32 tensors as torchvision has them.
        self._mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(1, channels, 1, 1)
        self._std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(1, channels, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch at `batch_size` (full batches only when `drop_last`)."""
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size} must be positive")
        return len(self) // batch_size if self.drop_last else math.ceil(len(self) / batch_size)

    def plan(self, epoch: int) -> EpochPlan:
        """The order, crops and flips of `epoch`: a pure function of (seed, epoch)."""
        num = len(self)
        if self.shuffle:
            order = torch.randperm(num, generator=epoch_generator(self.seed, epoch)).to(self.device)
        else:
            order = torch.arange(num, device=self.device)
        if not self.augment:
            return EpochPlan(order, None, None, None)
        generator = augmentation_generator(self.seed, epoch, self.device)
        corners = torch.randint(0, 2 * self.pad + 1, (2, num), generator=generator, device=self.device)
        flips = torch.randint(0, 2, (num,), generator=generator, device=self.device, dtype=torch.uint8).bool()
        return EpochPlan(order, corners[0], corners[1], flips)

    def batches(self, epoch: int, batch_size: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images float32 B×C×H×W normalised, labels int64 B) for the batches of `epoch` from `start_batch` on.

        Skipped batches cost nothing: the plan is drawn whole, so batch k is the
        same whether the epoch started at batch 0 or at k. Bad arguments raise
        here, at the call, not at the first `next`.
        """
        total = self.num_batches(batch_size)
        if total == 0:
            raise ValueError(
                f"batch_size={batch_size} is larger than the {len(self)} examples and drop_last is on: no batch"
            )
        if not 0 <= start_batch <= total:
            raise ValueError(f"start_batch={start_batch} must lie in [0, {total}] at batch_size={batch_size}")
        return self._iterate(self.plan(epoch), batch_size, range(start_batch, total))

    def _iterate(self, plan: EpochPlan, batch_size: int, numbers: range) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in numbers:
            yield self._cut(plan, batch * batch_size, min((batch + 1) * batch_size, len(self)))

    def _cut(self, plan: EpochPlan, begin: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions [begin, end) of the epoch as a normalised batch."""
        if plan.tops is None:
            if self.shuffle:
                index = plan.order[begin:end]
                pixels, labels = self.images.index_select(0, index), self.labels.index_select(0, index)
            else:  # evaluation: a slice, no gather
                pixels, labels = self.images[begin:end], self.labels[begin:end]
        else:
            assert self._windows is not None
            index = plan.order[begin:end]
            # Advanced indexing on dims 0, 2, 3 of the window view: B×C×H×W, each example its own window.
            pixels = self._windows[index, :, plan.tops[begin:end], plan.lefts[begin:end]]
            if self.flip:
                mirrored = plan.flips[begin:end].view(-1, 1, 1, 1)
                pixels = torch.where(mirrored, pixels.flip(3), pixels)
            labels = self.labels.index_select(0, index)
        return self._normalise(pixels), labels

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 → float32 (x / 255 - mean) / std, in torchvision's order of operations (bitwise equal to it)."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        images = pixels.to(torch.float32, memory_format=layout)
        return images.div_(255).sub_(self._mean).div_(self._std)
