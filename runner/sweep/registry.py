"""Extension points: the user's own models, datasets, lr policies, SAM variants and sharpness measures.

Every kind of thing a config names by value has one registry, owned by the package that uses it:

| kind            | registry                         | a config names it by      | entry-point group        |
|-----------------|----------------------------------|---------------------------|--------------------------|
| model           | `runner.models.MODELS`           | `model.name`              | `sam_sweeps.models`      |
| dataset         | `runner.data.DATASETS`           | `dataset.name`            | `sam_sweeps.datasets`    |
| lr policy       | `runner.training.schedule.LR_POLICIES`    | `schedule.lr_policy`      | `sam_sweeps.lr_policies` |
| SAM variant     | `sam_opt.OPTIMIZERS`             | `optimizer._target_`      | `sam_sweeps.optimizers`  |
| sharpness kind  | `sharpness.KINDS`                | `sharpness.<name>.kind`   | `sam_sweeps.sharpness`   |

A user's package adds to them in one of two ways, both chosen by the user, never by a file:

- installed, with entry points in its pyproject.toml (`[project.entry-points."sam_sweeps.models"]
  mlp = "mypkg.models:mlp"`): loaded by every command, as pytest loads its plugins;
  `sam_sweeps.conf` entry points name a package of YAML files that joins Hydra's search path
  (hydra_plugins/sam_sweeps/extension_configs.py), so `model=mlp` is an option like any other;
- named on the command line, `plugins=[mypkg.ext]`: modules imported at launch, which call the
  `register_*` functions below when imported.

The security rule of results folders holds: `plugins` is read from the command line of the
command being run (training, `python -m sharpness`), never from a config stored in a folder, so
re-measuring or analysing someone else's folder imports only what this user installed or named.
This module imports no torch; the registries are imported when something is registered.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

GROUP_PREFIX = "sam_sweeps."


class ExtensionError(ValueError):
    """An extension that cannot be loaded or registered; its message is one line for the command line."""


def _replace_check(kind: str, name: str, registry: dict, value: Any) -> bool:
    """Whether `value` is new under `name`; re-registering the same object is allowed, another one is not."""
    if not isinstance(name, str) or not name.strip() or "/" in name or name != name.strip():
        raise ExtensionError(f"{kind} name {name!r} must be a non-empty name without '/' or surrounding spaces")
    if name in registry and registry[name] is not value:
        raise ExtensionError(
            f"{kind} {name!r} is registered already (by {_origin(registry[name])}); choose another name"
        )
    return name not in registry


def _origin(value: Any) -> str:
    module = getattr(value, "__module__", None) or type(value).__module__
    return f"{module}.{getattr(value, '__qualname__', type(value).__qualname__)}"


def register_model(name: str, constructor: Callable[..., Any]) -> None:
    """Add a model constructor: `model.name=<name>` builds it with the model config's other keys as arguments."""
    from runner.models import MODELS

    if not callable(constructor):
        raise ExtensionError(f"model {name!r}: {constructor!r} is not callable")
    if _replace_check("model", name, MODELS, constructor):
        MODELS[name] = constructor


def register_dataset(name: str, dataset: Any) -> None:
    """Add a dataset: a `runner.data.DatasetKind`, or a function `(dataset_cfg, split) -> (uint8 images, labels)`.

    A function is an in-memory dataset with nothing on disk (generated, or shipped with a package).
    """
    from runner.data.api import DATASETS, DatasetKind

    if not isinstance(dataset, DatasetKind):
        if not callable(dataset):
            raise ExtensionError(f"dataset {name!r}: {dataset!r} is neither a DatasetKind nor a loader function")
        dataset = _registered_kind(DATASETS.get(name), dataset) or DatasetKind(dataset, None, downloadable=False)
    if _replace_check("dataset", name, DATASETS, dataset):
        DATASETS[name] = dataset


def _registered_kind(existing: Any, load: Callable) -> Any:
    """The kind registered for the same loader function before, so loading twice is one registration."""
    return existing if existing is not None and getattr(existing, "load", None) is load else None


