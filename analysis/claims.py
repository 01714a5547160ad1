"""The paper's qualitative claims, checked per table: holds, fails, or cannot be checked.

A reproduction rarely matches published numbers to the decimal; what it must
reproduce is the ordering the paper argues from: an increasing batch size or
a decaying learning rate ends in flatter minima (lower sharpness), usually
with a lower test error, than a constant batch size and learning rate; and
SAM/GSAM end flatter than SGD. Each claim is data: a metric and the pairs of
cells (lower, higher) it asserts, one pair per optimizer or schedule. A claim
holds when every pair's mean is strictly ordered, fails when any pair is
not, and is `n/a` when cells are missing and no checked pair fails. Means
are compared without a noise margin; the seed spread is in the table.

Each claim is judged on our runs and, where the paper has the table, on the
paper's own numbers, since some claims do not hold in the paper either.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .names import OPTIMIZERS, PAPER_SCHEDULES, cell_label, cell_order
from .paper import has_paper_numbers, reported_value
from .stats import TEST_ERROR, cell_means, cell_stats, choose_measure, measures_in, metric_column, select_runs
from .tables import Table

Cell = tuple[str, str]
HOLDS, FAILS, NOT_CHECKED = "holds", "fails", "n/a"


@dataclass(frozen=True)
class Claim:
    """`pairs` are (cell that should be lower, cell it should be lower than) on `metric`."""

    text: str
    metric: str  # "test_error" or "sharpness"
    pairs: tuple[tuple[Cell, Cell], ...]


def _schedule_vs_constant(schedule: str, metric: str, noun: str) -> Claim:
    suffix = cell_label("sgd", schedule)[len("SGD"):]
    return Claim(
        f"{suffix.strip()} {noun} < constant {noun}, for each optimizer",
        metric,
        tuple(((opt, schedule), (opt, "constant")) for opt in OPTIMIZERS),
    )


def _sam_vs_sgd(schedules: tuple[str, ...], metric: str, noun: str) -> Claim:
    pairs = tuple(((opt, s), ("sgd", s)) for s in schedules for opt in OPTIMIZERS[1:])
    return Claim(f"SAM and GSAM {noun} < SGD {noun}, for each schedule", metric, pairs)


def claims_for(schedules: set[str]) -> list[Claim]:
    """The claims to check; the `+ L` ones only when linear-schedule runs exist."""
    decaying = [s for s in ("batch", "cosine", "linear") if s in PAPER_SCHEDULES or s in schedules]
    claims = [_schedule_vs_constant(s, "sharpness", "sharpness") for s in decaying]
    claims += [_schedule_vs_constant(s, "test_error", "test error") for s in decaying]
    claims.append(_sam_vs_sgd(PAPER_SCHEDULES, "sharpness", "sharpness"))
    claims.append(_sam_vs_sgd(PAPER_SCHEDULES, "test_error", "test error"))
    return claims


def judge(claim: Claim, means: dict[Cell, float]) -> tuple[str, str]:
    """(verdict, detail) of one claim given the mean of each cell on the claim's metric."""
    failing, missing = [], []
    for lower, higher in claim.pairs:
        absent = [c for c in (lower, higher) if c not in means]
        if absent:
            missing += [c for c in absent if c not in missing]
        elif not means[lower] < means[higher]:
            failing.append(f"{cell_label(*lower)} >= {cell_label(*higher)}")
    if failing:
        return FAILS, "; ".join(failing)
    if missing:
        return NOT_CHECKED, "missing " + ", ".join(cell_label(*c) for c in cell_order(missing) if c in missing)
    return HOLDS, ""


def _paper_means(dataset: str, model: str, metric: str) -> dict[Cell, float]:
    cells = [(o, s) for s in PAPER_SCHEDULES for o in OPTIMIZERS]
    values = {c: reported_value(dataset, model, *c, metric) for c in cells}
    return {c: v for c, v in values.items() if v is not None}


def check_claims(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    sharpness: str | None = None,
) -> Table:
    """A `Table` of the claims for one (dataset, model): ours / the paper's verdict, and why ours fails.

    Sharpness claims use the table's sharpness measure (see `paper_table`);
    the orderings they assert make sense for any measure.
    """
    selection = select_runs(runs, dataset, model, experiment, variant)
    runs = selection.runs
    measure = choose_measure(measures_in(runs), sharpness)
    columns = {"test_error": TEST_ERROR, "sharpness": metric_column(measure) if measure else None}
    stats = cell_stats(runs, [c for c in columns.values() if c])
    ours = {m: cell_means(stats, c) if c else {} for m, c in columns.items()}
    in_paper = has_paper_numbers(dataset, model)
    paper = {m: _paper_means(dataset, model, m) for m in columns} if in_paper else None

    rows, tidy = [], []
    for claim in claims_for(set(runs["schedule"].unique())):
        verdict, detail = judge(claim, ours[claim.metric])
        paper_verdict = judge(claim, paper[claim.metric])[0] if paper else "-"
        if paper_verdict == NOT_CHECKED:  # the paper has every cell it reports; a gap is a schedule it lacks
            paper_verdict = "-"
        rows.append([claim.text, verdict, paper_verdict, detail])
        tidy.append({"dataset": dataset, "model": model, "claim": claim.text, "metric": claim.metric,
                     "ours": verdict, "paper": paper_verdict, "detail": detail})
    held = sum(r[1] == HOLDS for r in rows)
    caption = (f"{held} of {len(rows)} claims hold in our runs "
               f"(sharpness: {measure or 'none measured'}; means compared, strict <).")
    if in_paper:
        caption += " Paper: the same check on its published numbers."
    return Table(
        title=f"{selection.title()}: the paper's claims",
        header=["Claim", "Ours", "Paper", "Details (ours)"],
        align="lccl",
        rows=rows,
        caption=caption,
        key=selection.key("claims"),
        stats=pd.DataFrame(tidy),
    )
