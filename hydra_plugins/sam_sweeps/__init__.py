"""Hydra instantiates sweepers only from classes defined in the `hydra_plugins` namespace package.

The sweeper's logic lives in runner/sweeper.py; this subclass only gives it the module Hydra
accepts. conf/hydra/sweeper/validating.yaml selects it.
"""

from runner import sweeper


class ValidatingSweeper(sweeper.ValidatingSweeper):
    """runner.sweeper.ValidatingSweeper, registered where Hydra looks for plugins."""
