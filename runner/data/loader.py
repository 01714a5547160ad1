"""The torchvision-path loader: seeded order, seeded augmentation, batch size changeable between stages.

Determinism does not depend on workers or on where a run resumed: the order of
epoch e is a permutation drawn from a generator seeded by (seed, e), and every
item gets its own augmentation seed from the same draw, which `_SeededItems`
installs in torch's RNG around the transform (torchvision's transforms draw
from torch's RNG only). So `batches(epoch)` is a function of (seed, epoch,
batch size), like the device loader's, whatever `num_workers` is.

Index lists are produced in the main process, so the batch size can change
between stages while persistent workers (which hold only the dataset) live on.
Repeated augmentation follows the authors' ViT code (their RASampler with one
repetition per draw and a length factor of `repeated_aug`): an epoch is
`repeated_aug` full passes over the dataset, each in its own random order, cut
into batches straight across the pass boundaries, so an image's repeats are
spread over the epoch and each one gets its own augmentation; the schedule
counts `repeated_aug` times the steps of a one-pass epoch (`examples_per_epoch`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch generator for epoch `epoch` of run `seed`; distinct (seed, epoch) pairs give unrelated streams."""
    mixed = int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(mixed)


def examples_per_epoch(num_examples: int, repeated_aug: int = 1) -> int:
    """Examples drawn in one training epoch: `repeated_aug` full passes over the dataset."""
    return int(num_examples) * int(repeated_aug)


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of (example index, augmentation seed) for one rank; `batch_size` may be reassigned between epochs."""

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        drop_last: bool,
        repeated_aug: int = 1,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_examples <= 0 or batch_size <= 0:
            raise ValueError(f"num_examples={num_examples} and batch_size={batch_size} must be positive")
        if repeated_aug < 1:
            raise ValueError(f"repeated_aug={repeated_aug} must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
        self.num_examples, self.batch_size = num_examples, batch_size
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.repeated_aug, self.rank, self.world_size = repeated_aug, rank, world_size
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def per_rank(self) -> int:
        """Examples this rank sees per epoch (`repeated_aug` passes over the dataset split across ranks)."""
        total = examples_per_epoch(self.num_examples, self.repeated_aug)
        if self.drop_last:
            return total // self.world_size
        return math.ceil(total / self.world_size)

    def num_batches(self, batch_size: int | None = None) -> int:
        size = batch_size or self.batch_size
        return self.per_rank() // size if self.drop_last else math.ceil(self.per_rank() / size)

    def order(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's example indices and per-item augmentation seeds for `epoch`."""
        generator = epoch_generator(self.seed, epoch)
        if self.shuffle:
            passes = [torch.randperm(self.num_examples, generator=generator) for _ in range(self.repeated_aug)]
        else:
            passes = [torch.arange(self.num_examples)] * self.repeated_aug
        indices = torch.cat(passes)
        seeds = torch.randint(0, 2**62, (len(indices),), generator=generator)
        wanted = self.per_rank() * self.world_size
        if wanted > len(indices):  # pad by wrapping around, as DistributedSampler does
            wrap = torch.arange(wanted) % len(indices)
            indices, seeds = indices[wrap], seeds[wrap]
        take = slice(self.rank, wanted, self.world_size)
        return indices[take], seeds[take]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices, seeds = self.order(self.epoch)
        pairs = list(zip(indices.tolist(), seeds.tolist()))
        for batch in range(self.start_batch, self.num_batches()):
            yield pairs[batch * self.batch_size : (batch + 1) * self.batch_size]

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.start_batch)


class _SeededItems(Dataset):
    """Looks items up by (index, seed) and runs the dataset's transform under that seed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        # Only the CPU generator, which the transforms use: torch.manual_seed would also reseed
        # the GPU generators of the training process (num_workers=0); the state is restored after.
        state = torch.get_rng_state()
        torch.default_generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            torch.set_rng_state(state)


class SeededLoader:
    """A DataLoader with the device loader's interface: `batches(epoch, batch_size, start_batch)`, `num_batches`."""

    def __init__(self, dataset: Dataset, sampler: SeededBatchSampler, num_workers: int, pin_memory: bool) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.dataloader = DataLoader(
            _SeededItems(dataset),
            batch_sampler=sampler,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
            pin_memory=pin_memory,
            # the workers' base seed is drawn from this, not from the global RNG the training step uses
            generator=torch.Generator().manual_seed(sampler.seed),
        )

    def num_batches(self, batch_size: int | None = None) -> int:
        return self.sampler.num_batches(batch_size)

    def batches(
        self, epoch: int, batch_size: int | None = None, start_batch: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch` from batch `start_batch` on (skipped batches are never decoded)."""
        self.sampler.set_epoch(epoch)
        if batch_size is not None:
            self.sampler.batch_size = int(batch_size)
        self.sampler.start_batch = int(start_batch)
        yield from self.dataloader

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(self.sampler.epoch, start_batch=0)

    def __len__(self) -> int:
        return self.num_batches()


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    drop_last: bool,
    num_workers: int = 0,
    repeated_aug: int = 1,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> SeededLoader:
    """A seeded loader over `dataset`; training uses `shuffle=True, drop_last=True`.

    The paper drops the last partial batch of every training epoch.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers={num_workers} must be non-negative")
    sampler = SeededBatchSampler(
        len(dataset),  # type: ignore[arg-type]
        batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        repeated_aug=repeated_aug,
        rank=rank,
        world_size=world_size,
    )
    return SeededLoader(dataset, sampler, num_workers, pin_memory)
