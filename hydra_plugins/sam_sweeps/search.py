"""`hydra/sweeper=optuna`: the project's Optuna search (runner/sweep/search.py) under the name users know.

hydra-optuna-sweeper registers its own `hydra/sweeper/optuna` in Hydra's ConfigStore, and Hydra
refuses a config file of the same name. Hydra imports every plugin module while it scans for plugins,
in an order that depends on where each is installed, and only then asks the search-path plugins for
their paths; so this node is stored there, after every plugin's, and replaces the plugin's. Without
the plugin the name still resolves, and the search says in one line what to install.

    python launch.py -m hydra/sweeper=optuna hydra.sweeper.n_trials=20 \\
      'hydra.sweeper.params={optimizer.lr: "tag(log, interval(0.01, 0.5))", sam.rho: "choice(0.02, 0.05, 0.1)"}'
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.plugins.search_path_plugin import SearchPathPlugin

from runner.sweep import search

SEARCH_SWEEPER = {
    "_target_": "hydra_plugins.sam_sweeps.search.SearchSweeper",
    # The sampler is built by the sweeper, once Optuna is known to be installed.
    "_recursive_": False,
    # What a trial returns, read from its result.json: test_error, test_loss, train_error, train_loss
    # (final epoch) or sharpness.<measure> (a measure the cells select).
    "objective": "test_error",
    "direction": "minimize",
    "n_trials": 20,
    # Trials launched together (the local and SLURM launchers run them side by side).
    "n_jobs": 1,
    "sampler": {"_target_": "optuna.samplers.TPESampler", "seed": 0, "n_startup_trials": 10},
    # null: the study lives in the launching process; a relaunch asks the same trials again (the sampler
    # is seeded) and reads their records. sqlite:///<path>/study.db keeps the study between launches.
    "storage": None,
    "study_name": None,
    # The search space, in Hydra's sweep syntax: {key: "interval(a, b)" | "tag(log, interval(a, b))" |
    # "choice(x, y)" | "range(a, b, step)"}; plain values are fixed for every trial.
    "params": {},
    "max_batch_size": None,
}


class SearchSweeper(search.SearchSweeper):
    """runner.sweep.search.SearchSweeper, defined where Hydra accepts plugin classes."""


class SearchSweeperConfig(SearchPathPlugin):
    """Stores `hydra/sweeper/optuna` once every plugin module has been imported; adds no search path."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        ConfigStore.instance().store(group="hydra/sweeper", name="optuna", node=SEARCH_SWEEPER, provider="sam_sweeps")