def register_lr_policy(name: str, policy: Callable[[float, float], float]) -> None:
    """Add an lr policy: `policy(progress in [0, 1], min_lr_ratio) -> lr multiplier`, named by `schedule.lr_policy`."""
    from runner.training import schedule

    if not callable(policy) or len(inspect.signature(policy).parameters) != 2:
        raise ExtensionError(f"lr policy {name!r}: {policy!r} must be a function of (progress, min_lr_ratio)")
    if _replace_check("lr policy", name, schedule._POLICIES, policy):
        schedule._POLICIES[name] = policy


def register_optimizer(optimizer: type, name: str | None = None) -> None:
    """Add a SAM variant (a subclass of `sam_opt.SAM`), which an `optimizer` option names in `_target_`."""
    import sam_opt

    try:
        sam_opt.register(optimizer)
    except (TypeError, ValueError) as error:
        raise ExtensionError(f"optimizer {name or _origin(optimizer)!r}: {error}") from None


def register_measure(kind: str, entry: Any) -> None:
    """Add a sharpness kind (a `sharpness.Kind`: its function, settings and defaults), named by `kind:`."""
    from sharpness import kinds

    try:
        kinds.register(kind, entry)
    except (TypeError, ValueError) as error:
        raise ExtensionError(f"sharpness kind {kind!r}: {error}") from None


# entry-point group -> how one entry point's object is registered under the entry point's name
ENTRY_POINT_GROUPS: dict[str, Callable[[str, Any], None]] = {
    GROUP_PREFIX + "models": register_model,
    GROUP_PREFIX + "datasets": register_dataset,
    GROUP_PREFIX + "lr_policies": register_lr_policy,
    GROUP_PREFIX + "optimizers": lambda name, value: register_optimizer(value, name),
    GROUP_PREFIX + "sharpness": register_measure,
}

_installed_loaded = False
_imported_plugins: set[str] = set()


def load_installed() -> None:
    """Register what installed packages declare as `sam_sweeps.*` entry points (once per process)."""
    global _installed_loaded
    if _installed_loaded:
        return
    _installed_loaded = True
    for group, register in ENTRY_POINT_GROUPS.items():
        for entry_point in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
            where = f"entry point {entry_point.name} = {entry_point.value!r} of group {group}"
            try:
                value = entry_point.load()
            except Exception as error:  # a broken installed package: say which one
                _installed_loaded = False
                raise ExtensionError(f"{where} cannot be loaded: {type(error).__name__}: {error}") from None
            try:
                register(entry_point.name, value)
            except ExtensionError as error:
                _installed_loaded = False
                raise ExtensionError(f"{where}: {error}") from None


def plugin_modules(value: Any) -> list[str]:
    """The module names of a `plugins` value (a list, or one name), checked; [] for none."""
    if value is None:
        return []
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ExtensionError(f"plugins={value!r} must be a list of module names, e.g. plugins=[mypkg.ext]")
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ExtensionError(f"plugins: {name!r} is not a module name (dotted Python identifiers)")
    return list(names)


def enable(plugins: Iterable[str] | Any = ()) -> None:
    """Load the installed extensions, then import the modules the command line named in `plugins`."""
    load_installed()
    for name in plugin_modules(plugins):
        if name in _imported_plugins:
            continue
        try:
            importlib.import_module(name)
        except ExtensionError:
            raise
        except Exception as error:
            raise ExtensionError(f"plugins: cannot import {name!r}: {type(error).__name__}: {error}") from None
        _imported_plugins.add(name)


class PluginLoader(Callback):
    """Hydra callback: enable the extensions before any config is validated, in every process that runs.

    conf/config.yaml lists it before the preflight, so a single run validates with the user's
    registries; a multirun loads them before the sweeper checks its cells; each job (a local or
    SLURM process of its own) loads them again before it trains.
    """

    def _enable(self, config: DictConfig) -> None:
        import sys

        try:
            enable(OmegaConf.select(config, "plugins", default=None))
        except ExtensionError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._enable(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._enable(config)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._enable(config)
