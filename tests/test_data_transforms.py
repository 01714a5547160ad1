"""Augmentation recipes: off means exact normalisation, crop_flip is a padded crop + flip, vit adds its parts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision import transforms as T

from runner.data import build_dataset, build_transform, load_tensors, mixup_cutmix

CFG = {"name": "synthetic", "num_classes": 4, "image_size": 16, "channels": 3, "train_size": 32, "test_size": 8,
       "seed": 0, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3], "augment": "crop_flip", "download": False}


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
    for dataset in (build_dataset(CFG, "train", augment=False), build_dataset({**CFG, "augment": "none"}, "train", True)):
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


def test_crop_padding_is_an_eighth_of_the_size():
    crop = next(t for t in build_transform({**CFG, "image_size": 32}, train=True, augment=True).transforms
                if isinstance(t, T.RandomCrop))
    assert crop.size == (32, 32) and crop.padding == 4


def test_vit_recipe_parts():
    steps = build_transform({**CFG, "augment": "vit"}, train=True, augment=True).transforms
    kinds = [type(step) for step in steps]
    assert kinds == [T.RandomCrop, T.RandomHorizontalFlip, T.AutoAugment, T.ToTensor, T.Normalize, T.RandomErasing]
    assert steps[2].policy == T.AutoAugmentPolicy.CIFAR10 and steps[-1].p == 0.25
    image, _ = build_dataset({**CFG, "augment": "vit"}, "train", augment=True)[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32


def test_imagenet_transforms():
    cfg = {**CFG, "name": "imagenet", "image_size": 224}
    assert [type(s) for s in build_transform(cfg, train=True, augment=True).transforms][:2] == [
        T.RandomResizedCrop, T.RandomHorizontalFlip]
    test_steps = build_transform(cfg, train=False, augment=True).transforms
    assert isinstance(test_steps[0], T.Resize) and test_steps[0].size == 256
    assert isinstance(test_steps[1], T.CenterCrop) and test_steps[1].size == (224, 224)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match=r"dataset.augment='autoaug'; valid: \['crop_flip', 'vit', 'none'\]"):
        build_transform({**CFG, "augment": "autoaug"}, train=True, augment=True)
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
