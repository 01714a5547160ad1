"""The settings of one sharpness measure: completed from its kind's defaults, checked before any work.

A measure is a mapping such as the options of `conf/sharpness/` write
(`{kind: worst_case, ball: linf, rho: 0.0002, ...}`). Keys left out take the
defaults of the kind's entry in `sharpness.kinds.KINDS`, so the Python API
accepts `{"kind": "worst_case", "rho": 0.01}`; a key that the kind does not know
is an error, because a typo (`rh0`) would otherwise be a flag that silently does
nothing. `name` below is the measure's name (its key under `sharpness:`), never
its kind; see `sharpness.kinds`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .kinds import KINDS, defaults

BALLS = ("linf", "l2")
SPLITS = ("train", "test")
# Which examples are measured; runner.data.measure_subset resolves `authors` for a dataset.
SUBSETS = ("authors", "first", "random")
# How the measured images are normalised; runner.data.measure_dataset_cfg applies the choice.
NORMALIZATIONS = ("authors", "training")

_BOOLS = ("adaptive", "random_start", "augment", "verbose")


def plain(settings: Mapping[str, Any] | DictConfig | None) -> dict[str, Any]:
    """A DictConfig or mapping as a plain dict (resolved), so records hold JSON types only."""
    if settings is None:
        return {}
    if isinstance(settings, DictConfig):
        return OmegaConf.to_container(settings, resolve=True)  # type: ignore[return-value]
    return dict(settings)


def normalize(name: str, settings: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    """The complete, checked settings of measure `name`; a ValueError naming the first bad key.

    The returned dict has every key of the kind, in a fixed order, so two runs
    of the same measure record the same settings and a re-measure can tell
    whether an existing entry was made with the same settings.
    """
    given = plain(settings)
    if not isinstance(given, dict):
        raise ValueError(f"sharpness.{name} must be a mapping of settings, got {type(settings).__name__}")
    kind = given.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"sharpness.{name}.kind={kind!r}: must be one of {list(KINDS)}")
    complete = defaults(kind)
    unknown = sorted(set(given) - set(complete))
    if unknown:
        raise ValueError(f"sharpness.{name}: unknown key(s) {unknown} for kind {kind}; valid: {sorted(complete)}")
    merged = {key: given.get(key, default) for key, default in complete.items()}
    _check(name, merged)
    return merged


def _check(name: str, settings: dict[str, Any]) -> None:
    def fail(key: str, rule: str) -> None:
        raise ValueError(f"sharpness.{name}.{key}={settings[key]!r}: {rule}")

    def integer(key: str, minimum: int) -> None:
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            fail(key, f"must be an integer >= {minimum}")

    for key in _BOOLS:
        if key in settings and not isinstance(settings[key], bool):
            fail(key, "must be true or false")
    if "ball" in settings and settings["ball"] not in BALLS:
        fail("ball", f"must be one of {list(BALLS)}")
    if "rho" in settings:
        rho = settings["rho"]
        if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) or rho < 0:
            fail("rho", "must be a finite number >= 0 (the radius of the perturbation ball)")
        settings["rho"] = float(rho)
    if "iterations" in settings:
        integer("iterations", 1)
    if "restarts" in settings:
        integer("restarts", 1)
        if settings["restarts"] > 1 and not settings["random_start"]:
            fail("restarts", "restarts > 1 repeat the same deterministic ascent; set random_start: true")
    if "samples" in settings:
        integer("samples", 2 if settings["kind"] == "hessian_trace" else 1)
    if "tolerance" in settings:
        tol = settings["tolerance"]
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            fail("tolerance", "must be a number > 0 (relative change of the eigenvalue estimate)")
        settings["tolerance"] = float(tol)
    integer("batch_size", 1)
    if settings["examples"] is not None:
        integer("examples", 1)
        # m-sharpness needs equal batches of m; for the Hessian measures batch_size only bounds memory.
        if KINDS[settings["kind"]].equal_batches:
            if settings["batch_size"] > settings["examples"]:
                fail("batch_size", f"m = batch_size must not exceed examples={settings['examples']}")
            if settings["examples"] % settings["batch_size"]:
                fail(
                    "examples",
                    f"must be a multiple of batch_size={settings['batch_size']}, so every batch has m examples",
                )
    if settings["split"] not in SPLITS:
        fail("split", f"must be one of {list(SPLITS)}")
    if settings["augment"] and settings["split"] != "train":
        fail("augment", "augmentation applies to the training split only")
    if settings["subset"] not in SUBSETS:
        fail("subset", f"must be one of {list(SUBSETS)}")
    if settings["normalization"] not in NORMALIZATIONS:
        fail("normalization", f"must be one of {list(NORMALIZATIONS)}")
    integer("seed", 0)


def normalize_all(sharpness_cfg: Mapping[str, Any] | DictConfig | None) -> dict[str, dict[str, Any]]:
    """Every measure of a `sharpness` config, checked; {} for none (`sharpness=none`)."""
    measures = plain(sharpness_cfg)
    if not isinstance(measures, dict):
        raise ValueError(f"sharpness must map measure names to settings, got {type(sharpness_cfg).__name__}")
    return {str(name): normalize(str(name), settings) for name, settings in measures.items()}


def config_problems(
    sharpness_cfg: Mapping[str, Any] | DictConfig | None,
    dataset_cfg: Mapping[str, Any] | DictConfig | None = None,
) -> list[str]:
    """One line per problem of the `sharpness` config (empty when it can run); for `runner.sweep.validate`.

    With `dataset_cfg`, `examples` is also checked against `dataset.train_size`
    / `dataset.test_size`, so a too small dataset fails before any data is loaded.
    """
    found: list[str] = []
    for name, given in plain(sharpness_cfg).items():
        try:
            settings = normalize(str(name), given)
        except ValueError as error:
            found.append(str(error))
            continue
        split, examples = settings["split"], settings["examples"]
        size = dataset_cfg.get(f"{split}_size") if dataset_cfg is not None else None
        if size is not None and examples is not None and examples > int(size):
            found.append(
                f"sharpness.{name}.examples={examples}: the {split} split has only {size} examples "
                f"(set sharpness.{name}.examples to at most {size}, or null for the whole split)"
            )
    return found
