"""Checks of values that would pass their own key's range and still fail inside a constructor.

`runner.sweep.validate` checks each key against its range; some values only fail
when torch builds something from them (a negative momentum, AdamW betas of 2,
a model head of 3 classes on a 10-class dataset) or when the launch line adds
a key nobody reads (`+sam.rhoo=0.1`, a typo that would train the default cell
as if nothing was said). Each is one line here, before any data is read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.sweep.failures import suggestion

# Sections whose settings belong to the selected option and are checked by its owner
# (a measure's by sharpness.config_problems, a tracker's by runner.loggers); Hydra's own node.
OPEN_SECTIONS = ("hydra.", "sharpness.", "logger.")
# Twice the largest model of the presets' kind (ViT-g has 1B): a typo in a width, not a model to train.
MAX_PARAMETERS = 2_000_000_000


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        keys = []
        for key, value in node.items():
            name = f"{prefix}{key}"
            keys.append(name)
            keys.extend(_flat_keys(value, f"{name}."))
        return keys
    return []


def added_key_problems(overrides: Iterable[str], cfg: DictConfig, schema: Iterable[str]) -> list[str]:
    """`+key=value` overrides of keys the project never reads: refused, with the nearest real key.

    Keys of the schema (documented optional ones such as `optimizer.exact_restore`)
    and group options (`+experiment=demo`) are fine. `++key=value` sets a key whether
    or not it exists (`++optimizer.base.momentum=0.5` is a plain setting), so only
    `+`, which Hydra allows for new keys alone, is checked.
    """
    schema = list(schema)
    choices = OmegaConf.select(cfg, "hydra.runtime.choices") or {}
    found: list[str] = []
    known: list[str] | None = None
    for text in overrides:
        if not text.startswith("+") or text.startswith("++"):
            continue
        key, _, value = text.lstrip("+").partition("=")
        if "/" in key or key in schema or key in choices or key.startswith(OPEN_SECTIONS):
            continue
        if known is None:
            plain = OmegaConf.to_container(cfg, resolve=False)
            plain.pop("hydra", None)
            known = sorted(set(schema) | {k for k in _flat_keys(plain) if k != key})
        found.append(
            f"+{key}={value}: {key} is not a key the project reads{suggestion(key, known)} "
            f"(python launch.py --cfg job lists the keys)"
        )
    return found


# What torch.optim.Optimizer raises for `params=[]`, after the subclass checked its settings.
EMPTY_PARAMETERS = "empty parameter list"


def base_optimizer_problems(cfg: DictConfig) -> list[str]:
    """The base optimizer's settings, checked by building it (its own rules) on no parameters.

    torch's optimizers check their settings first and then refuse an empty parameter list, which
    is how a build that got that far passed. With a parameter, adding its group would import
    torch._dynamo, 3-4 s of every launch on a slow CPU (a launch that only validates never needs it).
    """
    base = OmegaConf.select(cfg, "optimizer.base")
    if not isinstance(base, DictConfig):
        return []
    found: list[str] = []
    settings = OmegaConf.to_container(base, resolve=True)
    for key in ("momentum", "weight_decay", "dampening"):
        value = settings.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            found.append(f"optimizer.base.{key}={value!r} must be a number >= 0")
    betas = settings.get("betas")
    if betas is not None and not (
        isinstance(betas, list)
        and len(betas) == 2
        and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)
    ):
        found.append(f"optimizer.base.betas={betas!r} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    eps = settings.get("eps")
    if eps is not None and not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0):
        found.append(f"optimizer.base.eps={eps!r} must be a number > 0")
    if found:
        return found
    from hydra.utils import instantiate

    try:
        build = instantiate(base)
        build([])
    except Exception as error:  # torch's own argument checks: one line naming the base
        cause = error.__cause__ or error
        text = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        if not (isinstance(cause, ValueError) and EMPTY_PARAMETERS in text):
            found.append(f"optimizer.base ({settings.get('_target_')}) refuses its settings: {text}")
    return found


def class_count_problems(cfg: DictConfig) -> list[str]:
    """A model head must have one output per class of the dataset it is trained on."""
    model_classes = OmegaConf.select(cfg, "model.num_classes")
    data_classes = OmegaConf.select(cfg, "dataset.num_classes")
    if model_classes is None or data_classes is None or model_classes == data_classes:
        return []
    return [
        f"model.num_classes={model_classes!r} but dataset {OmegaConf.select(cfg, 'dataset.name')} has "
        f"{data_classes} classes; leave model.num_classes to follow dataset.num_classes"
    ]


def model_size_problems(cfg: DictConfig) -> list[str]:
    """A model too large to allocate (`model.width=100000`): counted on the meta device, where nothing is allocated."""
    import torch

    from runner.models import build_model

    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in build_model(cfg.model).parameters())
    except Exception:  # the model's own checks (runner.models.model_problems) name what is wrong
        return []
    if parameters > MAX_PARAMETERS:
        return [
            f"model {OmegaConf.select(cfg, 'model.name')} as configured has {parameters:,} parameters, more than "
            f"{MAX_PARAMETERS:,}; check model.width and dataset.num_classes"
        ]
    return []


def problems(cfg: DictConfig, bad: set[str]) -> list[str]:
    """Every problem above that the key-by-key checks (`bad`: the keys they refused) leave open."""
    found = class_count_problems(cfg) if not {"dataset.num_classes"} & bad else []
    if not any(key.startswith(("model.", "dataset.")) for key in bad):
        found.extend(model_size_problems(cfg))
    base = str(OmegaConf.select(cfg, "optimizer.base._target_"))
    if base.startswith("torch.optim.") and "optimizer.lr" not in bad:
        found.extend(base_optimizer_problems(cfg))
    return found
