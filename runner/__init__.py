"""The sweep runner: builds one grid cell from a composed config and trains it.

`runner.run(cfg)` is the only entry point `launch.py` needs; the submodules each
do one job (models, data, schedule, training loop, checkpoints, records).
"""

from runner.config_resolvers import register_resolvers

register_resolvers()

from runner.run import in_multirun, main, run  # noqa: E402
from runner.validate import ConfigError  # noqa: E402

__all__ = ["ConfigError", "in_multirun", "main", "run"]
