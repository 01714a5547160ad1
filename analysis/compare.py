"""Compare two columns of a grid across variants, per optimizer and paired by seed: controls and ablations.

The claims table compares cells of one variant. A control compares across
variants: is + B flatter than a constant batch size trained for as many
optimizer steps (`constant@epochs=62`)? is SAM at rho 0.1 flatter than at the
preset's rho (`sam/constant@rho=0.1` against `sam/constant`)? Each side is a
column of the grid, `[optimizer/]schedule[@variant]`; without an optimizer the
comparison is made for each optimizer both sides have, and the claim "LOWER <
HIGHER for each optimizer" is judged as the claims table judges its own (per
seed, ratio or difference, sign-flip test from three seeds; `analysis.claim_stats`).

    python -m analysis.compare results/digits_study batch constant@epochs=62
    python -m analysis.compare results/demo sam/constant@rho=0.1 sam/constant --metric test_error
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .claim_stats import Comparison, Summary, effect_kind, format_effect, format_p, summarize
from .claims import cell_values
from .load import completed, load_runs
from .names import cell_label, optimizer_order
from .stats import TEST_ERROR, choose_measure, measures_in, metric_column
from .tables import Table

METRICS = ("sharpness", TEST_ERROR, "train_error", "train_loss", "test_loss")


@dataclass(frozen=True)
class Column:
    """One side of a comparison: a schedule's column of the grid (one optimizer's, or all), in a variant."""

    schedule: str
    variant: str = ""  # "" is the preset's own values
    optimizer: str | None = None  # None: every optimizer

    @classmethod
    def parse(cls, text: str) -> Column:
        """`[optimizer/]schedule[@variant]`, e.g. `batch`, `constant@epochs=62`, `sam/constant@rho=0.1`."""
        head, _, variant = text.partition("@")
        optimizer, _, schedule = head.rpartition("/")
        if not schedule or "/" in optimizer:
            raise ValueError(f"column {text!r}: expected [optimizer/]schedule[@variant], e.g. constant@epochs=62")
        return cls(schedule, variant, optimizer or None)

    def __str__(self) -> str:
        head = f"{self.optimizer}/{self.schedule}" if self.optimizer else self.schedule
        return head + (f"@{self.variant}" if self.variant else "")

    def label(self, optimizer: str) -> str:
        return cell_label(optimizer, self.schedule) + (f" @{self.variant}" if self.variant else "")

    def values(self, runs: pd.DataFrame, optimizer: str, column: str) -> dict[int, float]:
        """`{seed: value}` of this column's completed runs of `optimizer`."""
        return cell_values(runs[runs["variant"] == self.variant], column).get((optimizer, self.schedule), {})


def _optimizers(runs: pd.DataFrame, lower: Column, higher: Column) -> list[tuple[str, str]]:
    """(lower's optimizer, higher's optimizer) pairs: the one named, else every optimizer both sides ran."""
    if lower.optimizer or higher.optimizer:
        return [(lower.optimizer or higher.optimizer, higher.optimizer or lower.optimizer)]
    present = set(runs["optimizer"].unique())
    return [(o, o) for o in optimizer_order(present)]


