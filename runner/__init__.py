"""The sweep runner: plans a sweep of grid cells from composed configs, and trains each cell.

`runner.main(cfg)` is the only entry point `launch.py` needs. Two rooms hold the rest:
`runner.sweep`, the orchestration (identity, validation, the decision whether a cell
trains, the lock, the Hydra sweeper and callbacks, status, summary), which imports no
torch; and `runner.training`, the training of one cell. `runner.folder` is the cell
folder's contract both read and write, `runner.io` their atomic writes; `data`, `models`,
`loggers` and `remeasure` are the training's data, networks, trackers and re-measures.
The entry points are imported on first use, so light tools (`python -m runner.sweep.status`)
start without loading torch.
"""

from typing import Any

from runner.sweep.config_resolvers import register_resolvers

register_resolvers()

_LAZY = {
    "ConfigError": "runner.sweep.validate",
    "in_multirun": "runner.training.run",
    "main": "runner.training.run",
    "run": "runner.training.run",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
