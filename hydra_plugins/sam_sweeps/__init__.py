"""Hydra instantiates sweepers and launchers only from classes defined in the `hydra_plugins` namespace package.

The logic lives in runner/sweep/sweeper.py and runner/sweep/launchers.py; these classes only give it the
module Hydra accepts. conf/hydra/sweeper/validating.yaml and conf/hydra/launcher/{local,slurm}.yaml
select them.
"""

from omegaconf import OmegaConf

from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from runner.sweep import launchers, sweeper

# Settings submitit takes by their own name; the others get the executor's prefix (slurm_partition).
SUBMITIT_GENERIC_KEYS = frozenset(OmegaConf.structured(BaseQueueConf).keys())


class ValidatingSweeper(sweeper.ValidatingSweeper):
    """runner.sweep.sweeper.ValidatingSweeper, registered where Hydra looks for plugins."""


class LocalLauncher(launchers.WaitingLauncherMixin, submitit_launcher.LocalLauncher):
    """hydra-submitit-launcher's local launcher, waiting for every job (runner.sweep.launchers)."""

    generic_keys = SUBMITIT_GENERIC_KEYS


class SlurmLauncher(launchers.WaitingLauncherMixin, submitit_launcher.SlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher, waiting for every job (runner.sweep.launchers)."""

    generic_keys = SUBMITIT_GENERIC_KEYS
