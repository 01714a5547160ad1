"""PIL transforms of the torchvision path and the batch-level parts of the ViT recipe.

`dataset.augment` picks the training recipe:

- `crop_flip`: RandomCrop(image_size, padding=image_size // 8) + horizontal
  flip, the CNN recipe of the paper (padding 4 at 32 px);
- `vit`: crop_flip + AutoAugment (CIFAR-10 policy) + RandomErasing(p=0.25),
  the per-image half of the authors' ViT recipe; mixup/cutmix (`mixup_cutmix`)
  and repeated augmentation (`runner.data.loader`) are the batch-level half;
- `none`: no augmentation.

ImageNet uses RandomResizedCrop + flip for training and Resize + CenterCrop
for testing instead of the padded crop. Every recipe ends with ToTensor and
per-channel Normalize; test transforms never augment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .common import channel_stats, dataset_name, setting

if TYPE_CHECKING:
    from timm.data import Mixup
    from torchvision import transforms as T

AUGMENTATIONS = ("crop_flip", "vit", "none")
# mixup/cutmix settings of the ViT recipe (DeiT's alphas; probability and smoothing from the protocol)
MIXUP_DEFAULTS = {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "mixup_prob": 0.5, "mixup_switch_prob": 0.5, "label_smoothing": 0.1}


def augmentation(dataset_cfg: Mapping[str, Any]) -> str:
    """`dataset.augment`, checked against the known recipes."""
    recipe = str(setting(dataset_cfg, "augment", "none"))
    if recipe not in AUGMENTATIONS:
        raise ValueError(f"dataset {dataset_name(dataset_cfg)}: dataset.augment={recipe!r}; valid: {list(AUGMENTATIONS)}")
    return recipe


def _to_normalised_tensor(dataset_cfg: Mapping[str, Any]) -> list:
    from torchvision import transforms as T  # deferred: a slow import most jobs never need

    return [T.ToTensor(), T.Normalize(channel_stats(dataset_cfg, "mean"), channel_stats(dataset_cfg, "std"))]


def build_transform(dataset_cfg: Mapping[str, Any], train: bool, augment: bool) -> T.Compose:
    """The PIL-to-normalised-tensor transform of one split; `augment` only matters when `train`."""
    from torchvision import transforms as T  # deferred: a slow import most jobs never need

    recipe = augmentation(dataset_cfg) if train and augment else "none"
    size = int(setting(dataset_cfg, "image_size"))
    large = dataset_name(dataset_cfg) == "imagenet"
    steps: list = []
    if large and recipe == "none":
        steps += [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)]  # 256 → 224 at the standard size
    elif large:
        steps += [T.RandomResizedCrop(size), T.RandomHorizontalFlip()]
    elif recipe != "none":
        steps += [T.RandomCrop(size, padding=size // 8), T.RandomHorizontalFlip()]
    if recipe == "vit":
        policy = T.AutoAugmentPolicy.IMAGENET if large else T.AutoAugmentPolicy.CIFAR10
        steps.append(T.AutoAugment(policy))
    steps += _to_normalised_tensor(dataset_cfg)
    if recipe == "vit":
        steps.append(T.RandomErasing(p=0.25))
    return T.Compose(steps)


def mixup_cutmix(settings: Mapping[str, Any], num_classes: int | None = None) -> Mixup | None:
    """A timm `Mixup` for the ViT recipe, or None when the recipe does not mix.

    `settings` is the dataset config (mixing is on when `augment` is `vit`) or
    any mapping with an explicit `mixup_prob`; `mixup_alpha`, `cutmix_alpha`,
    `mixup_switch_prob` and `label_smoothing` override `MIXUP_DEFAULTS`. The
    returned callable maps `(images, labels)` to `(mixed images, soft targets)`
    with the label smoothing already applied, so train with a soft-target
    cross-entropy (no second smoothing); timm requires an even batch size.
    """
    from timm.data import Mixup

    values = {key: setting(settings, key, default) for key, default in MIXUP_DEFAULTS.items()}
    explicit_prob = setting(settings, "mixup_prob", None)
    if explicit_prob is None:
        enabled = setting(settings, "augment", "none") == "vit"
    else:
        enabled = float(explicit_prob) > 0
    if not enabled:
        return None
    classes = int(num_classes if num_classes is not None else setting(settings, "num_classes"))
    return Mixup(
        mixup_alpha=float(values["mixup_alpha"]),
        cutmix_alpha=float(values["cutmix_alpha"]),
        prob=float(values["mixup_prob"]),
        switch_prob=float(values["mixup_switch_prob"]),
        label_smoothing=float(values["label_smoothing"]),
        num_classes=classes,
    )
