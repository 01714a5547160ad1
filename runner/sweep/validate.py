"""The one validation layer: every config key the project defines, its type and valid values, and
the rules between keys, checked at launch before any data is read or any file is written.

`KEYS` is the schema (one entry per key, in the order of conf/config.yaml); `_cross_key_problems`
holds the rules that involve several keys; `problems(cfg)` runs both and returns one line per
problem (`key=value must be ...`). Objects built from a validated config trust their inputs.
Unknown keys and options are Hydra's to find (runner.sweep.failures says them in one line); values that
reach a constructor or an allocation are bounded here and in runner/sweep/value_checks.py.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.sweep import options, registry, value_checks


class ConfigError(ValueError):
    """A config value that cannot work; each line of the message is meant for the command line."""


Check = Callable[[Any], "str | None"]  # None when the value is valid, else what would be valid

# Bounds that keep a typo from reaching an allocation or the file system: 100000 epochs is
# far beyond any schedule (the paper's is 200); names stay well under the 255-byte file-name cap.
MAX_EPOCHS = 100_000
MAX_NAME, MAX_NAME_PART = 200, 100
# Dataset facts a typo could inflate into an allocation (ImageNet-21k has 21841 classes, 14M images).
MAX_CLASSES, MAX_IMAGE_SIZE, MAX_EXAMPLES = 100_000, 1024, 100_000_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int | None = None, high: int | None = None) -> Check:
    bounds = f" in [{low}, {high}]" if high is not None else f" >= {low}" if low is not None else ""

    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (low is None or value >= low) and (high is None or value <= high)
        return None if ok else f"must be an integer{bounds}"

    return check


def number(
    low: float | None = None, high: float | None = None, *, open_low: bool = False, open_high: bool = False
) -> Check:
    left = "(" if open_low else "["
    right = ")" if open_high else "]"
    if low is not None and high is not None:
        valid = f"a number in {left}{low}, {high}{right}"
    elif low is not None:
        valid = f"a finite number {'>' if open_low else '>='} {low}"
    else:
        valid = "a finite number"

    def check(value: Any) -> str | None:
        if not _is_number(value):
            return f"must be {valid}"
        if low is not None and (value <= low if open_low else value < low):
            return f"must be {valid}"
        if high is not None and (value >= high if open_high else value > high):
            return f"must be {valid}"
        return None

    return check


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> str | None:
        return (
            None
            if value in choices and not (isinstance(value, bool) and True not in choices)
            else (f"must be one of {', '.join(map(str, choices))}")
        )

    return check


def registered(names: Collection[str] | Callable[[], Collection[str]]) -> Check:
    """A name of a registry (or a tuple of names), read when checked: what extensions registered counts
    (runner.sweep.registry). A callable is asked at each check, so its module is imported only then."""

    def check(value: Any) -> str | None:
        known = names() if callable(names) else names
        return None if isinstance(value, str) and value in known else f"must be one of {', '.join(known)}"

    return check


def _imported(module: str, name: str) -> Callable[[], Any]:
    """`module.name`, imported at the first check: the names the training side defines (datasets, models,
    precisions) stay where they are used, and importing this module imports no torch."""

    def get() -> Any:
        return getattr(importlib.import_module(module), name)

    return get


def optional(inner: Check) -> Check:
    def check(value: Any) -> str | None:
        problem = None if value is None else inner(value)
        return problem and f"must be null or {problem.removeprefix('must be ')}"

    return check


def string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty string"


def numbers(positive: bool = False) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, (list, tuple)) or not value or not all(_is_number(v) for v in value):
            return "must be a non-empty list of numbers"
        if positive and not all(v > 0 for v in value):
            return "must be a list of numbers > 0"
        return None

    return check


def increasing_sizes(value: Any) -> str | None:
    if not isinstance(value, (list, tuple)) or not value:
        return "must be a non-empty list of batch sizes, e.g. [16, 32, 64]"
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return "must be a list of positive integers"
    if any(b <= a for a, b in zip(value, value[1:])):
        return "must be strictly increasing"
    return None


def device_name(value: Any) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", value) is not None
    return None if ok else "must be auto, cpu, cuda or cuda:<index>"


def relative_folder(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a non-empty folder name"
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        return "must be a relative folder name inside results_root (no leading '/', no '..')"
    if not value.isprintable():
        return "must be printable (no newlines or control characters)"
    if len(value) > MAX_NAME or any(len(part) > MAX_NAME_PART for part in path.parts):
        return f"must be at most {MAX_NAME} characters, {MAX_NAME_PART} per folder (file systems cap names)"
    return None


def seed_number(value: Any) -> str | None:
    problem = integer(0, 2**32 - 1)(value)
    if problem and isinstance(value, str):  # `seed='${now:%s}'`: the resolver gives text, new at each read
        return f"{problem}, not text (a resolver such as ${{now:...}} gives text, and a new value each time)"
    return problem


def folder_path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a folder path"
    return "must be a folder, not a file" if Path(value).is_file() else None


@dataclass(frozen=True)
class Key:
    check: Check
    required: bool = True  # False: only some options of a group define the key


# The schema: every key the project defines, in the order of conf/config.yaml and its groups.
KEYS: dict[str, Key] = {
    "experiment_name": Key(relative_folder),
    "seed": Key(seed_number),
    "results_root": Key(folder_path),
    "data_dir": Key(folder_path),
    "train.epochs": Key(integer(1, MAX_EPOCHS)),
    "train.batch_size": Key(integer(1)),
    "train.increasing_batch_sizes": Key(increasing_sizes),
    "train.eval_batch_size": Key(integer(1)),
    "train.label_smoothing": Key(number(0, 1, open_high=True)),
    "train.mixup_cutmix_prob": Key(number(0, 1)),
    "train.repeated_aug": Key(integer(1)),
    "train.eval_every": Key(integer(1)),
    "train.grad_norm_examples": Key(integer(0)),
    "train.divergence_check_every": Key(integer(1)),
    "sam.rho": Key(number(0)),
    "sam.alpha": Key(number(0, 1, open_high=True)),
    "sam.adaptive": Key(boolean),
    "sam.eta": Key(number(0)),
    "device": Key(device_name),
    "precision": Key(registered(_imported("runner.training.steps", "PRECISIONS"))),
    "channels_last": Key(one_of("auto", True, False)),
    "compile": Key(boolean),
    "cpu_threads": Key(optional(integer(1))),
    "deterministic": Key(boolean),
    "force": Key(boolean),
    "keep_checkpoint": Key(boolean),
    "progress": Key(boolean),
    # dataset/
    "dataset.name": Key(registered(_imported("runner.data", "DATASETS"))),
    "dataset.root": Key(folder_path),
    "dataset.download": Key(boolean),
    "dataset.num_classes": Key(integer(2, MAX_CLASSES)),
    "dataset.image_size": Key(integer(1, MAX_IMAGE_SIZE)),
    "dataset.channels": Key(integer(1)),
    "dataset.train_size": Key(integer(1, MAX_EXAMPLES)),
    "dataset.test_size": Key(integer(1, MAX_EXAMPLES)),
    "dataset.mean": Key(numbers()),
    "dataset.std": Key(numbers(positive=True)),
    "dataset.augment": Key(registered(_imported("runner.data", "AUGMENTATIONS"))),
    "dataset.crop": Key(registered(_imported("runner.data", "CROPS")), required=False),
    # Optional settings a loader reads when given: the CIFAR md5 check (off for a modified
    # copy) and Tiny-ImageNet's decoded-tensor cache folder.
    "dataset.verify_checksums": Key(boolean, required=False),
    "dataset.cache_dir": Key(optional(folder_path), required=False),
    "dataset.loader": Key(registered(_imported("runner.data", "LOADERS"))),
    "dataset.num_workers": Key(integer(0)),
    # model/
    "model.name": Key(text),
    "model.width": Key(integer(1), required=False),
    "model.drop_path_rate": Key(number(0, 1, open_high=True), required=False),
    "model.init": Key(registered(_imported("runner.models.wide_resnet", "INITS")), required=False),
    "model.architecture": Key(registered(_imported("runner.models.vit", "ARCHITECTURES")), required=False),
    # optimizer/
    "optimizer.name": Key(text),  # one of the optimizer/ options (checked with the config sources)
    "optimizer.lr": Key(number(0, open_low=True)),
    "optimizer.rho": Key(number(0)),
    "optimizer.alpha": Key(number(0, 1, open_high=True), required=False),
    "optimizer.adaptive": Key(boolean),
    "optimizer.eta": Key(number(0)),
    "optimizer.max_grad_norm": Key(optional(number(0, open_low=True))),
    "optimizer.exact_restore": Key(boolean, required=False),
    # schedule/
    "schedule.name": Key(text),  # one of the schedule/ options (checked with the config sources)
    "schedule.lr_policy": Key(registered(_imported("runner.training.schedule", "LR_POLICIES"))),
    "schedule.min_lr_ratio": Key(number(0, 1)),
    "schedule.warmup_epochs": Key(integer(0)),
    "schedule.warmup_start_ratio": Key(number(0, 1, open_low=True)),
    "schedule.rho_follows_lr": Key(boolean),
}

# Groups whose options declare the `<group>.name` a run records; the names come from the options
# found in the config sources (runner.sweep.options), so a user's own option is valid by existing.
NAMED_GROUPS = ("optimizer", "schedule")


def optimizer_targets() -> tuple[str, ...]:
    """Optimizer classes a config may name: the SAM family of `sam_opt.OPTIMIZERS` (built-in and registered)."""
    import sam_opt

    return tuple(sam_opt.OPTIMIZERS)


def _select(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    missing = object()
    value = OmegaConf.select(cfg, key, default=missing)
    if value is missing:
        return False, None
    if isinstance(value, DictConfig | type(OmegaConf.create([]))):
        value = OmegaConf.to_container(value, resolve=True)
    return True, value


def _aliased(cfg: DictConfig, key: str) -> bool:
    """Whether `key` only repeats another checked key (`optimizer.rho: ${sam.rho}`, `dataset.root:
    ${data_dir}`): that key's own line names what the user wrote."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not (isinstance(node, DictConfig) and leaf in node and OmegaConf.is_interpolation(node, leaf)):
        return False
    source = re.fullmatch(r"\$\{([\w.]+)\}", str(node._get_node(leaf)._value()))
    return source is not None and source.group(1) in KEYS


