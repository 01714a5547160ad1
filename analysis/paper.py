"""The paper's published numbers, and our results side by side with them.

A reproduction is judged against `reported_results.csv` (every cell of the
paper's seven tables). A copy ships inside the package (`analysis/data/`),
read with `importlib.resources`, so an installed `sam-analysis` works away
from the repository. The comparison always uses the paper's sharpness
measure (`worst_linf`), whatever `--sharpness` picks for the main table:
numbers of different measures are not comparable.
"""

from __future__ import annotations

import functools
import io
import math
from importlib import resources

import pandas as pd

from .names import (
    OPTIMIZERS,
    PAPER_MEASURE,
    PAPER_SCHEDULES,
    SHARPNESS_ROW,
    TEST_ERROR_ROW,
    cell_label,
)
from .stats import TEST_ERROR, cell_stats, metric_column, select_runs, stats_lookup
from .tables import MISSING, Table, decimals_for, format_mean_std, format_number

# Column of reported_results.csv for each metric we compare.
_REPORTED_COLUMNS = {"test_error": "test_error_pct", "sharpness": "sharpness"}


@functools.cache
def _reported() -> pd.DataFrame:
    text = resources.files("analysis").joinpath("data", "reported_results.csv").read_text(encoding="utf-8")
    return pd.read_csv(io.StringIO(text))


def reported_results() -> pd.DataFrame:
    """The paper's numbers: dataset, model, optimizer, schedule, test_error_pct, sharpness (a copy)."""
    return _reported().copy()


@functools.cache
def _reported_lookup() -> dict[tuple[str, str, str, str], tuple[float, float]]:
    frame = _reported()
    return {
        (d, m, o, s): (float(e), float(sh))
        for d, m, o, s, e, sh in frame[
            ["dataset", "model", "optimizer", "schedule", "test_error_pct", "sharpness"]
        ].itertuples(index=False, name=None)
    }


def reported_value(dataset: str, model: str, optimizer: str, schedule: str, metric: str) -> float | None:
    """The paper's value of `metric` (`test_error` or `sharpness`) for one cell; None if unreported."""
    if metric not in _REPORTED_COLUMNS:
        raise ValueError(f"metric {metric!r} is not reported by the paper; expected one of {sorted(_REPORTED_COLUMNS)}")
    values = _reported_lookup().get((dataset, model, optimizer, schedule))
    if values is None:
        return None
    return values[0] if metric == "test_error" else values[1]


@functools.cache
def _tables() -> tuple[tuple[str, str], ...]:
    return tuple(dict.fromkeys(k[:2] for k in _reported_lookup()))


def paper_tables() -> list[tuple[str, str]]:
    """The paper's tables as (dataset, model), in the order of reported_results.csv."""
    return list(_tables())


def has_paper_numbers(dataset: str, model: str) -> bool:
    """Whether the paper has a table for this (dataset, model)."""
    return (dataset, model) in _tables()


def compare_with_paper(runs: pd.DataFrame, dataset: str, model: str, *, experiment: str | None = None) -> Table | None:
    """Ours, the paper's and the difference (ours - paper) per cell; None when the paper has no such table.

    Rows: test error and sharpness, each as ours / paper / ours - paper;
    columns: the paper's nine cells in its order. Only the runs with the
    preset's own values (variant "") are compared: a rho sweep's rho=0.1
    runs are not the paper's hyperparameters.
    """
    if not has_paper_numbers(dataset, model):
        return None
    selection = select_runs(runs[runs["variant"] == ""], dataset, model, experiment, "")
    runs = selection.runs
    sharp_col = metric_column(PAPER_MEASURE)
    lookup = stats_lookup(cell_stats(runs, [TEST_ERROR, sharp_col]))
    cells = [(o, s) for s in PAPER_SCHEDULES for o in OPTIMIZERS]
    rows, tidy = [], []
    for label, metric, column in ((TEST_ERROR_ROW, "test_error", TEST_ERROR), (SHARPNESS_ROW, "sharpness", sharp_col)):
        ours = {c: lookup.get((*c, column)) for c in cells}
        paper = {c: reported_value(dataset, model, *c, metric) for c in cells}
        diffs = {c: ours[c][0] - paper[c] if ours[c] and paper[c] is not None else None for c in cells}
        decimals = decimals_for([v[0] for v in ours.values() if v] + [v for v in paper.values() if v is not None])
        show_n = len({v[2] for v in ours.values() if v}) > 1
        rows.append(
            [f"{label}: ours"] + [format_mean_std(*ours[c], decimals, show_n) if ours[c] else MISSING for c in cells]
        )
        rows.append(
            [f"{label}: paper"]
            + [format_number(paper[c], decimals) if paper[c] is not None else MISSING for c in cells]
        )
        rows.append(
            [f"{label}: ours - paper"]
            + [f"{diffs[c]:+.{decimals}f}" if diffs[c] is not None else MISSING for c in cells]
        )
        for c in cells:
            mean, std, n = ours[c] if ours[c] else (math.nan, math.nan, 0)
            tidy.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "optimizer": c[0],
                    "schedule": c[1],
                    "cell": cell_label(*c),
                    "metric": metric,
                    "ours_mean": mean,
                    "ours_std": std,
                    "n": n,
                    "paper": paper[c],
                    "difference": diffs[c] if diffs[c] is not None else math.nan,
                }
            )
    notes = []
    if not any(lookup.get((*c, sharp_col)) for c in cells):
        notes.append(f"No {PAPER_MEASURE} sharpness in these records, so sharpness is not compared.")
    return Table(
        title=f"{selection.title()}: ours vs. the paper",
        header=[""] + [cell_label(*c) for c in cells],
        rows=rows,
        caption=f"Test error (%) and sharpness ({PAPER_MEASURE}) of our runs (mean ± std over seeds) "
        "against the paper's published values; difference = ours - paper.",
        notes=notes,
        key=selection.key("vs-paper"),
        stats=pd.DataFrame(tidy),
    )
