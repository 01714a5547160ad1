"""Augmentation recipes: off means exact normalisation, crop_flip is a crop + flip, vit adds its parts; the crop
(padded or resized) comes from dataset.crop, never from the dataset's name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from runner.data import (
    build_dataset,
    build_transform,
    crop_padding,
    device_can_augment,
    flips,
    load_tensors,
    loader_problems,
    mixup_cutmix,
)

CFG = {
    "name": "synthetic",
    "num_classes": 4,
    "image_size": 16,
    "channels": 3,
    "train_size": 32,
    "test_size": 8,
    "seed": 0,
    "mean": [0.4, 0.5, 0.6],
    "std": [0.2, 0.25, 0.3],
    "augment": "crop_flip",
    "download": False,
}


def normalised(images_uint8: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(CFG["mean"])[:, None, None], torch.tensor(CFG["std"])[:, None, None]
    return (images_uint8.float() / 255 - mean) / std


def all_crops_and_flips(image: torch.Tensor, pad: int) -> torch.Tensor:
    """Every RandomCrop(padding=pad) + flip outcome of one normalised C×S×S image (zero padding before normalising)."""
    size = image.shape[-1]
    padded = F.pad(image, (pad,) * 4)  # uint8 zero padding, as torchvision pads the PIL image
    crops = [padded[:, i : i + size, j : j + size] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    crops += [crop.flip(-1) for crop in crops]
    return torch.stack(crops)


def test_augment_off_is_exact_normalisation():
    images, labels = load_tensors(CFG, "train")
    plain = {**CFG, "augment": "none"}
    for dataset in (build_dataset(CFG, "train", augment=False), build_dataset(plain, "train", augment=True)):
        for i in (0, 7):
            image, label = dataset[i]
            assert torch.allclose(image, normalised(images[i]), atol=1e-6) and label == int(labels[i])


def test_test_split_is_never_augmented():
    images, _ = load_tensors(CFG, "test")
    dataset = build_dataset({**CFG, "augment": "vit"}, "test", augment=True)
    assert torch.allclose(dataset[2][0], normalised(images[2]), atol=1e-6)


def test_crop_flip_is_a_padded_crop_and_flip():
    images, _ = load_tensors(CFG, "train")
    dataset = build_dataset(CFG, "train", augment=True)
    candidates = normalised(all_crops_and_flips(images[3], pad=2))  # padding = image_size // 8
    torch.manual_seed(0)
    outcomes = set()
    for _ in range(40):
        image = dataset[3][0]
        distance = (candidates - image).abs().flatten(1).amax(1)
        assert distance.min() < 1e-5  # exactly one of the 2 × 25 crop/flip outcomes
        outcomes.add(int(distance.argmin()))
    assert len(outcomes) > 10  # and it is random


def test_crop_is_the_padded_crop_without_the_mirror():
    images, _ = load_tensors(CFG, "train")
    cfg = {**CFG, "augment": "crop"}
    assert [type(s) for s in build_transform(cfg, train=True, augment=True).transforms] == [
        T.RandomCrop,
        T.ToTensor,
        T.Normalize,
    ]
    dataset = build_dataset(cfg, "train", augment=True)
    candidates = normalised(all_crops_and_flips(images[3], pad=2))
    unflipped = len(candidates) // 2  # the first half of the candidates are the crops, the second their mirrors
    torch.manual_seed(0)
    for _ in range(40):
        distance = (candidates - dataset[3][0]).abs().flatten(1).amax(1)
        assert distance[:unflipped].min() < 1e-5
    assert not flips(cfg) and not flips({**CFG, "augment": "none"})
    assert flips(CFG) and flips({**CFG, "augment": "vit"})


def test_crop_padding_is_an_eighth_of_the_size_and_at_least_one_pixel():
    assert [crop_padding(size) for size in (32, 64, 224, 8, 7, 1)] == [4, 8, 28, 1, 1, 1]
    for size in (32, 4):
        crop = next(
            t
            for t in build_transform({**CFG, "image_size": size}, train=True, augment=True).transforms
            if isinstance(t, T.RandomCrop)
        )
        assert crop.size == (size, size) and crop.padding == crop_padding(size)


def test_vit_recipe_parts():
    steps = build_transform({**CFG, "augment": "vit"}, train=True, augment=True).transforms
    kinds = [type(step) for step in steps]
    assert kinds == [T.RandomCrop, T.RandomHorizontalFlip, T.AutoAugment, T.ToTensor, T.Normalize, T.RandomErasing]
    assert steps[2].policy == T.AutoAugmentPolicy.CIFAR10 and steps[-1].p == 0.25
    image, _ = build_dataset({**CFG, "augment": "vit"}, "train", augment=True)[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32


@pytest.mark.parametrize("name", ["imagenet", "synthetic"])
def test_the_resized_crop_follows_the_config_whatever_the_name(name):
    cfg = {**CFG, "name": name, "image_size": 224, "crop": "resized"}
    assert [type(s) for s in build_transform(cfg, train=True, augment=True).transforms][:2] == [
        T.RandomResizedCrop,
        T.RandomHorizontalFlip,
    ]
    for train, augment in ((False, True), (True, False), (True, True)):
        plain = {**cfg, "augment": "none"} if train and augment else cfg
        steps = build_transform(plain, train=train, augment=augment).transforms
        assert isinstance(steps[0], T.Resize) and steps[0].size == 256
        assert isinstance(steps[1], T.CenterCrop) and steps[1].size == (224, 224)
    vit = build_transform({**cfg, "augment": "vit"}, train=True, augment=True).transforms
    assert [type(s) for s in vit] == [
        T.RandomResizedCrop,
        T.RandomHorizontalFlip,
        T.AutoAugment,
        T.ToTensor,
        T.Normalize,
        T.RandomErasing,
    ]
    assert vit[2].policy == T.AutoAugmentPolicy.IMAGENET


def test_the_name_alone_picks_no_crop():
    steps = build_transform({**CFG, "name": "imagenet"}, train=True, augment=True).transforms  # crop: padded
    assert [type(s) for s in steps][:2] == [T.RandomCrop, T.RandomHorizontalFlip]
    assert [type(s) for s in build_transform({**CFG, "name": "imagenet"}, train=False, augment=False).transforms] == [
        T.ToTensor,
        T.Normalize,
    ]


def test_the_device_loader_serves_only_the_padded_crops_or_nothing():
    assert device_can_augment(CFG) and device_can_augment({**CFG, "augment": "none", "crop": "resized"})
    assert device_can_augment({**CFG, "augment": "crop"})
    assert not device_can_augment({**CFG, "augment": "crop", "crop": "resized"})
    assert not device_can_augment({**CFG, "augment": "vit"})
    assert not device_can_augment({**CFG, "crop": "resized"})
    device = {**CFG, "loader": "device"}
    assert loader_problems(device) == [] and loader_problems({**CFG, "loader": "torchvision", "augment": "vit"}) == []
    (problem,) = loader_problems({**device, "crop": "resized"})
    assert problem.startswith("dataset.loader=device cannot apply dataset.augment=crop_flip with dataset.crop=resized")
    (problem,) = loader_problems({**device, "name": "imagenet"})
    assert problem == "dataset.loader=device cannot hold imagenet in memory; use dataset.loader=torchvision"
    assert loader_problems({**CFG, "loader": "dali"}) == ["dataset.loader='dali' must be one of device, torchvision"]


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"dataset.augment='autoaug'; valid: \['crop_flip', 'crop', 'vit', 'none'\]"):
        build_transform({**CFG, "augment": "autoaug"}, train=True, augment=True)
    with pytest.raises(ValueError, match=r"dataset.crop='centre'; valid: \['padded', 'resized'\]"):
        build_transform({**CFG, "crop": "centre"}, train=False, augment=False)
    with pytest.raises(ValueError, match="dataset.mean has 1 values, expected one per channel"):
        build_transform({**CFG, "mean": [0.5]}, train=False, augment=False)
    with pytest.raises(ValueError, match="dataset.image_size is required"):
        build_transform({k: v for k, v in CFG.items() if k != "image_size"}, train=False, augment=False)


def test_mixup_cutmix_only_for_the_vit_recipe():
    assert mixup_cutmix(CFG) is None
    assert mixup_cutmix({**CFG, "augment": "vit", "mixup_prob": 0.0}) is None
    mixup = mixup_cutmix({**CFG, "augment": "vit"}, num_classes=4)
    assert mixup.mix_prob == 0.5 and mixup.label_smoothing == 0.1 and mixup.num_classes == 4
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 4
    mixed, targets = mixup(images, labels)
    assert mixed.shape == images.shape and targets.shape == (8, 4)
    assert torch.allclose(targets.sum(1), torch.ones(8)) and targets.min() > 0  # smoothed soft targets