def _schema_problems(cfg: DictConfig) -> tuple[list[str], set[str]]:
    found, bad = [], set()
    for key, spec in KEYS.items():
        if _aliased(cfg, key):
            continue
        present, value = _select(cfg, key)
        if not present:
            if spec.required:
                found.append(f"{key} is missing from the config")
                bad.add(key)
            continue
        problem = spec.check(value)
        if problem:
            found.append(f"{key}={value!r} {problem}")
            bad.add(key)
    return found, bad


def world_size() -> int:
    """Processes that will share each batch: torchrun's WORLD_SIZE or SLURM's task count."""
    for variable in ("WORLD_SIZE", "SLURM_NTASKS"):
        if os.environ.get(variable, "").isdigit():
            return max(1, int(os.environ[variable]))
    return 1


def _splits_increasing_sizes(cfg: DictConfig) -> bool:
    """Whether the schedule's stages are written from `train.increasing_batch_sizes` (the + B kind)."""
    node = cfg.schedule._get_node("stages") if "stages" in cfg.schedule else None
    written = None if node is None else node._value()
    return isinstance(written, str) and "train.increasing_batch_sizes" in written


def _option_name_problems(cfg: DictConfig, bad: set[str]) -> list[str]:
    """`optimizer.name` and `schedule.name` must be declared by an option of their group."""
    found = []
    for group in NAMED_GROUPS:
        key = f"{group}.name"
        if key in bad:
            continue
        names = options.declared_names(group, cfg)
        value = OmegaConf.select(cfg, key)
        if names and value not in names:
            found.append(
                f"{key}={value!r} must be one of {', '.join(names)} (the {group}/ options of the config "
                f"sources; add conf/{group}/{value}.yaml to a --config-dir for a new one)"
            )
    return found


