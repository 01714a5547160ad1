"""Models of the grid, built from the `model/` config group.

CIFAR-style ResNet-18 and WideResNet-28-10 (3x3 stem for 32 px inputs) live
here; ImageNet ResNet-50 comes from torchvision and the ViTs from timm, so the
config names a `_target_` and this module only drops the bookkeeping keys.
"""

from __future__ import annotations

from typing import Any, Mapping

import hydra.utils
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from runner.models.resnet_cifar import cifar_resnet18
from runner.models.wide_resnet import wide_resnet28_10, wide_resnet
from runner.models.imagenet import imagenet_resnet50, vit

# Keys of a model config that describe the model for the records, not the constructor.
_BOOKKEEPING_KEYS = ("name", "family")


def build_model(model_cfg: DictConfig | Mapping[str, Any]) -> nn.Module:
    """Instantiate the model described by a `model/` config option."""
    cfg = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(dict(model_cfg))
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in _BOOKKEEPING_KEYS}
    if "_target_" not in kwargs:
        raise ValueError(f"model config {cfg.get('name', '?')!r} has no _target_; expected a constructor path")
    return hydra.utils.instantiate(kwargs)


__all__ = ["build_model", "cifar_resnet18", "wide_resnet28_10", "wide_resnet", "imagenet_resnet50", "vit"]
