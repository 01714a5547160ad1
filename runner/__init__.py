"""The sweep runner: builds one grid cell from a composed config and trains it.

`runner.main(cfg)` is the only entry point `launch.py` needs; the submodules each
do one job (identity, validation, models, data, schedule, training loop,
checkpoints, records, status). The entry points are imported on first use, so
light tools (`python -m runner.status`) start without loading torch.
"""

from typing import Any

from runner.config_resolvers import register_resolvers

register_resolvers()

_LAZY = {"ConfigError": "runner.validate", "in_multirun": "runner.run", "main": "runner.run", "run": "runner.run"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runner' has no attribute {name!r}")
