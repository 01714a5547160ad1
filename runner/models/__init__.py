"""Models of the grid, built from the `model/` config group through the project's own registry.

CIFAR-style ResNet-18 and WideResNet-28-10 (3x3 stem for 32 px inputs) live
here, with the ViT of the authors' code (timm's as an option); ImageNet ResNet-50
comes from torchvision.

A config names its model by `model.name`, and `MODELS` maps each name to its
constructor. The `_target_` the YAML files carry is checked against that
constructor, never imported: configs are read back from results folders
(`python -m sharpness`, resumed runs), and a `_target_` there could name any
callable (`io.open` truncates the file it is given). Nested values are passed
to the constructor as plain data, never instantiated either.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from runner.models.imagenet import imagenet_resnet50
from runner.models.resnet_cifar import cifar_resnet18
from runner.models.vit import vit
from runner.models.wide_resnet import wide_resnet, wide_resnet28_10

# model.name -> constructor; the only models a config can build.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": cifar_resnet18,
    "wrn28_10": wide_resnet,
    "resnet50": imagenet_resnet50,
    "vit_tiny": vit,
    "vit_small": vit,
}

# Keys of a model config that describe the model for the records (or name it), not constructor arguments.
_BOOKKEEPING_KEYS = ("name", "family", "_target_")


def constructor_path(name: str) -> str:
    """The `_target_` the model options give for `name`: the package-level name of a built-in
    constructor, the module path of one an extension registered (runner.sweep.registry)."""
    constructor = MODELS[name]
    if globals().get(constructor.__name__) is constructor:
        return f"{__name__}.{constructor.__name__}"
    return f"{constructor.__module__}.{constructor.__qualname__}"


def _accepted_targets(name: str) -> set[str]:
    constructor = MODELS[name]
    return {constructor_path(name), f"{constructor.__module__}.{constructor.__qualname__}"}


def _arguments(name: str) -> list[str]:
    return list(inspect.signature(MODELS[name]).parameters)


def _keys_and_values(model_cfg: DictConfig | Mapping[str, Any]) -> tuple[list[str], Any, Any]:
    if isinstance(model_cfg, DictConfig):
        return (
            [str(key) for key in model_cfg.keys()],
            OmegaConf.select(model_cfg, "name", default=None),
            OmegaConf.select(model_cfg, "_target_", default=None),
        )
    return [str(key) for key in model_cfg], model_cfg.get("name"), model_cfg.get("_target_")


def model_problems(model_cfg: DictConfig | Mapping[str, Any] | None) -> list[str]:
    """What is wrong with a model config, one line each; empty when `build_model` can build it.

    Checks the name against the registry, the `_target_` (optional) against the
    name's constructor, and every other key against the constructor's arguments.
    Values are not resolved or type-checked here.
    """
    if not isinstance(model_cfg, (DictConfig, Mapping)):
        return [f"model={model_cfg!r} must be a model config (select one with model=<name>: {', '.join(MODELS)})"]
    keys, name, target = _keys_and_values(model_cfg)
    if not isinstance(name, str) or name not in MODELS:
        return [f"model.name={name!r} must be one of {', '.join(MODELS)}"]
    found = []
    if target is not None and target not in _accepted_targets(name):
        found.append(
            f"model._target_={target!r} is not the constructor of model.name={name!r} ({constructor_path(name)})"
        )
    arguments = _arguments(name)
    for key in keys:
        if key not in _BOOKKEEPING_KEYS and key not in arguments:
            found.append(f"model.{key} is not an argument of {constructor_path(name)} (valid: {', '.join(arguments)})")
    return found


def build_model(model_cfg: DictConfig | Mapping[str, Any]) -> nn.Module:
    """The model a `model/` config option describes, built by the registered constructor of `model.name`.

    Raises ValueError (one line) for a name outside the registry, a `_target_`
    other than that name's constructor, or a key the constructor does not take.
    """
    problems = model_problems(model_cfg)
    if problems:
        raise ValueError(problems[0])
    cfg = model_cfg if isinstance(model_cfg, DictConfig) else OmegaConf.create(dict(model_cfg))
    settings = OmegaConf.to_container(cfg, resolve=True)
    kwargs = {key: value for key, value in settings.items() if key not in _BOOKKEEPING_KEYS}
    return MODELS[settings["name"]](**kwargs)


__all__ = [
    "MODELS",
    "build_model",
    "constructor_path",
    "model_problems",
    "cifar_resnet18",
    "wide_resnet28_10",
    "wide_resnet",
    "imagenet_resnet50",
    "vit",
]
