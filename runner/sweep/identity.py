"""Run identity: which folder a cell's effective config belongs in.

A cell is named by its grid axes (dataset, model, optimizer, schedule, seed)
plus a *variant*: every value the run computes with that differs from what the
experiment preset (or, without a preset, the primary config) gives for the same
axes. `sam.rho=0.1` and `optimizer.rho=0.1` change the same computed value,
so they land in one folder; keys that change nothing computed (`NEUTRAL_KEYS`)
never enter the name. The reference is composed by Hydra, so this module only
compares two plain configs and writes the difference as a short, stable name.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Overrides that pick a cell of the grid rather than vary it; the reference keeps them.
AXES = ("experiment", "dataset", "model", "optimizer", "schedule", "seed")

# Keys that do not change what a run computes: where things live, how it is shown, how fast it
# runs. A resumed or finished run may differ in them, and they never enter a folder name.
NEUTRAL_KEYS = (
    "force",
    "progress",
    "tags",
    "debug.overfit_check",
    "debug.profile",
    "keep_checkpoint",
    "results_root",
    "data_dir",
    "run_dir",
    "variant",
    "experiment_name",
    "sharpness",
    "logger",
    "hydra",
    "dataset.root",
    "dataset.download",
    "dataset.num_workers",
    "device",
    "compile",
    "cpu_threads",
    "train.divergence_check_every",
    "plugins",  # which modules were imported; what they register is named by the keys that use it
)
# Sources of interpolations: what they change is visible where it is consumed
# (`sam.rho` in `optimizer.rho` of SAM and GSAM, the batch sizes in `schedule.stages`).
SOURCE_KEYS = ("sam",)
# The train keys a schedule's stages may be derived from (constant batch first, then the + B ladder).
STAGE_SOURCES = ("train.batch_size", "train.increasing_batch_sizes")
# Config groups that are not axes and never change what is computed.
NEUTRAL_GROUPS = ("sharpness", "logger", "hydra")

MAX_NAME = 64  # characters of a variant segment before it is shortened with a hash


@dataclass(frozen=True)
class Identity:
    """A cell's variant: the folder segment ("" for the preset's own values) and the values behind it."""

    name: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def override_key(override: str) -> str:
    """`+optimizer.rho=0.1` -> `optimizer.rho`; `optimizer/base=adamw` -> `optimizer/base`."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def reference_overrides(overrides: Iterable[str], groups: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Split a cell's overrides into the axes (kept by the reference) and the non-axis group choices."""
    groups = set(groups)
    axes, group_choices = [], []
    for override in overrides:
        key = override_key(override)
        root = key.split("/")[0].split(".")[0]
        if key in AXES:
            axes.append(override)
        elif root in NEUTRAL_GROUPS or key.startswith("hydra"):
            continue
        elif "/" in key or key in groups:
            group_choices.append(override)
    return axes, group_choices


def _drop(flat: dict[str, Any], prefixes: Iterable[str]) -> dict[str, Any]:
    prefixes = tuple(prefixes)
    return {k: v for k, v in flat.items() if not any(k == p or k.startswith(p + ".") for p in prefixes)}


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists stay whole values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resolved_flat(config: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, DictConfig):
        container = OmegaConf.to_container(config, resolve=False)
        for key in ("hydra", "run_dir", "variant"):
            container.pop(key, None)
        config = OmegaConf.to_container(OmegaConf.create(container), resolve=True)
    return flatten(config)