def _stage_problems(cfg: DictConfig, bad: set[str], workers: int) -> list[str]:
    found: list[str] = []
    if {"train.increasing_batch_sizes", "train.batch_size", "train.epochs"} & bad:
        return found  # the stages are built from those keys; their own lines say what is wrong
    if _splits_increasing_sizes(cfg) and cfg.train.epochs < len(cfg.train.increasing_batch_sizes):
        return [
            f"train.epochs={cfg.train.epochs} is fewer than the {len(cfg.train.increasing_batch_sizes)} "
            f"train.increasing_batch_sizes; every stage needs at least one epoch"
        ]
    _, stages = _select(cfg, "schedule.stages")
    if not isinstance(stages, list) or not stages:
        return ["schedule.stages must be a non-empty list of {batch_size, epochs}"]
    train_size = cfg.dataset.train_size if "dataset.train_size" not in bad else None
    total = 0
    for index, stage in enumerate(stages):
        stage = stage if isinstance(stage, Mapping) else {}
        size, epochs = stage.get("batch_size"), stage.get("epochs")
        where = f"schedule.stages[{index}]"
        if integer(1)(size):
            found.append(f"{where}.batch_size={size!r} must be a positive integer")
        elif train_size is not None and size > train_size:
            found.append(
                f"{where}.batch_size={size} is larger than the training set of "
                f"{cfg.dataset.name} ({train_size} examples)"
            )
        elif size % workers:
            found.append(
                f"{where}.batch_size={size} is not divisible by the {workers} workers; "
                f"batch sizes are global, so choose sizes that split evenly"
            )
        if integer(1)(epochs):
            found.append(f"{where}.epochs={epochs!r} must be a positive integer")
        else:
            total += epochs
    if not found and "train.epochs" not in bad and total != cfg.train.epochs:
        found.append(
            f"schedule.stages epochs add up to {total}, but train.epochs={cfg.train.epochs}; "
            f"make them equal (the increasing-batch schedule splits train.epochs by itself)"
        )
    return found


