"""Per-cell statistics over seeds: the numbers behind every table, comparison and figure.

A cell is one (optimizer, schedule) of one (experiment, dataset, model,
variant). Its value for a metric is the mean over the seeds of its completed
runs, its spread the sample standard deviation (ddof=1, so two seeds give an
unbiased variance estimate; one seed has no spread and its std is NaN), and
`n` the number of seeds that had the metric. Failed and diverged runs never
enter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .columns import SHARPNESS_PREFIX
from .load import completed, sharpness_columns
from .names import PAPER_MEASURE, slug, table_sort_key, table_title

CELL = ("optimizer", "schedule")
TEST_ERROR = "test_error"


def _variant_order(variant: str) -> tuple[bool, str]:
    return (variant != "", variant)  # the preset's own values first


def table_keys(runs: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(experiment, dataset, model, variant) of every table the runs make, in the paper's order.

    Runs of every status count: a table whose runs all failed still appears,
    with its cells marked missing, rather than silently vanishing. Within one
    (experiment, dataset, model) the preset's own values (variant "") come first.
    """
    columns = ["experiment", "dataset", "model", "variant"]
    keys = runs[columns].drop_duplicates().itertuples(index=False, name=None)
    return sorted(keys, key=lambda k: (table_sort_key(k[1], k[2]), k[0], _variant_order(k[3])))


@dataclass(frozen=True)
class Selection:
    """The runs of one table, and what its title and file names must say to tell it apart.

    `experiment` is set when the (dataset, model) appears under several
    experiments, `variant` when the experiment holds several variants of it.
    """

    runs: pd.DataFrame
    dataset: str
    model: str
    experiment: str | None = None
    variant: str | None = None

    def title(self) -> str:
        return table_title(self.dataset, self.model, self.experiment, self.variant)

    def key(self, *suffix: str) -> str:
        """File-name-safe key; the preset's own variant adds nothing, so old file names stay."""
        return slug(self.experiment or "", self.dataset, self.model, self.variant or "", *suffix)


def _pick(values: list[str], requested: str | None, what: str, where: str) -> str | None:
    if requested is not None or len(values) <= 1:
        return requested
    shown = ", ".join(repr(v) for v in values)
    raise ValueError(f"runs of {where} come from {len(values)} {what}s ({shown}); pass {what}= one of them")


def select_runs(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    experiment: str | None = None,
    variant: str | None = None,
) -> Selection:
    """The runs of one table: one (experiment, dataset, model, variant).

    Two experiments on the same (dataset, model) are different grids (say a
    demo and a paper sweep), and two variants (rho=0.05 and rho=0.1) are
    different hyperparameters; pooling their seeds would be wrong, so without
    `experiment` / `variant` that case is an error naming the choices.
    """
    pair = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    experiments = sorted(pair["experiment"].unique())
    experiment = _pick(experiments, experiment, "experiment", f"{dataset}/{model}")
    chosen = pair if experiment is None else pair[pair["experiment"] == experiment]
    variants = sorted(chosen["variant"].unique(), key=_variant_order)
    variant = _pick(variants, variant, "variant", f"{dataset}/{model}" + (f" ({experiment})" if experiment else ""))
    if variant is not None:
        chosen = chosen[chosen["variant"] == variant]
    return Selection(
        chosen,
        dataset,
        model,
        experiment=experiment if len(experiments) > 1 else None,
        variant=variant if len(variants) > 1 else None,
    )


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
    return pd.DataFrame(
        {
            "optimizer": np.repeat(mean.index.get_level_values(0).to_numpy(dtype=object), per_cell),
            "schedule": np.repeat(mean.index.get_level_values(1).to_numpy(dtype=object), per_cell),
            "metric": np.tile(np.array(metrics, dtype=object), len(mean)),
            "mean": mean.to_numpy(dtype=float).ravel(),
            "std": std.to_numpy(dtype=float).ravel(),
            "n": count.to_numpy(dtype=np.int64).ravel(),
        }
    )


def stats_lookup(stats: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, float, int]]:
    """`{(optimizer, schedule, metric): (mean, std, n)}` for cells with at least one value."""
    out = {}
    for opt, sched, metric, mean, std, n in stats[[*CELL, "metric", "mean", "std", "n"]].itertuples(
        index=False, name=None
    ):
        if n > 0 and not math.isnan(mean):
            out[(opt, sched, metric)] = (float(mean), float(std), int(n))
    return out
