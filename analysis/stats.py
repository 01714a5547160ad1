"""Per-cell statistics over seeds: the numbers behind every table, comparison and figure.

A cell is one (optimizer, schedule) of one (experiment, dataset, model). Its
value for a metric is the mean over the seeds of its completed runs, its
spread the sample standard deviation (ddof=1, so two seeds give an unbiased
variance estimate; one seed has no spread and its std is NaN), and `n` the
number of seeds that had the metric. Failed and diverged runs never enter.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .columns import SHARPNESS_PREFIX
from .load import completed, sharpness_columns
from .names import PAPER_MEASURE, table_sort_key

CELL = ("optimizer", "schedule")
TEST_ERROR = "test_error"


def table_keys(runs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(experiment, dataset, model) of every table the runs make, in the paper's order.

    Runs of every status count: a table whose runs all failed still appears,
    with its cells marked missing, rather than silently vanishing.
    """
    keys = runs[["experiment", "dataset", "model"]].drop_duplicates().itertuples(index=False, name=None)
    return sorted(keys, key=lambda k: (table_sort_key(k[1], k[2]), k[0]))


def select_runs(
    runs: pd.DataFrame, dataset: str, model: str, experiment: str | None = None
) -> tuple[pd.DataFrame, bool]:
    """The runs of one table, and whether its title must name the experiment.

    Two experiments on the same (dataset, model) are different grids (say a
    demo and a paper sweep); pooling their seeds would be wrong, so without
    `experiment` that case is an error naming the choices.
    """
    pair = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    experiments = sorted(pair["experiment"].unique())
    if experiment is None:
        if len(experiments) > 1:
            raise ValueError(
                f"runs of {dataset}/{model} come from {len(experiments)} experiments "
                f"({', '.join(experiments)}); pass experiment= one of them"
            )
        return pair, False
    return pair[pair["experiment"] == experiment], len(experiments) > 1


def measures_in(runs: pd.DataFrame) -> list[str]:
    """Names of the sharpness measures with at least one value among the completed runs."""
    done = completed(runs)
    return [c[len(SHARPNESS_PREFIX) :] for c in sharpness_columns(done) if done[c].notna().any()]


def choose_measure(measures: list[str], requested: str | None = None) -> str | None:
    """The measure of the `Sharpness` row: the one asked for, else the paper's, else the first present.

    With several measures and none of them the paper's, the first by name is
    used (and the table's caption names it); the rest get rows of their own.
    """
    if requested:
        return requested
    if PAPER_MEASURE in measures:
        return PAPER_MEASURE
    return sorted(measures)[0] if measures else None


def metric_column(measure: str) -> str:
    """Runs-table column of a sharpness measure."""
    return SHARPNESS_PREFIX + measure


def cell_stats(runs: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Long table: one row per (optimizer, schedule, metric) with mean, std (ddof=1) and n.

    `metrics` defaults to the test error and every sharpness column. One
    groupby for all cells and metrics keeps this fast on large sweeps.
    """
    done = completed(runs)
    if metrics is None:
        metrics = [TEST_ERROR] + sharpness_columns(done)
    metrics = [m for m in metrics if m in done.columns]
    if done.empty or not metrics:
        return pd.DataFrame(columns=[*CELL, "metric", "mean", "std", "n"])
    grouped = done.groupby(list(CELL), sort=False)[metrics]
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    # Cells x metrics, row-major, built from arrays (no `stack`, whose NaN handling
    # differs between pandas 2 and 3).
    per_cell = len(metrics)
    return pd.DataFrame({
        "optimizer": np.repeat(mean.index.get_level_values(0).to_numpy(dtype=object), per_cell),
        "schedule": np.repeat(mean.index.get_level_values(1).to_numpy(dtype=object), per_cell),
        "metric": np.tile(np.array(metrics, dtype=object), len(mean)),
        "mean": mean.to_numpy(dtype=float).ravel(),
        "std": std.to_numpy(dtype=float).ravel(),
        "n": count.to_numpy(dtype=np.int64).ravel(),
    })


def stats_lookup(stats: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """`{(optimizer, schedule, metric): (mean, std, n)}` for cells with at least one value."""
    out = {}
    for opt, sched, metric, mean, std, n in stats[[*CELL, "metric", "mean", "std", "n"]].itertuples(
        index=False, name=None
    ):
        if n > 0 and not math.isnan(mean):
            out[(opt, sched, metric)] = (float(mean), float(std), int(n))
    return out


def cell_means(stats: pd.DataFrame, metric: str) -> dict[tuple[str, str], float]:
    """`{(optimizer, schedule): mean}` of one metric: what the qualitative claims compare."""
    return {(o, s): v[0] for (o, s, m), v in stats_lookup(stats).items() if m == metric}
