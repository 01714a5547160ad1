"""Hydra instantiates sweepers and launchers only from classes defined in the `hydra_plugins` namespace package.

The logic lives in runner/sweeper.py and runner/launchers.py; these subclasses only give it the
module Hydra accepts. conf/hydra/sweeper/validating.yaml and conf/hydra/launcher/{local,slurm}.yaml
select them.
"""

from runner import launchers, sweeper


class ValidatingSweeper(sweeper.ValidatingSweeper):
    """runner.sweeper.ValidatingSweeper, registered where Hydra looks for plugins."""


class LocalLauncher(launchers.LocalLauncher):
    """runner.launchers.LocalLauncher (submitit's local launcher, waiting for every job), registered for Hydra."""


class SlurmLauncher(launchers.SlurmLauncher):
    """runner.launchers.SlurmLauncher (submitit's SLURM launcher, waiting for every job), registered for Hydra."""
