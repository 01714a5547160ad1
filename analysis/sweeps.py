"""Sweep views: test error and sharpness of each grid column against one swept key.

A study varies one hyperparameter around the preset: `sam.rho=0.01,0.1`
gives cells with variants `rho=0.01` and `rho=0.1` next to the preset's own
cells (variant "", rho 0.05). A *sweep over a key* is a set of variants of
one (experiment, dataset, model) whose `variant_values` differ in that key
only; the member without the key is the preset (or the sweep's base), and
its value is read from its runs' config. Each grid column's value of the key
comes from its own runs' config, so SGD, whose `optimizer.rho` is 0 whatever
`sam.rho` says, shows up at rho 0 rather than being drawn as if swept.

`find_sweeps` finds every such sweep; `sweep_stats` gives mean ± sample std
over seeds per (value, column, metric); `sweep_table` renders it in the
paper's column order.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .columns import CONFIG_PREFIX
from .configs import plain_value
from .load import completed
from .names import SHARPNESS_ROW, TEST_ERROR_ROW, cell_label, cell_order, slug, table_title
from .stats import CELL, TEST_ERROR, choose_measure, measures_in, metric_column
from .tables import MISSING, Table, decimals_for, format_mean_std

UNKNOWN = "preset (not recorded)"


@dataclass
class Sweep:
    """The runs of one sweep over `key`, each with its value of the key in column `value`."""

    experiment: str
    dataset: str
    model: str
    key: str  # dotted config key, as in variant_values: `optimizer.rho`
    base: dict[str, Any]  # the variant values every member shares ({}: the preset's own)
    runs: pd.DataFrame = field(repr=False)
    show_experiment: bool = False

    def title(self) -> str:
        where = table_title(self.dataset, self.model, self.experiment if self.show_experiment else None)
        return f"{where}: sweep over {self.key}" + (f" at {_base_label(self.base, ', ')}" if self.base else "")

    def slug(self) -> str:
        """File-name-safe key: `cifar10-resnet18-sweep-optimizer.rho`."""
        base = _base_label(self.base).replace("=", "-") if self.base else ""
        return slug(self.experiment if self.show_experiment else "", self.dataset, self.model, "sweep", self.key, base)


def _base_label(base: dict[str, Any], separator: str = ",") -> str:
    return separator.join(f"{k}={_label(plain_value(v))}" for k, v in sorted(base.items()))


def _label(value: Any) -> str:
    if value is None:
        return UNKNOWN
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return str(value)


def _python(value: Any) -> Any:
    """A runs-table cell as a plain Python value (None when missing); numbers as float."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return value


def sort_values(values: set) -> list:
    """Unknown (None) first, then numbers ascending, then text."""
    numbers = sorted(v for v in values if isinstance(v, float))
    texts = sorted(str(v) for v in values if v is not None and not isinstance(v, float))
    return ([None] if None in values else []) + numbers + texts


def _member_values(group: pd.DataFrame, key: str, parsed: dict[str, dict]) -> list:
    column = CONFIG_PREFIX + key
    from_config = group[column].tolist() if column in group.columns else [None] * len(group)
    out = []
    for variant, configured in zip(group["variant"], from_config):
        value = _python(configured)
        if value is None and key in parsed[variant]:
            value = _python(plain_value(parsed[variant][key]))
        out.append(value)
    return out


def find_sweeps(runs: pd.DataFrame) -> list[Sweep]:
    """Every sweep over one key in the runs, grouped by (experiment, dataset, model)."""
    sweeps = []
    experiments_per_pair = runs.groupby(["dataset", "model"])["experiment"].nunique().to_dict()
    for (experiment, dataset, model), group in runs.groupby(["experiment", "dataset", "model"], sort=True):
        pairs = group[["variant", "variant_values"]].drop_duplicates()
        parsed = {v: json.loads(text) for v, text in pairs.itertuples(index=False, name=None)}
        for key in sorted({k for values in parsed.values() for k in values}):
            members: dict[str, list[str]] = {}
            for variant, values in parsed.items():
                rest = json.dumps({k: v for k, v in values.items() if k != key}, sort_keys=True)
                members.setdefault(rest, []).append(variant)
            for rest, variants in sorted(members.items(), key=lambda item: (item[0] != "{}", item[0])):
                if len(variants) < 2 or not any(key in parsed[v] for v in variants):
                    continue
                chosen = group[group["variant"].isin(variants)].copy()
                chosen["value"] = pd.Series(_member_values(chosen, key, parsed), index=chosen.index, dtype=object)
                chosen["preset"] = [key not in parsed[v] for v in chosen["variant"]]
                sweeps.append(
                    Sweep(
                        experiment,
                        dataset,
                        model,
                        key,
                        json.loads(rest),
                        chosen,
                        experiments_per_pair[(dataset, model)] > 1,
                    )
                )
    return sweeps


