"""What a search optimizes: one number read from a cell's result.json.

`hydra.sweeper.objective` names it: `test_error`, `test_loss`, `train_error`,
`train_loss` (the final epoch's, errors in percent) or `sharpness.<measure>` (the
value of a measure the cell selects in `sharpness`). A cell that failed or
diverged has no value; the search counts it as a failed trial.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig

RECORD_OBJECTIVES = ("test_error", "test_loss", "train_error", "train_loss")
SHARPNESS_PREFIX = "sharpness."


def objective_problems(objective: str) -> list[str]:
    """One line when `objective` is no number a record holds."""
    if objective in RECORD_OBJECTIVES or (objective.startswith(SHARPNESS_PREFIX) and objective != SHARPNESS_PREFIX):
        return []
    return [
        f"hydra.sweeper.objective={objective!r} is not a number a run records; valid: "
        f"{', '.join(RECORD_OBJECTIVES)}, sharpness.<measure> (e.g. sharpness.worst_linf)"
    ]


def measured_problem(objective: str, cfg: DictConfig) -> str | None:
    """Why a cell composed as `cfg` will not record the objective (a sharpness measure it does not select)."""
    if not objective.startswith(SHARPNESS_PREFIX):
        return None
    measure = objective[len(SHARPNESS_PREFIX) :]
    selected = list((cfg.get("sharpness") or {}).keys())
    if measure in selected:
        return None
    return (
        f"hydra.sweeper.objective={objective} needs the measure {measure} in sharpness "
        f"(selected: {', '.join(selected) or 'none'}); add sharpness=[{','.join([*selected, measure])}]"
    )


def value_of(record: Mapping[str, Any] | None, objective: str) -> tuple[float | None, str]:
    """(the objective's value, "") for a completed record, or (None, why not)."""
    if not record:
        return None, "no result.json"
    if record.get("status") != "completed":
        return None, f"{record.get('status')}: {record.get('error') or ''}".rstrip(": ")
    if objective.startswith(SHARPNESS_PREFIX):
        entry = (record.get("sharpness") or {}).get(objective[len(SHARPNESS_PREFIX) :])
        value = entry.get("value") if isinstance(entry, Mapping) else None
    else:
        value = record.get(objective)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"result.json has no finite {objective}"
    return float(value), ""
