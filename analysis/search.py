"""The trials of an Optuna search (`hydra/sweeper=optuna`) and its best configuration, as a table.

The search writes `<sweep dir>/search.json` (runner/sweep/search.py): the objective, its
direction and one entry per trial (parameters, value, state, cell folder). This
module finds those files below a results folder, reads them as data (anything
malformed is left out with a note) and builds one table per search: every trial in
the order it ran, the best one marked, and the best configuration in the caption.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .tables import Table

SEARCH_FILE = "search.json"
MAX_DEPTH = 3  # a search file sits in a sweep folder: <root>[/<experiment>[/<sub>]]/search.json


@dataclass
class Search:
    """One search: where it lives, what it optimizes, its trials."""

    folder: Path
    objective: str
    direction: str
    trials: list[dict[str, Any]]

    def best(self) -> dict[str, Any] | None:
        done = [t for t in self.trials if t["state"] == "COMPLETE" and _finite(t.get("value"))]
        if not done:
            return None
        pick = min if self.direction == "minimize" else max
        return pick(done, key=lambda trial: trial["value"])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def find_searches(root: Path) -> tuple[list[Search], list[str]]:
    """Every readable search.json at most `MAX_DEPTH` folders below `root`; unreadable ones as notes."""
    root = Path(root)
    searches, notes = [], []
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        if depth >= MAX_DEPTH:
            dirs[:] = []
        if SEARCH_FILE in files:
            try:
                searches.append(read_search(Path(folder) / SEARCH_FILE))
            except (OSError, ValueError, TypeError) as error:  # unreadable, not JSON, or fields of the wrong type
                notes.append(f"{Path(folder) / SEARCH_FILE}: {error}")
    return sorted(searches, key=lambda s: str(s.folder)), notes


def read_search(path: Path) -> Search:
    """One search.json, checked field by field; a ValueError names what is wrong."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise ValueError("not a search record (no list of trials)")
    trials = []
    for entry in data["trials"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
            raise ValueError("a trial without its parameters")
        value = entry.get("value")
        trials.append(
            {
                "number": int(entry.get("number", len(trials))),
                "params": {str(k): v for k, v in entry["params"].items()},
                "value": float(value) if _finite(value) else None,
                "state": str(entry.get("state", "FAIL")),
                "cell": str(entry.get("cell") or ""),
                "action": str(entry.get("action") or ""),
                "error": str(entry.get("error") or ""),
            }
        )
    direction = str(data.get("direction", "minimize"))
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction {direction!r} is neither minimize nor maximize")
    return Search(Path(path).parent, str(data.get("objective", "objective")), direction, trials)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def search_table(search: Search, root: Path) -> Table:
    """Every trial in order (parameters, objective, state, how it ran); the best one marked."""
    keys = list(dict.fromkeys(key for trial in search.trials for key in trial["params"]))
    best = search.best()
    rows, stats = [], []
    ran = {"launch": "trained", "skip-finished": "found finished", "skip-duplicate": "same cell as another trial"}
    for trial in search.trials:
        marked = " (best)" if best is not None and trial["number"] == best["number"] else ""
        value = "-" if trial["value"] is None else f"{trial['value']:.4g}"
        state = "completed" if trial["state"] == "COMPLETE" else f"failed: {trial['error'] or 'no value'}"
        rows.append(
            [f"{trial['number']}{marked}", *(_shown(trial["params"].get(k, "-")) for k in keys), value, state]
            + [ran.get(trial["action"], trial["action"] or "-")]
        )
        stats.append({"trial": trial["number"], **trial["params"], search.objective: trial["value"]})
        stats[-1].update(state=trial["state"], cell=trial["cell"])
    where = os.path.relpath(search.folder, root)
    shown_where = "this folder" if where == "." else where
    caption = f"Optuna search in {shown_where}: {len(search.trials)} trials, {search.direction} {search.objective}."
    if best is None:
        caption += " No trial completed."
    else:
        settings = " ".join(f"{key}={_shown(value)}" for key, value in best["params"].items())
        caption += f" Best: {search.objective} = {best['value']:.4g} with {settings} ({best['cell']})."
    return Table(
        title=f"Search: {search.objective} ({shown_where})",
        header=["Trial", *keys, search.objective, "State", "Ran"],
        rows=rows,
        caption=caption,
        key=f"search-{where.replace(os.sep, '-')}".replace("-.", ""),
        align="l" + "r" * len(keys) + "rll",
        stats=pd.DataFrame(stats),
    )