def sweep_stats(sweep: Sweep, sharpness: str | None = None) -> pd.DataFrame:
    """Tidy: one row per (value, optimizer, schedule, metric) with mean, std (ddof=1) and n over seeds."""
    done = completed(sweep.runs)
    measure = choose_measure(measures_in(sweep.runs), sharpness)
    metrics = [("test_error", TEST_ERROR)] + ([("sharpness", metric_column(measure))] if measure else [])
    rows = []
    for (opt, sched), cell_runs in done.groupby(list(CELL), sort=False):
        presets = set(cell_runs.loc[cell_runs["preset"], "value"].map(_label))
        for value in sort_values(set(cell_runs["value"])):
            at = cell_runs[cell_runs["value"].map(lambda v, value=value: v == value)]
            for metric, column in metrics:
                values = at[column].dropna().to_numpy(dtype=float) if column in at.columns else np.array([])
                rows.append(
                    {
                        "experiment": sweep.experiment,
                        "dataset": sweep.dataset,
                        "model": sweep.model,
                        "key": sweep.key,
                        "base": _base_label(sweep.base),
                        "value": _label(value),
                        "value_number": value if isinstance(value, float) else math.nan,
                        "preset": _label(value) in presets,
                        "optimizer": opt,
                        "schedule": sched,
                        "cell": cell_label(opt, sched),
                        "metric": metric,
                        "measure": measure if metric == "sharpness" else "",
                        "mean": float(values.mean()) if values.size else math.nan,
                        "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                        "n": int(values.size),
                    }
                )
    return pd.DataFrame(rows)


def _value_order(stats: pd.DataFrame) -> list[str]:
    firsts = stats.drop_duplicates("value")
    values = {}
    for label, number in zip(firsts["value"], firsts["value_number"]):
        values[label] = None if label == UNKNOWN else (number if not math.isnan(number) else label)
    ordered = sort_values(set(values.values()))
    back = {v: label for label, v in values.items()}
    return [back[v] for v in ordered]


def single_value_cells(stats: pd.DataFrame) -> list[tuple[str, str]]:
    """Columns that hold one value of the key only (SGD in a rho sweep): not swept, a reference."""
    counts = stats.groupby(["optimizer", "schedule"])["value"].nunique()
    return [cell for cell, n in counts.items() if n == 1]


def sweep_table(sweep: Sweep, sharpness: str | None = None) -> Table:
    """Rows: each metric x each value of the key; columns: the grid cells present, in the paper's order."""
    stats = sweep_stats(sweep, sharpness)
    cells = [
        c
        for c in cell_order(set(zip(stats["optimizer"], stats["schedule"])))
        if c in set(zip(stats["optimizer"], stats["schedule"]))
    ]
    values = _value_order(stats)
    fixed = single_value_cells(stats)
    swept_presets = {
        r.value for r in stats.itertuples(index=False) if r.preset and (r.optimizer, r.schedule) not in fixed
    }
    lookup = {(r.value, r.optimizer, r.schedule, r.metric): (r.mean, r.std, r.n) for r in stats.itertuples(index=False)}
    measure = next((m for m in stats["measure"] if m), None)
    blocks = [(TEST_ERROR_ROW, "test_error")] + ([(f"{SHARPNESS_ROW} ({measure})", "sharpness")] if measure else [])
    rows = []
    for label, metric in blocks:
        found = [v for v in lookup.items() if v[0][3] == metric and v[1][2] > 0]
        decimals = decimals_for([v[1][0] for v in found])
        show_n = len({v[1][2] for v in found}) > 1
        for i, value in enumerate(values):
            row = [label if i == 0 else "", value + (" (preset)" if value in swept_presets else "")]
            for cell in cells:
                entry = lookup.get((value, *cell, metric))
                row.append(format_mean_std(*entry, decimals, show_n) if entry and entry[2] > 0 else MISSING)
            rows.append(row)
    notes = []
    if fixed:
        only = {(r.optimizer, r.schedule): r.value for r in stats.itertuples(index=False)}
        names = ", ".join(f"{cell_label(*c)} ({sweep.key} = {only[c]})" for c in cell_order(fixed) if c in fixed)
        notes.append(f"One value only, not swept: {names}; the figure draws them as horizontal lines.")
    seeds = sorted(set(stats.loc[stats["n"] > 0, "n"]))
    spread = "one seed per value (no std)" if seeds == [1] else "mean ± sample std over seeds"
    what = f"Test error (%) and sharpness ({measure})" if measure else "Test error (%)"
    marked = "; (preset) marks the experiment preset's value" if swept_presets else ""
    return Table(
        title=sweep.title(),
        header=["", sweep.key] + [cell_label(*c) for c in cells],
        rows=rows,
        caption=f"{what} of the final model against {sweep.key}, {spread}{marked}.",
        notes=notes,
        key=sweep.slug(),
        align="ll" + "r" * len(cells),
        stats=stats,
    )
