"""Checks of a composed config, run before any data is touched or any file is written.

Each problem becomes one line that names the key, the bad value and what would
be valid; all problems are reported together, so a user fixes a command line once.
Hydra itself reports unknown option names (with the list of options).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

import sharpness
from runner import data
from runner.train import PRECISIONS


class ConfigError(ValueError):
    """A config value that cannot work; the message is meant for the command line."""


def _number(cfg: DictConfig, key: str) -> Any:
    return OmegaConf.select(cfg, key)


def problems(cfg: DictConfig) -> list[str]:
    """Every problem found in `cfg` (empty when the config can run)."""
    found: list[str] = []

    def positive(key: str, integer: bool = False) -> None:
        value = _number(cfg, key)
        kind = "integer" if integer else "number"
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if ok and integer and int(value) != value:
            ok = False
        if not ok:
            found.append(f"{key}={value!r} must be a positive {kind}")

    def non_negative(key: str) -> None:
        value = _number(cfg, key)
        if value is None:
            return
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            found.append(f"{key}={value!r} must be a finite number >= 0")

    positive("optimizer.lr")
    positive("train.epochs", integer=True)
    positive("train.eval_batch_size", integer=True)
    non_negative("optimizer.rho")
    non_negative("optimizer.alpha")
    non_negative("optimizer.eta")
    if cfg.optimizer.name == "sgd" and _number(cfg, "optimizer.rho") not in (0, 0.0):
        found.append(
            f"optimizer.rho={cfg.optimizer.rho!r} with optimizer=sgd: SGD has no perturbation; "
            f"use optimizer=sam, or sam.rho=... to set rho for SAM and GSAM in a sweep"
        )

    train_size = _number(cfg, "dataset.train_size")
    stages = _number(cfg, "schedule.stages")
    if not stages:
        found.append("schedule.stages is empty; give a list of {batch_size, epochs}")
    else:
        total = 0
        for index, stage in enumerate(stages):
            size, epochs = stage.get("batch_size"), stage.get("epochs")
            if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
                found.append(f"schedule.stages[{index}].batch_size={size!r} must be a positive integer")
            elif isinstance(train_size, int) and size > train_size:
                found.append(
                    f"schedule.stages[{index}].batch_size={size} is larger than the training set of "
                    f"{cfg.dataset.name} ({train_size} examples)"
                )
            if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0:
                found.append(f"schedule.stages[{index}].epochs={epochs!r} must be a positive integer")
            else:
                total += epochs
        if isinstance(cfg.train.epochs, int) and total != cfg.train.epochs and not any("epochs=" in p for p in found):
            found.append(
                f"schedule.stages epochs add up to {total}, but train.epochs={cfg.train.epochs}; "
                f"make them equal (the increasing-batch schedule splits train.epochs by itself)"
            )
    warmup = _number(cfg, "schedule.warmup_epochs")
    if not isinstance(warmup, int) or warmup < 0 or (isinstance(cfg.train.epochs, int) and warmup >= cfg.train.epochs):
        found.append(f"schedule.warmup_epochs={warmup!r} must be an integer in [0, train.epochs)")
    ratio = _number(cfg, "schedule.min_lr_ratio")
    if not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1:
        found.append(f"schedule.min_lr_ratio={ratio!r} must lie in [0, 1]")
    if cfg.schedule.lr_policy not in ("constant", "cosine", "linear"):
        found.append(f"schedule.lr_policy={cfg.schedule.lr_policy!r} must be one of constant, cosine, linear")

    if cfg.precision not in PRECISIONS:
        found.append(f"precision={cfg.precision!r} must be one of {', '.join(PRECISIONS)}")
    if str(cfg.device) not in ("auto", "cpu", "cuda") and not str(cfg.device).startswith("cuda:"):
        found.append(f"device={cfg.device!r} must be auto, cpu, cuda or cuda:<index>")
    if str(cfg.dataset.loader) not in ("device", "torchvision"):
        found.append(f"dataset.loader={cfg.dataset.loader!r} must be device or torchvision")
    elif cfg.dataset.loader == "device" and not data.is_in_memory(cfg.dataset):
        found.append(f"dataset.loader=device cannot hold {cfg.dataset.name} in memory; use dataset.loader=torchvision")
    if cfg.train.mixup_cutmix_prob and cfg.dataset.loader != "torchvision":
        found.append("train.mixup_cutmix_prob > 0 needs dataset.loader=torchvision (the ViT recipe)")
    if not isinstance(cfg.train.repeated_aug, int) or cfg.train.repeated_aug < 1:
        found.append(f"train.repeated_aug={cfg.train.repeated_aug!r} must be an integer >= 1")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        found.append(f"seed={cfg.seed!r} must be an integer")
    # A bad measure setting must stop the run now, not after hours of training.
    found.extend(sharpness.config_problems(cfg.sharpness, cfg.dataset))
    return found


def validate(cfg: DictConfig) -> None:
    """Raise `ConfigError` listing every problem, including missing data, before any work starts."""
    try:
        found = problems(cfg)
    except Exception as error:  # an interpolation that cannot resolve, a missing key
        raise ConfigError(f"config cannot be resolved: {error}") from error
    if not found:
        try:
            data.check_available(cfg.dataset)
        except (FileNotFoundError, ValueError) as error:
            found.append(str(error))
    if found:
        raise ConfigError("; ".join(found))
