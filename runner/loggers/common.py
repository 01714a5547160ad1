"""What every tracker shares: the run's identity, its stable tracker id, the config as flat parameters.

A cell folder names a run, never the clock, so the tracker run id derives from
the folder too: a preempted cell requeued hours later on another node opens the
same W&B / MLflow / TensorBoard run and goes on from the epoch it resumes at.
`force=true` retrains a cell from scratch, so it starts a new tracker run (the
id gets a generation suffix) instead of writing epoch 1 again over the old one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.folder import METRICS_FILE, TRACKERS_FILE
from runner.io import atomic_write_json

STATE_SCHEMA_VERSION = 1
# The identity fields that become tags (W&B tags, MLflow tags), in this order.
TAG_KEYS = ("dataset", "model", "optimizer", "schedule", "variant", "seed")
# result.json fields logged as final metrics (`final/<key>`).
FINAL_KEYS = ("test_error", "test_loss", "train_error", "train_loss", "wall_time_s", "epochs", "steps")


@dataclass
class RunContext:
    """Everything a tracker needs to open its run for one cell."""

    run_dir: Path
    identity: dict[str, Any]
    config: dict[str, Any]
    run_id: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's display name: the cell folder relative to the sweep folder."""
        return str(self.identity["cell"])

    @property
    def experiment(self) -> str:
        return str(self.identity["experiment"])

    def tags(self) -> dict[str, str]:
        """dataset, model, optimizer, schedule, variant, seed as strings ("" for the preset's own values)."""
        return {key: "" if self.identity.get(key) is None else str(self.identity[key]) for key in TAG_KEYS}

    def labels(self) -> list[str]:
        """The run's own tags (`tags=[a,b]` in the config), in order, without repeats."""
        return run_labels(self.config)

    def save_state(self) -> None:
        atomic_write_json(self.run_dir / TRACKERS_FILE, self.state)


def run_labels(config: Mapping[str, Any]) -> list[str]:
    """The config's `tags`: a list of labels, or one comma-separated string; [] when it has none."""
    given = config.get("tags") or []
    if isinstance(given, str):
        given = given.split(",")
    if not isinstance(given, (list, tuple)):
        return []
    return list(dict.fromkeys(str(tag).strip() for tag in given if str(tag).strip()))


def tags_problems(config: Mapping[str, Any]) -> list[str]:
    """One line when `tags` is not a list of labels (or a comma-separated string)."""
    given = config.get("tags")
    if given is None or isinstance(given, str):
        return []
    if isinstance(given, (list, tuple)) and all(isinstance(tag, (str, int, float)) for tag in given):
        return []
    return [f"tags={given!r} must be a list of labels, e.g. tags=[baseline,lr-study]"]


def run_key(run_dir: Path) -> str:
    """16 hex characters from the cell folder's canonical absolute path: the same on every requeue."""
    canonical = str(Path(run_dir).expanduser().resolve())
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def read_state(run_dir: Path) -> dict[str, Any]:
    """The cell's trackers.json, or {} when it is missing or unreadable (then the run key alone finds the run)."""
    try:
        with open(Path(run_dir) / TRACKERS_FILE, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def next_state(run_dir: Path, fresh: bool) -> dict[str, Any]:
    """The state for this start: the stored one, or generation + 1 (and no stored run ids) when `fresh`."""
    stored = read_state(run_dir)
    key = run_key(run_dir)
    generation = int(stored.get("generation", 0)) if stored.get("run_key") == key else 0
    if fresh and stored:
        return {"schema_version": STATE_SCHEMA_VERSION, "run_key": key, "generation": generation + 1}
    return {**stored, "schema_version": STATE_SCHEMA_VERSION, "run_key": key, "generation": generation}


def tracker_run_id(state: Mapping[str, Any]) -> str:
    """The run key, with `-<generation>` after a `force=true` restart of the cell."""
    generation = int(state.get("generation", 0))
    return state["run_key"] if generation == 0 else f"{state['run_key']}-{generation}"


def identity_for(cfg: Mapping[str, Any], run_dir: Path, identity: Mapping[str, Any] | None) -> dict[str, Any]:
    """The runner's identity, completed from the config for any field it lacks."""
    found = dict(identity or {})
    defaults = {
        "dataset": _select(cfg, "dataset", "name"),
        "model": _select(cfg, "model", "name"),
        "optimizer": _select(cfg, "optimizer", "name"),
        "schedule": _select(cfg, "schedule", "name"),
        "seed": cfg.get("seed"),
        "experiment": cfg.get("experiment_name"),
        "variant": "",
    }
    for key, value in defaults.items():
        if found.get(key) is None:
            found[key] = value
    if not found.get("cell"):
        sweep_dir = Path(str(cfg.get("results_root", ""))) / str(found["experiment"])
        try:
            found["cell"] = str(Path(run_dir).resolve().relative_to(sweep_dir.resolve()))
        except ValueError:
            found["cell"] = Path(run_dir).name
    return found


def _select(cfg: Mapping[str, Any], group: str, key: str) -> Any:
    node = cfg.get(group)
    return node.get(key) if isinstance(node, Mapping) else None


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"optimizer.lr": 0.1, ...}; lists become JSON text, so every value is a scalar."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple, Mapping)):
            flat[name] = json.dumps(value, default=str)
        else:
            flat[name] = value
    return flat


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def epoch_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """A metrics.csv row as tracker metrics: every finite number but the epoch itself (the step)."""
    found = {key: _number(value) for key, value in row.items() if key != "epoch"}
    return {key: value for key, value in found.items() if value is not None}


def read_epochs(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """(epoch, tracker metrics) of every readable row of the cell's metrics.csv; [] when there is none."""
    import csv

    try:
        with open(Path(run_dir) / METRICS_FILE, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, csv.Error):
        return []
    epochs = []
    for row in rows:
        try:
            values = {key: float(value) for key, value in row.items() if key != "epoch" and value not in ("", None)}
            epochs.append((int(row["epoch"]), epoch_metrics(values)))
        except (KeyError, TypeError, ValueError):
            continue  # a row cut short by a kill
    return epochs


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """`final/<key>` for the record's errors, losses, wall time, epochs and steps; `sharpness/<name>` per measure."""
    found = {f"final/{key}": _number(record.get(key)) for key in FINAL_KEYS}
    for name, entry in (record.get("sharpness") or {}).items():
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        found[f"sharpness/{name}"] = _number(value)
    return {key: value for key, value in found.items() if value is not None}
