"""The registry of sharpness kinds: one entry per algorithm, read by the settings checks, `measure` and the tests.

Two words, one meaning each:

- a measure's **name** is its key under `sharpness:` in a run's config (the file
  name of its `conf/sharpness/` option, e.g. `worst_linf`) and its key in
  result.json's `sharpness` object; a run may hold several measures of one kind;
- its **kind** is the algorithm that computes it, a key of `KINDS` (e.g.
  `worst_case`), written as the `kind` setting.

Adding a kind is one entry here (its function and its settings with their
defaults) and, to offer it on the command line, one `conf/sharpness/<name>.yaml`
whose keys are exactly `defaults(kind)` (tests/test_registries.py checks that).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .average_case import average_case_sharpness
from .hessian import hessian_top_eigenvalue, hessian_trace
from .worst_case import worst_case_sharpness

# (objective, borrowed model, batches, settings, generator, report) -> {"value": ..., other outputs}
MeasureFn = Callable[..., dict[str, Any]]

# Which examples are measured: settings shared by every kind, read by `runner.remeasure`.
DATA_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "examples": 1024,  # number of examples (null: the whole split)
        "batch_size": 128,  # m of m-sharpness; only a memory bound for the Hessian measures
        "split": "train",
        "augment": False,
        # authors: the authors' choice where their sharpness code loads the dataset (CIFAR: the
        # first `examples`, my_sharpness/data.py), a seeded sample elsewhere; first: the split's
        # first `examples`, in its stored order; random: a seeded sample, other examples per run seed
        "subset": "authors",
        # authors: normalised as the authors' sharpness code does (for CIFAR-10 with std
        # 0.2023/0.1994/0.2010, not the training std; elsewhere as in training); training: as in training
        "normalization": "authors",
        "seed": 0,
        "verbose": False,  # one log line per batch (per iteration for the Hessian measures)
    }
)


@dataclass(frozen=True)
class Kind:
    """One algorithm: the function that computes it, its own settings, and how it uses the batches."""

    measure: MeasureFn
    settings: Mapping[str, Any]  # the kind's own settings and defaults (the data settings come on top)
    equal_batches: bool  # m-sharpness: every batch holds exactly m = batch_size examples


# The paper's protocol (Andriushchenko et al. 2023 as used by Harada & Iiduka 2024).
_KINDS: dict[str, Kind] = {
    "worst_case": Kind(
        worst_case_sharpness,
        {"ball": "linf", "adaptive": False, "rho": 0.0002, "iterations": 20, "restarts": 1, "random_start": False},
        equal_batches=True,
    ),
    "average_case": Kind(
        average_case_sharpness,
        {"ball": "linf", "adaptive": False, "rho": 0.0002, "samples": 10},
        equal_batches=True,
    ),
    "hessian_eig": Kind(hessian_top_eigenvalue, {"iterations": 100, "tolerance": 1e-3}, equal_batches=False),
    "hessian_trace": Kind(hessian_trace, {"samples": 100}, equal_batches=False),
}
# Read-only; a user's package adds its kinds with `register` (runner.sweep.registry loads them).
KINDS: Mapping[str, Kind] = MappingProxyType(_KINDS)


def register(name: str, kind: Kind) -> None:
    """Add a kind: its settings must not redefine the data settings every kind shares (or `kind`)."""
    if not isinstance(kind, Kind):
        raise TypeError(f"{kind!r} is not a sharpness.Kind(measure, settings, equal_batches)")
    if not callable(kind.measure):
        raise TypeError(f"the measure of {name!r} is not callable")
    shared = sorted(set(kind.settings) & (set(DATA_DEFAULTS) | {"kind"}))
    if shared:
        raise ValueError(f"settings {shared} are shared by every kind already; leave them out of the kind's own")
    if _KINDS.get(name, kind) is not kind:
        raise ValueError(f"{name!r} is registered already as another kind")
    _KINDS[name] = kind


def defaults(kind: str) -> dict[str, Any]:
    """Every setting of `kind` with its default, in the fixed order records use: kind, its own, the data's."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind={kind!r}: must be one of {list(KINDS)}")
    return {"kind": kind, **KINDS[kind].settings, **DATA_DEFAULTS}
