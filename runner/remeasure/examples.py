"""The examples a measure is computed on, built from a run's dataset config through the data layer.

`examples` training (or test) examples, either a seeded random sample of the
split or its first ones, cut into batches of m = `batch_size` in that order,
normalised as the `normalization` setting says (as in training, or as the
authors' sharpness code) and, only if asked, augmented with the
dataset's training recipe. Datasets held in memory go through the project's
device loader (same normalisation, same crop and flip); the others (ImageNet),
and recipes the device loader does not implement, through the torchvision
dataset of the data layer. The same (seed, settings) always give the same
batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

import sharpness
from runner import data
from runner.data.common import channel_stats
from runner.data.transforms import augmentation
from runner.training.device_loader import DeviceLoader
from sharpness import Batches


def mixed_seed(run_seed: int, measure_seed: int) -> int:
    """One seed from the run's and the measure's, so runs of a sweep draw independent subsets."""
    return int(np.random.SeedSequence([int(run_seed), int(measure_seed)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def data_key(settings: Mapping[str, Any]) -> tuple:
    """The settings that decide the batches; measures that agree on them share one set of batches."""
    whole = not sharpness.KINDS[settings["kind"]].equal_batches
    return (
        settings["split"],
        settings["augment"],
        settings["examples"],
        settings["batch_size"],
        settings["subset"],
        settings["normalization"],
        settings["seed"],
        whole,
    )


def _choose(total: int, settings: Mapping[str, Any], name: str, split: str, seed: int) -> torch.Tensor:
    """Indices of the measured examples, in batch order."""
    m = settings["batch_size"]
    if settings["examples"] is None:
        # The whole split; m-sharpness needs equal batches, so the remainder is left out.
        count = total if not sharpness.KINDS[settings["kind"]].equal_batches else total // m * m
    else:
        count = settings["examples"]
    if count > total or count == 0:
        raise ValueError(
            f"sharpness.{name}: needs {count or m} examples (examples={settings['examples']}, batch_size={m}) "
            f"but the {split} split has {total}; set sharpness.{name}.examples to at most {total // m * m}"
        )
    if settings["subset"] == "first":
        return torch.arange(count)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count]


def example_batches(
    dataset_cfg: Mapping[str, Any],
    settings: Mapping[str, Any],
    *,
    name: str,
    device: torch.device | str,
    seed: int,
    channels_last: bool = False,
) -> Batches:
    """Batches (float32 images on `device`, int64 labels) for the checked `settings` of measure `name`.

    `channels_last` lays the images out for a channels-last model, as training did.
    """
    dataset_cfg = data.measure_dataset_cfg(dataset_cfg, settings["normalization"])
    settings = {**settings, "subset": data.measure_subset(dataset_cfg, settings["subset"])}
    split = settings["split"]
    augment = bool(settings["augment"]) and augmentation(dataset_cfg) != "none"
    seed = mixed_seed(seed, settings["seed"])
    device = torch.device(device)
    if data.is_in_memory(dataset_cfg) and (not augment or data.device_can_augment(dataset_cfg)):
        images, labels = data.load_tensors(dataset_cfg, split)
        index = _choose(len(labels), settings, name, split, seed)
        loader = DeviceLoader(
            images[index],
            labels[index],
            mean=channel_stats(dataset_cfg, "mean"),
            std=channel_stats(dataset_cfg, "std"),
            augment=augment,
            pad=data.crop_padding(int(dataset_cfg["image_size"])),  # the training crop's padding
            flip=data.flips(dataset_cfg),
            device=device,
            seed=seed,
            shuffle=False,
            drop_last=False,
            channels_last=channels_last,
        )
        return list(loader.batches(0, settings["batch_size"]))
    dataset = data.build_dataset(dataset_cfg, split, augment)
    index = _choose(len(dataset), settings, name, split, seed)
    batches: Batches = []
    with torch.random.fork_rng(devices=[]):  # PIL-path transforms draw from the global generator
        torch.manual_seed(seed)
        for chunk in index.split(settings["batch_size"]):
            items = [dataset[int(i)] for i in chunk]
            images = torch.stack([torch.as_tensor(item[0]) for item in items]).to(device, torch.float32)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = torch.as_tensor([int(item[1]) for item in items], dtype=torch.int64, device=device)
            batches.append((images, labels))
    return batches
