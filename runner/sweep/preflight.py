"""Checks of a single run that happen before Hydra creates the run's folder.

Hydra makes the output folder (the cell's folder) and writes `.hydra/` and its
log there before the task function starts, so a check inside the task would be
too late to leave a bad or finished cell untouched. `Preflight.on_run_start`
runs first: a config that cannot work exits with status 2 and one `error:` line
per problem, the data is fetched (or its absence reported), and a cell that is
already finished (runner.sweep.verdict) exits 0 without writing anything, so a read-only results tree
can be relaunched. Multiruns get the same checks from `runner.sweep.sweeper`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from runner.sweep import cell_state
from runner.sweep.validate import KEYS, ConfigError, validate
from runner.sweep.value_checks import added_key_problems
from runner.sweep.verdict import REFUSE, SKIP, decide


def task_config(config: DictConfig) -> DictConfig:
    """The run's own config, without Hydra's node (what the task function receives)."""
    task = OmegaConf.create(OmegaConf.to_container(config, resolve=False))
    with open_dict(task):
        task.pop("hydra", None)
    return task


def _fail(lines: list[str], status: int) -> None:
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    sys.exit(status)


class Preflight(Callback):
    """Hydra callback: validate, fetch data and skip finished cells before a single run starts."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The variant resolver reads the run's overrides from HydraConfig, which Hydra sets only later.
        HydraConfig.instance().set_config(config)
        task = task_config(config)
        added = added_key_problems(OmegaConf.select(config, "hydra.overrides.task") or [], config, KEYS)
        try:
            validate(task)
        except ConfigError as error:
            _fail(added + str(error).splitlines(), 2)
        if added:
            _fail(added, 2)
        run_dir = Path(str(task.run_dir)).absolute()
        verdict = decide(run_dir, task)
        if verdict.action == REFUSE:
            _fail(verdict.reason.splitlines(), 2)
        from runner import data  # the data layer (and torch) once the config is known to be good

        try:
            data.prepare(task.dataset)
        except data.DatasetUnavailableError as error:
            _fail(str(error).splitlines(), 2)
        if verdict.action == SKIP:
            print(f"{run_dir}: {verdict.reason} (result.json); nothing to do (force=true retrains)")
            damage = cell_state.config_damage(run_dir)
            if damage:
                print(f"note: {damage}; result.json keeps the run's config", file=sys.stderr)
            sys.exit(0)