def computed_values(config: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The flattened values a run computes with (neutral and source keys left out).

    The batch sizes count through `schedule.stages`, which the schedule builds from
    `train.batch_size` or `train.increasing_batch_sizes`; those two are sources.
    """
    flat = _resolved_flat(config)
    if flat.get("precision") == "auto" and flat.get("device") == "cpu":
        # `auto` is fp32 on the CPU: a run recorded with it there computed what fp32 computes
        # (the default was `auto` before it became fp32), so its folder is still the same cell.
        flat["precision"] = "fp32"
    flat = _drop(flat, NEUTRAL_KEYS + SOURCE_KEYS)
    flat.pop("train.batch_size", None)
    flat.pop("train.increasing_batch_sizes", None)
    return flat


def _name_stages(changed: dict[str, Any], effective: DictConfig, reference: DictConfig) -> None:
    """Name a difference in the stages by the train key they come from, when they do.

    Stages derived from `train.*` in both configs differ because that key or
    `train.epochs` did; only a stage list written by hand is named `stages`.
    """
    ours, theirs = _resolved_flat(effective), _resolved_flat(reference)
    stages = _plain(ours.get("schedule.stages"))
    # The train key the stages are derived from, found from the values (any schedule option may use either).
    consumed = next((key for key in STAGE_SOURCES if stages == _derived_stages(ours, key)), None)
    del changed["schedule.stages"]
    if consumed is None:
        changed["schedule.stages"] = ours.get("schedule.stages")
    elif not _same(ours.get(consumed), theirs.get(consumed)):
        changed[consumed] = ours.get(consumed)


def _derived_stages(flat: Mapping[str, Any], consumed: str) -> list[dict[str, int]] | None:
    epochs, sizes = flat.get("train.epochs"), flat.get(consumed)
    if not isinstance(epochs, int):
        return None
    if consumed == "train.batch_size":
        return [{"batch_size": sizes, "epochs": epochs}]
    if not isinstance(sizes, (list, tuple)) or not sizes or epochs < len(sizes):
        return None
    share, remainder = divmod(epochs, len(sizes))
    first_long = len(sizes) - remainder
    return [{"batch_size": s, "epochs": share + (i >= first_long)} for i, s in enumerate(sizes)]


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    return _plain(a) == _plain(b)


def differences(effective: Mapping[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Effective values (flattened) that the reference does not have or has otherwise."""
    return {
        key: effective.get(key)
        for key in sorted(set(effective) | set(reference))
        if key not in reference or key not in effective or not _same(effective.get(key), reference.get(key))
    }


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, Mapping) and set(v) == {"batch_size", "epochs"} for v in value):
            return "-".join(f"{v['batch_size']}x{v['epochs']}" for v in value)  # a stage list
        return "-".join(_format_value(v) for v in value)
    text = str(value)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key in `keys` ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            candidate = ".".join(parts[-n:])
            if not any(other != key and (other == candidate or other.endswith("." + candidate)) for other in keys):
                short[key] = candidate
                break
        else:
            short[key] = key
    return short


def variant_name(values: Mapping[str, Any]) -> str:
    """A readable folder segment for `values`; long ones keep their first keys and end with a hash."""
    if not values:
        return ""
    short = _short_keys(list(values))
    segments = sorted(f"{short[key]}={_format_value(value)}" for key, value in values.items())
    name = ",".join(segments)
    if len(name) <= MAX_NAME and all(len(s) <= 40 for s in segments):
        return name
    digest = hashlib.sha1(json.dumps(_plain(dict(values)), sort_keys=True).encode()).hexdigest()[:8]
    kept = ""
    for segment in segments:
        segment = segment if len(segment) <= 40 else segment[:40]
        if len(kept) + len(segment) + 1 > MAX_NAME - 9:
            break
        kept = f"{kept},{segment}" if kept else segment
    return f"{kept}+{digest}" if kept else digest


Composer = Callable[[list[str]], DictConfig]


def cell_identity(
    effective: DictConfig,
    overrides: Sequence[str],
    compose: Composer,
    choices: Mapping[str, Any] | None = None,
) -> Identity:
    """The variant of the cell that `overrides` produce, against the reference `compose` builds.

    `compose(overrides)` must return the config (with its `hydra` node) that
    Hydra composes for those overrides; `choices` are the cell's group choices
    (`hydra.runtime.choices`), used to tell group overrides from value ones.
    """
    axes, groups = reference_overrides(overrides, (choices or {}).keys())
    values: dict[str, Any] = {}
    reference = compose(axes + groups)
    if groups:
        plain = compose(axes)
        plain_choices = OmegaConf.select(plain, "hydra.runtime.choices") or {}
        for override in groups:
            key, choice = override_key(override), override.split("=", 1)[1] if "=" in override else None
            if plain_choices.get(key) != choice:
                values[key.replace("/", ".")] = choice
    changed = differences(computed_values(effective), computed_values(reference))
    if "schedule.stages" in changed:
        _name_stages(changed, effective, reference)
    values.update(changed)
    return Identity(variant_name(values), values)


_in_app_cache: dict[tuple, Identity] = {}


def identity_in_app(root: DictConfig) -> Identity:
    """The identity of the config a running Hydra app composed (single runs and jobs).

    The reference is composed with Hydra's compose API from the app's own
    overrides; outside an app (a config composed by hand) there is no preset to
    differ from, so the variant is empty.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() or not GlobalHydra.instance().is_initialized():
        return Identity()
    hydra_cfg = HydraConfig.get()
    overrides = [str(o) for o in hydra_cfg.overrides.task]
    config_name = hydra_cfg.job.config_name
    key = (config_name, tuple(overrides), json.dumps(computed_values(root), sort_keys=True, default=str))
    if key not in _in_app_cache:
        from hydra import compose

        def composer(reference: list[str]) -> DictConfig:
            return compose(config_name=config_name, overrides=reference, return_hydra_config=True)

        _in_app_cache[key] = cell_identity(root, overrides, composer, dict(hydra_cfg.runtime.choices))
    return _in_app_cache[key]