def compare_columns(
    runs: pd.DataFrame,
    lower: Column,
    higher: Column,
    metric: str = "sharpness",
    *,
    dataset: str | None = None,
    model: str | None = None,
    experiment: str | None = None,
    sharpness: str | None = None,
) -> Table:
    """A `Table`: per optimizer and for all of them, in how many seeds `lower` < `higher` on `metric`.

    `dataset`, `model` and `experiment` may be left out when the runs hold one
    of each; the variants are the columns' own, so one table spans them.
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    pairs = runs[["dataset", "model"]].drop_duplicates()
    if dataset is None or model is None:
        if len(pairs) != 1:
            choices = ", ".join(f"{d}/{m}" for d, m in pairs.itertuples(index=False, name=None))
            raise ValueError(f"the runs hold several dataset/model pairs ({choices}); name one with --dataset/--model")
        dataset, model = pairs.iloc[0]["dataset"], pairs.iloc[0]["model"]
    runs = runs[(runs["dataset"] == dataset) & (runs["model"] == model)]
    experiments = sorted(runs["experiment"].unique())
    if experiment is None and len(experiments) > 1:
        raise ValueError(f"{dataset}/{model} has runs of several experiments ({', '.join(experiments)}); name one")
    if experiment is not None:
        runs = runs[runs["experiment"] == experiment]
    if metric == "sharpness":
        measure = choose_measure(measures_in(runs), sharpness)
        if measure is None:
            raise ValueError(f"no sharpness was measured in the runs of {dataset}/{model}")
        column, shown = metric_column(measure), f"sharpness ({measure})"
    else:
        column, shown = metric, metric
    _check_present(runs, lower, higher)
    rows, tidy, everything = [], [], []
    optimizer_pairs = _optimizers(runs, lower, higher)
    for low_opt, high_opt in optimizer_pairs:
        low, high = lower.values(runs, low_opt, column), higher.values(runs, high_opt, column)
        found = [
            Comparison((low_opt, lower.schedule), (high_opt, higher.schedule), seed, low[seed], high[seed])
            for seed in sorted(low.keys() & high.keys())
        ]
        everything += found
        label = f"{lower.label(low_opt)} < {higher.label(high_opt)}"
        summary = summarize(found, 1, effect_kind(metric, found))
        rows.append(_row(label, summary, low, high))
        tidy.append(_tidy(label, summary, metric))
    overall = summarize(everything, len(optimizer_pairs), effect_kind(metric, everything))
    if len(optimizer_pairs) > 1:
        rows.append(_row("each optimizer", overall, {}, {}))
        tidy.append(_tidy("each optimizer", overall, metric))
    notes = []
    if overall.tested == 1:
        notes.append("One seed: the verdict rests on one replicate, with no test.")
    if overall.replicates == 0:
        notes.append("No seed has both sides: check the column names against the runs' schedules and variants.")
    return Table(
        title=f"{dataset}/{model}: {lower} < {higher} on {shown}",
        header=["comparison", "verdict", "seeds holding", "effect (range)", "p", "lower mean", "higher mean"],
        rows=rows,
        caption=(
            "Paired by seed. Effect: geometric mean of lower / higher for sharpness, mean difference (pp) "
            "otherwise; p: one-sided exact sign-flip test over seeds (from three seeds)."
        ),
        notes=notes,
        key=f"{dataset}-{model}-compare",
        stats=pd.DataFrame(tidy),
    )


def _check_present(runs: pd.DataFrame, *columns: Column) -> None:
    """A column with no completed run is a typo, not a result: say which columns there are."""
    done = completed(runs)[["optimizer", "schedule", "variant"]].drop_duplicates()
    ran: dict[Column, set[str]] = {}
    for optimizer, schedule, variant in done.itertuples(index=False):
        ran.setdefault(Column(schedule, variant), set()).add(optimizer)
    for column in columns:
        optimizers = ran.get(Column(column.schedule, column.variant), set())
        if not optimizers or (column.optimizer and column.optimizer not in optimizers):
            names = ", ".join(sorted(str(c) for c in ran))
            raise ValueError(f"column {str(column)!r} has no completed run here; columns: {names}")


def _mean(values: dict[int, float]) -> str:
    return "-" if not values else f"{sum(values.values()) / len(values):.4g}"


def _row(label: str, summary: Summary, low: dict[int, float], high: dict[int, float]) -> list[str]:
    seeds = f"{summary.replicates_holding}/{summary.replicates}" if summary.replicates else "-"
    return [label, summary.verdict, seeds, format_effect(summary), format_p(summary), _mean(low), _mean(high)]


def _tidy(label: str, summary: Summary, metric: str) -> dict:
    return {
        "comparison": label,
        "metric": metric,
        "verdict": summary.verdict,
        "seeds": summary.replicates,
        "seeds_holding": summary.replicates_holding,
        "effect_kind": summary.kind,
        "effect": summary.effect,
        "effect_min": summary.effect_min,
        "effect_max": summary.effect_max,
        "p": summary.p,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="results root, sweep folder or any folder above the runs")
    parser.add_argument("lower", help="the column said to be lower: [optimizer/]schedule[@variant]")
    parser.add_argument("higher", help="the column it is compared with")
    parser.add_argument("--metric", default="sharpness", choices=METRICS)
    parser.add_argument("--sharpness", help="the sharpness measure (default: the paper's, else the first)")
    parser.add_argument("--dataset")
    parser.add_argument("--model")
    parser.add_argument("--experiment")
    args = parser.parse_args(argv)
    try:
        lower, higher = Column.parse(args.lower), Column.parse(args.higher)
        runs = load_runs(args.folder)
        if runs.empty:
            raise ValueError(f"no readable result.json below {args.folder}")
        table = compare_columns(
            runs,
            lower,
            higher,
            args.metric,
            dataset=args.dataset,
            model=args.model,
            experiment=args.experiment,
            sharpness=args.sharpness,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