def _path_problems(cfg: DictConfig, bad: set[str]) -> list[str]:
    """A run folder given by hand must stay inside results_root, like the ones the config names."""
    node = cfg._get_node("run_dir") if "run_dir" in cfg else None
    written = None if node is None else node._value()
    if "results_root" in bad or not isinstance(written, str) or "${" in written:
        return []  # the default: built from results_root, experiment_name (checked) and the cell
    root = Path(str(cfg.results_root)).resolve()
    if not Path(written).resolve().is_relative_to(root):
        return [
            f"run_dir={written!r} must lie inside results_root={str(cfg.results_root)!r}; "
            f"set results_root (and experiment_name) instead of run_dir"
        ]
    return []


def _cross_key_problems(cfg: DictConfig, bad: set[str], check_environment: bool, workers: int) -> list[str]:
    import sharpness
    from runner import data
    from runner.models import model_problems

    found = _stage_problems(cfg, bad, workers)
    found.extend(_path_problems(cfg, bad))
    if (
        "train.epochs" not in bad
        and "schedule.warmup_epochs" not in bad
        and (cfg.schedule.warmup_epochs >= cfg.train.epochs)
    ):
        found.append(
            f"schedule.warmup_epochs={cfg.schedule.warmup_epochs} must be below train.epochs={cfg.train.epochs}"
        )
    if "optimizer.rho" not in bad and cfg.optimizer.name == "sgd" and cfg.optimizer.rho != 0:
        found.append(
            f"optimizer.rho={cfg.optimizer.rho!r} with optimizer=sgd: SGD has no perturbation; "
            f"use optimizer=sam, or sam.rho=... to set rho for SAM and GSAM in a sweep"
        )
    found.extend(_option_name_problems(cfg, bad))
    target = OmegaConf.select(cfg, "optimizer._target_")
    if target not in optimizer_targets():
        found.append(
            f"optimizer._target_={target!r} must be one of {', '.join(optimizer_targets())} "
            f"(a SAM variant of your own: register it, see docs/architecture.md)"
        )
    base = str(OmegaConf.select(cfg, "optimizer.base._target_"))
    if not re.fullmatch(r"torch\.optim\.[A-Z]\w*", base):
        found.append(
            f"optimizer.base._target_={base!r} must be a torch.optim optimizer class, "
            f"e.g. torch.optim.SGD or torch.optim.AdamW"
        )
    found.extend(model_problems(cfg.model))
    if not ({"dataset.channels", "dataset.mean", "dataset.std"} & bad):
        for key in ("mean", "std"):
            if len(cfg.dataset[key]) != cfg.dataset.channels:
                found.append(
                    f"dataset.{key} has {len(cfg.dataset[key])} values but dataset.channels="
                    f"{cfg.dataset.channels}; give one per channel"
                )
    if "dataset.loader" not in bad and "dataset.name" not in bad:
        found.extend(data.loader_problems(cfg.dataset))
        if "train.mixup_cutmix_prob" not in bad and cfg.train.mixup_cutmix_prob and cfg.dataset.loader != "torchvision":
            found.append(
                f"train.mixup_cutmix_prob={cfg.train.mixup_cutmix_prob} needs dataset.loader=torchvision "
                f"(the ViT recipe)"
            )
        if "train.repeated_aug" not in bad and cfg.train.repeated_aug > 1 and cfg.dataset.loader != "torchvision":
            found.append(
                f"train.repeated_aug={cfg.train.repeated_aug} needs dataset.loader=torchvision "
                f"(the ViT recipe; the device loader makes one pass per epoch)"
            )
    if check_environment and "device" not in bad and str(cfg.device).startswith("cuda"):
        import torch

        index = int(str(cfg.device).partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            found.append(
                f"device={cfg.device!r} but this machine has {torch.cuda.device_count()} CUDA devices; "
                f"use device=cpu or device=auto"
            )
    # A bad measure setting or a tracker that is not installed must stop the run now, not after hours.
    found.extend(sharpness.config_problems(cfg.sharpness, cfg.dataset))
    if "logger" in cfg:
        from runner.loggers import logger_problems

        found.extend(logger_problems(cfg))
    from runner.training.debug import problems as debug_problems  # the debug presets' keys, when one is selected

    found.extend(debug_problems(cfg))
    return found


def problems(cfg: DictConfig, *, check_environment: bool = True, workers: int | None = None) -> list[str]:
    """Every problem of `cfg`, one line each (empty when it can run).

    `check_environment=False` skips what only the machine that trains can tell
    (its GPUs): a sweep submitted from a login node checks that in each job.
    """
    try:
        registry.load_installed()
        found, bad = _schema_problems(cfg)
        found += _cross_key_problems(cfg, bad, check_environment, workers or world_size())
        return found + value_checks.problems(cfg, bad)
    except Exception as error:  # an interpolation that cannot resolve, a value of an unexpected shape
        message = str(error).strip().splitlines()
        return [f"config cannot be resolved: {message[0] if message else type(error).__name__}"]


def validate(cfg: DictConfig, *, check_environment: bool = True, workers: int | None = None) -> None:
    """Raise `ConfigError` listing every problem, including missing data, before any work starts."""
    found = problems(cfg, check_environment=check_environment, workers=workers)
    if not found:
        from runner import data

        try:
            data.check_available(cfg.dataset)
        except (FileNotFoundError, ValueError) as error:
            found.append(str(error))
    if found:
        raise ConfigError("\n".join(found))
