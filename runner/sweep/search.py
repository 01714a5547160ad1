"""Optuna search over any config keys, where every trial is a cell of the results tree.

`hydra/sweeper=optuna` (conf/hydra/sweeper/optuna.yaml; `pip install 'sam-sweeps[optuna]'`)
selects `SearchSweeper`. It asks Optuna for trials, and each trial is planned like a cell
of a grid sweep (runner/sweep/sweeper.py): composed, validated, placed in the folder of its
effective config. A trial whose folder already holds a finished run is not trained again:
the study is told the stored value. The value of a trial is read from its result.json
(`runner.sweep.objective`), so the task's return value stays the runner's outcome.

Before anything trains, the search space is probed (every choice, both ends of every
range) and refused with one `error:` line per problem: a key that does not exist or
changes nothing computed, a value the validation refuses, an objective the cell does not
measure. `<sweep dir>/search.json` lists every trial and the best one; `python -m
analysis` shows them.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from runner.folder import PLAN_FILE, SEARCH_FILE, read_result
from runner.sweep import objective as objectives
from runner.sweep.sweeper import (
    PlannedCell,
    ValidatingSweeper,
    _plan_record,
    _skipped_outcome,
    _summary_callback,
    _write_quietly,
)

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'sam-sweeps[optuna]'"


class SearchSweeper(ValidatingSweeper):
    """Optuna's ask-and-tell loop over cells that are validated, placed and skipped like a grid's."""

    def __init__(
        self,
        objective: str = "test_error",
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: Any = None,
        storage: str | None = None,
        study_name: str | None = None,
        params: dict[str, str] | None = None,
        max_batch_size: int | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=None)
        self.objective, self.direction = str(objective), str(direction)
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_cfg, self.storage, self.study_name = sampler, storage, study_name
        self.search_params = dict(params or {})
        self.space_text: dict[str, str] = {}  # the parsed space, as search.json records it
        self.job_idx = 0

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        errors = self._settings_problems()
        if errors:
            _refuse(errors)
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

        given = [f"{key}={value}" for key, value in self.search_params.items()] + list(arguments)
        space, fixed = {}, {}
        try:
            for override in given:  # one at a time: a key given twice keeps its last value, range or not
                searched, plain = create_params_from_overrides([override])
                for name in [*searched, *plain]:
                    space.pop(name, None)
                    fixed.pop(name, None)
                space.update(searched)
                fixed.update(plain)
        except Exception as error:  # a malformed interval, a choice of lists
            _refuse([f"hydra.sweeper.params: {_first_line(error)}"])
        self.space_text = {name: repr(dist) for name, dist in space.items()}
        fixed_overrides = [f"{name}={value}" for name, value in fixed.items()]
        errors = self._space_problems(space, fixed_overrides)
        if errors:
            _refuse(errors)
        return self._search(space, fixed_overrides)

    def _settings_problems(self) -> list[str]:
        found = []
        logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's storage layer, chatty at import
        try:
            import optuna  # noqa: F401

            from hydra_plugins.hydra_optuna_sweeper import _impl  # noqa: F401
        except ImportError:
            return [f"hydra/sweeper=optuna needs hydra-optuna-sweeper: {INSTALL_HINT}"]
        found.extend(objectives.objective_problems(self.objective))
        if self.direction not in ("minimize", "maximize"):
            found.append(f"hydra.sweeper.direction={self.direction!r} must be minimize or maximize")
        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.append(f"hydra.sweeper.{key}={value!r} must be an integer >= 1")
        return found

    def _space_problems(self, space: dict[str, Any], fixed: list[str]) -> list[str]:
        """Probe the space: each choice and both ends of each range, one key at a time.

        A key must also change the folder in at least one setting of the others (`sam.rho` does
        nothing for SGD, but does for SAM): a key that never does changes nothing computed.
        """
        if not space:
            return ["the search space is empty: give a key a range, e.g. 'optimizer.lr=tag(log, interval(0.01, 0.5))'"]
        base = {name: _probe_values(dist)[0] for name, dist in space.items()}
        errors: list[str] = []
        for name, dist in space.items():
            contexts = [base] + [
                {**base, other: value} for other in space if other != name for value in _probe_values(space[other])[1:]
            ]
            moves, failed = False, False
            for number, context in enumerate(contexts):
                folders: set[Path] = set()
                for value in _probe_values(dist):
                    overrides = fixed + [f"{key}={value if key == name else context[key]}" for key in space]
                    cells, found = self._plan([overrides])
                    if number == 0:  # the other keys' values are probed in their own turn
                        failed = failed or bool(found)
                        errors.extend(f"search space {name}: {line.split(']: ', 1)[-1]}" for line in found)
                        problems = [
                            objectives.measured_problem(self.objective, self._compose(overrides)) for _ in cells
                        ]
                        errors.extend(problem for problem in problems if problem)
                    folders.update(cell.run_dir for cell in cells)
                moves = moves or len(folders) > 1
                if moves or failed:
                    break
            if not failed and not moves and len(_probe_values(dist)) > 1:
                errors.append(
                    f"search space {name}: every value lands in one folder, so the key changes nothing a run "
                    f"computes; search a key that does"
                )
        return list(dict.fromkeys(errors))

    def _search(self, space: dict[str, Any], fixed: list[str]) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

        sampler = OmegaConf.to_object(self.sampler_cfg) if OmegaConf.is_config(self.sampler_cfg) else self.sampler_cfg
        from hydra.utils import instantiate

        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=instantiate(sampler) if sampler else None,
            direction=self.direction,
            load_if_exists=True,
        )
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        summary = _summary_callback(self.hydra_context)
        planned: list[PlannedCell] = []  # every trial's cell so far, for sweep_plan.json and the summary
        trials_out: list[dict[str, Any]] = []
        while len(trials_out) < self.n_trials:
            trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - len(trials_out)))]
            batch = [fixed + [f"{key}={trial._suggest(key, dist)}" for key, dist in space.items()] for trial in trials]
            cells, errors = self._plan(batch)
            by_overrides = {tuple(cell.overrides): cell for cell in cells}
            jobs = [cell for cell in cells if cell.action == "launch"]
            for number, cell in enumerate(jobs):
                cell.job_num = self.job_idx + number
            planned.extend(cells)
            _write_quietly(sweep_dir / PLAN_FILE, _plan_record(planned, self.config, summary))
            if summary is not None:
                summary.note_skipped([_skipped_outcome(cell) for cell in planned if cell.action != "launch"])
            if jobs:
                self.launcher.launch(
                    [cell.overrides + [f"variant='{cell.variant}'"] for cell in jobs], initial_job_idx=self.job_idx
                )
                self.job_idx += len(jobs)
            for trial, overrides in zip(trials, batch):
                cell = by_overrides.get(tuple(overrides))
                trials_out.append(self._tell(study, trial, cell, errors))
            _write_quietly(sweep_dir / SEARCH_FILE, self._search_record(trials_out))
        best = _best(trials_out, self.direction)
        if best is None:
            print("error: no trial completed; search.json and the cells' run.log say why", file=sys.stderr)
        else:
            print(f"best {self.objective} = {best['value']:.6g}: {' '.join(best['params_overrides'])} ({best['cell']})")
        return []

    def _tell(self, study: Any, trial: Any, cell: PlannedCell | None, errors: list[str]) -> dict[str, Any]:
        """Tell Optuna the trial's value (from its record, trained now or before) or that it failed."""
        import optuna

        params = dict(trial.params)
        entry: dict[str, Any] = {"number": trial.number, "params": params, "value": None, "state": "FAIL"}
        entry["params_overrides"] = [f"{key}={value}" for key, value in params.items()]
        if cell is None:
            entry["error"] = "; ".join(errors) or "not planned"
            log.warning("trial %d refused: %s", trial.number, entry["error"])
        else:
            entry.update(cell=cell.cell, run_dir=str(cell.run_dir), action=cell.action, variant=cell.variant)
            record = read_result(cell.run_dir)
            value, why = objectives.value_of(record, self.objective)
            if value is not None:
                entry.update(value=value, state="COMPLETE")
            else:
                entry["error"] = why
        if entry["state"] == "COMPLETE":
            study.tell(trial, entry["value"])
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return entry

    def _search_record(self, trials: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "updated": time.time(),
            "objective": self.objective,
            "direction": self.direction,
            "n_trials": self.n_trials,
            "space": self.space_text,
            "trials": trials,
            "best": _best(trials, self.direction),
        }


def _probe_values(dist: Any) -> list[Any]:
    """The values a search space is checked at: every choice, or both ends of a range."""
    choices = getattr(dist, "choices", None)
    if choices is not None:
        return list(choices)
    return [dist.low, dist.high] if dist.low != dist.high else [dist.low]


def _best(trials: list[dict[str, Any]], direction: str) -> dict[str, Any] | None:
    done = [trial for trial in trials if trial["state"] == "COMPLETE"]
    if not done:
        return None
    pick = min if direction == "minimize" else max
    return pick(done, key=lambda trial: trial["value"])


def _refuse(errors: list[str]) -> None:
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    print(f"error: nothing was launched ({len(errors)} problem(s) in the search)", file=sys.stderr)
    sys.exit(2)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
