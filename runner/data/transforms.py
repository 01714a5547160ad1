"""PIL transforms of the torchvision path, the crop padding rule, and the batch-level parts of the ViT recipe.

Two keys of the dataset config choose the training transform, never its name:

- `dataset.augment`, the recipe: `crop_flip` (a random crop + horizontal
  flip, the CNN recipe of the paper), `crop` (the random crop alone, for
  images a mirror changes the meaning of, such as digits), `vit` (crop_flip + AutoAugment with
  grey fill + the authors' RandomErasing, the per-image half of their ViT recipe;
  mixup/cutmix (`mixup_cutmix`) and repeated augmentation
  (`runner.data.loader`) are the batch-level half) or `none`;
- `dataset.crop`, how an image is cut to `image_size` (`CROPS`): `padded` for
  images stored at that size (a random crop of the zero-padded image, padding
  `crop_padding(image_size)`; evaluation takes the image as it is; AutoAugment
  with the CIFAR-10 policy), `resized` for images of any size, ImageNet's
  (RandomResizedCrop; evaluation resizes to image_size * 256/224 and takes the
  centre crop; AutoAugment with the ImageNet policy). Absent, it is `padded`.

Every recipe ends with ToTensor and per-channel Normalize; test transforms
never augment. `runner.training.device_loader` implements `crop_flip` and `crop` with
the padded crop on the device; `device_can_augment` says whether a dataset's recipe is that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .common import channel_stats, dataset_name, setting

if TYPE_CHECKING:
    from timm.data import Mixup
    from torchvision import transforms as T

AUGMENTATIONS = ("crop_flip", "crop", "vit", "none")
# The recipes that mirror images: all but `crop` (and `none`).
FLIPPING = ("crop_flip", "vit")
# The recipes `runner.training.device_loader` cuts itself (with the padded crop).
DEVICE_RECIPES = ("crop_flip", "crop")
# mixup/cutmix settings of the ViT recipe, the authors' (main_ViT.py: both alphas 1.0, a batch mixed
# with probability 0.5, then cutmix or mixup with equal chance; label smoothing 0.1)
MIXUP_DEFAULTS = {
    "mixup_alpha": 1.0,
    "cutmix_alpha": 1.0,
    "mixup_prob": 0.5,
    "mixup_switch_prob": 0.5,
    "label_smoothing": 0.1,
}


# AutoAugment fills what a shear, translation or rotation uncovers with grey, as the authors'
# CIFAR10Policy (utils/autoaug.py) does; torchvision's default would be black.
AUTOAUGMENT_FILL = (128, 128, 128)
# The authors' RandomErasing settings (main_ViT.py: --re 0.25, --re_sh 0.4, --re_r1 0.3; sl 0.02).
RANDOM_ERASING = MappingProxyType({"p": 0.25, "scale": (0.02, 0.4), "ratio": (0.3, 1 / 0.3)})


def crop_padding(image_size: int) -> int:
    """Zero padding of the random crop: an eighth of the side (4 px at 32 px, the protocol's), at least 1 px.

    The one statement of the rule: the torchvision transform, the device loader's
    callers and the benchmarks all take the padding from here.
    """
    return max(1, int(image_size) // 8)


Steps = Callable[[Any, int], list]  # (torchvision.transforms, image_size) -> PIL transforms


@dataclass(frozen=True)
class Crop:
    """How an image is cut to image_size: randomly when training augments, deterministically otherwise."""

    random: Steps  # the training crop, before the flip
    plain: Steps  # evaluation and un-augmented training
    autoaugment: str  # the `T.AutoAugmentPolicy` the ViT recipe applies to such images


CROPS: Mapping[str, Crop] = MappingProxyType(
    {
        "padded": Crop(
            random=lambda T, size: [T.RandomCrop(size, padding=crop_padding(size))],
            plain=lambda T, size: [],  # the images already are image_size
            autoaugment="CIFAR10",
        ),
        "resized": Crop(
            random=lambda T, size: [T.RandomResizedCrop(size)],
            plain=lambda T, size: [T.Resize(round(size * 256 / 224)), T.CenterCrop(size)],  # 256 → 224 at 224 px
            autoaugment="IMAGENET",
        ),
    }
)


def augmentation(dataset_cfg: Mapping[str, Any]) -> str:
    """`dataset.augment`, checked against the known recipes."""
    recipe = str(setting(dataset_cfg, "augment", "none"))
    if recipe not in AUGMENTATIONS:
        raise ValueError(
            f"dataset {dataset_name(dataset_cfg)}: dataset.augment={recipe!r}; valid: {list(AUGMENTATIONS)}"
        )
    return recipe


def cropping(dataset_cfg: Mapping[str, Any]) -> str:
    """`dataset.crop` (`padded` when absent), checked against `CROPS`."""
    name = str(setting(dataset_cfg, "crop", "padded"))
    if name not in CROPS:
        raise ValueError(f"dataset {dataset_name(dataset_cfg)}: dataset.crop={name!r}; valid: {list(CROPS)}")
    return name


def flips(dataset_cfg: Mapping[str, Any]) -> bool:
    """Whether the training recipe mirrors images (every recipe but `crop` and `none`)."""
    return augmentation(dataset_cfg) in FLIPPING


def device_can_augment(dataset_cfg: Mapping[str, Any]) -> bool:
    """Whether `runner.training.device_loader` applies this dataset's training recipe: none, or crop(_flip) padded."""
    recipe = augmentation(dataset_cfg)
    return recipe == "none" or (recipe in DEVICE_RECIPES and cropping(dataset_cfg) == "padded")


def _to_normalised_tensor(dataset_cfg: Mapping[str, Any]) -> list:
    from torchvision import transforms as T  # deferred: a slow import most jobs never need

    return [T.ToTensor(), T.Normalize(channel_stats(dataset_cfg, "mean"), channel_stats(dataset_cfg, "std"))]


def build_transform(dataset_cfg: Mapping[str, Any], train: bool, augment: bool) -> T.Compose:
    """The PIL-to-normalised-tensor transform of one split; `augment` only matters when `train`."""
    from torchvision import transforms as T  # deferred: a slow import most jobs never need

    recipe = augmentation(dataset_cfg) if train and augment else "none"
    cut = CROPS[cropping(dataset_cfg)]
    size = int(setting(dataset_cfg, "image_size"))
    if recipe == "none":
        steps = cut.plain(T, size)
    else:
        steps = [*cut.random(T, size)]
        if recipe in FLIPPING:
            steps.append(T.RandomHorizontalFlip())
    if recipe == "vit":
        steps.append(T.AutoAugment(T.AutoAugmentPolicy[cut.autoaugment], fill=list(AUTOAUGMENT_FILL)))
    steps += _to_normalised_tensor(dataset_cfg)
    if recipe == "vit":
        steps.append(_random_erasing(T, dataset_cfg))
    return T.Compose(steps)


def _random_erasing(T: Any, dataset_cfg: Mapping[str, Any]) -> Any:
    """The authors' RandomErasing (utils/random_erasing.py): p 0.25, area 2-40 %, aspect 0.3-3.3.

    Like theirs, the erased box is filled with the dataset's mean pixel values
    written into the already normalised tensor (not with 0, the normalised mean).
    """
    return T.RandomErasing(
        p=RANDOM_ERASING["p"],
        scale=RANDOM_ERASING["scale"],
        ratio=RANDOM_ERASING["ratio"],
        value=[float(v) for v in channel_stats(dataset_cfg, "mean")],
    )


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
