"""Tables in the paper's layout: one per (dataset, model), cells as columns.

`paper_table` turns the runs of one (dataset, model[, variant]) into rows `Test Error (%)`
and `Sharpness` (plus one row per further sharpness measure) over the columns
`SGD, SAM, GSAM, SGD + B, ..., GSAM + C` (then `+ L`). Each value is
`mean ± std` over seeds (sample std, ddof=1); a cell with a single seed shows
its value alone, since one seed has no spread. When cells stand on different
numbers of seeds (or a measure ran for fewer seeds than the cell has), every
value of that row carries `(n=k)`; otherwise the caption says how many. A
cell without a completed run shows `-` and is listed under the table.

The `Table` built here is format-free (strings in a grid, a caption, notes);
`render` turns any `Table` into Markdown or LaTeX, so the comparison with the
paper and the claims reuse it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from .load import completed
from .names import SHARPNESS_ROW, TEST_ERROR_ROW, cell_label, cell_order
from .protocol import protocol_note
from .stats import TEST_ERROR, cell_stats, choose_measure, measures_in, metric_column, select_runs, stats_lookup

MISSING = "-"


@dataclass
class Table:
    """A rendered-to-strings table: header, rows (label first), caption and notes."""

    title: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    key: str = ""  # file-name-safe identifier, also the LaTeX label
    align: str = ""  # one of l/c/r per column; default: label left, values right
    stats: pd.DataFrame | None = None  # the numbers behind the strings, tidy

    def alignment(self) -> str:
        """Column alignment letters, one per header cell."""
        return self.align or "l" + "r" * (len(self.header) - 1)

    def frame(self) -> pd.DataFrame:
        """The grid as a DataFrame of strings (row labels as index), for notebooks."""
        return pd.DataFrame([r[1:] for r in self.rows], index=[r[0] for r in self.rows], columns=self.header[1:])

    def __str__(self) -> str:
        from .render import to_markdown

        return to_markdown(self)

    def _repr_markdown_(self) -> str:
        return str(self)


def decimals_for(values: list[float]) -> int:
    """Decimals for one row: two (as the paper), more when every value is tiny.

    Sharpness of a small demo model can be 0.003; printing `0.00` would hide
    it, so small rows get three significant digits of their largest value.
    """
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite or max(finite) >= 0.1:
        return 2
    return min(8, 2 - math.floor(math.log10(max(finite))))


def format_number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


def format_mean_std(mean: float, std: float, n: int, decimals: int, show_n: bool = False) -> str:
    """`6.20 ± 0.20`; one seed -> `6.20`; with `show_n` -> `6.20 ± 0.20 (n=3)`."""
    text = format_number(mean, decimals)
    if n > 1 and math.isfinite(std):
        text += f" ± {format_number(std, decimals)}"
    return text + (f" (n={n})" if show_n else "")


def _seed_phrase(counts: set[int]) -> str:
    if not counts:
        return "no completed runs"
    if len(counts) > 1:
        return f"{min(counts)} to {max(counts)} seeds per cell (n shown per value)"
    n = counts.pop()
    return "one seed per cell (no std)" if n == 1 else f"{n} seeds per cell"


def _left_out_notes(
    runs: pd.DataFrame, cells: list[tuple[str, str]], present: set, in_preset: set | None = None
) -> list[str]:
    """Missing cells, and cells whose mean left out failed or diverged seeds.

    `in_preset`: cells with completed runs among the preset's own values, for
    a variant's table; a variant's value that does not apply to a cell (rho
    to SGD) leaves that cell's runs in the preset's folder.
    """
    bad = runs[runs["status"] != "completed"]
    counts = bad.groupby(["optimizer", "schedule", "status"]).size().to_dict() if not bad.empty else {}

    def why(cell: tuple[str, str]) -> str:
        parts = [f"{k} {st}" for (o, s, st), k in sorted(counts.items()) if (o, s) == cell]
        return f" ({', '.join(parts)})" if parts else ""

    notes = []
    missing = [c for c in cells if c not in present]
    elsewhere = [c for c in missing if in_preset and c in in_preset]
    missing = [c for c in missing if c not in elsewhere]
    if elsewhere:
        notes.append(
            "Run with the preset values only (see that table; a value that does not apply to a cell, "
            "such as rho to SGD, leaves it there): " + ", ".join(cell_label(*c) for c in elsewhere) + "."
        )
    if missing:
        notes.append("Missing (no completed run): " + ", ".join(cell_label(*c) + why(c) for c in missing) + ".")
    partial = [c for c in cells if c in present and why(c)]
    if partial:
        notes.append("Left out of the means: " + ", ".join(cell_label(*c) + why(c) for c in partial) + ".")
    return notes


def paper_table(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    sharpness: str | None = None,
) -> Table:
    """The paper's table for one (dataset, model[, variant]) from a runs DataFrame (`load_runs`).

    `sharpness` names the measure of the `Sharpness` row (default: the
    paper's `worst_linf`, or the only/first measure present); every other
    measure gets a row `Sharpness: <name>`. `experiment` and `variant` are
    needed only when the runs hold several of them for this (dataset, model).
    """
    all_runs = runs
    selection = select_runs(runs, dataset, model, experiment, variant)
    runs = selection.runs
    measures = measures_in(runs)
    main = choose_measure(measures, sharpness)
    row_metrics = [(TEST_ERROR_ROW, TEST_ERROR)]
    row_metrics.append((SHARPNESS_ROW, metric_column(main) if main else None))
    row_metrics += [(f"{SHARPNESS_ROW}: {m}", metric_column(m)) for m in measures if m != main]

    stats = cell_stats(runs)
    lookup = stats_lookup(stats)
    cells = cell_order(set(runs[["optimizer", "schedule"]].itertuples(index=False, name=None)))
    present = set(completed(runs)[["optimizer", "schedule"]].itertuples(index=False, name=None))

    rows = []
    for label, metric in row_metrics:
        values = {c: lookup.get((*c, metric)) for c in cells} if metric else {}
        found = {c: v for c, v in values.items() if v is not None}
        decimals = decimals_for([v[0] for v in found.values()])
        # Seeds are shown when they differ across cells, or from the cell's completed runs
        # (a measure that ran for only some seeds).
        seeds = {c: lookup[(*c, TEST_ERROR)][2] for c in found if (*c, TEST_ERROR) in lookup}
        show_n = len({v[2] for v in found.values()}) > 1 or any(v[2] != seeds.get(c) for c, v in found.items())
        rows.append([label] + [format_mean_std(*found[c], decimals, show_n) if c in found else MISSING for c in cells])

    in_preset = None
    if selection.variant:  # a variant's table, next to the preset's
        others = all_runs[
            (all_runs["dataset"] == dataset)
            & (all_runs["model"] == model)
            & (all_runs["experiment"] == (runs["experiment"].iloc[0] if len(runs) else experiment))
            & (all_runs["variant"] == "")
        ]
        in_preset = set(completed(others)[["optimizer", "schedule"]].itertuples(index=False, name=None))
    notes = _left_out_notes(runs, cells, present, in_preset)
    mixed = protocol_note(runs)
    if mixed:
        notes.append(mixed)
    if main and main not in measures:
        notes.append(
            f"No run of this table has the sharpness measure {main!r}"
            + (f" (present: {', '.join(measures)})." if measures else ".")
        )
    elif main:
        unmeasured = [c for c in cells if c in present and (*c, metric_column(main)) not in lookup]
        if unmeasured:
            notes.append(f"Sharpness ({main}) not measured: " + ", ".join(cell_label(*c) for c in unmeasured) + ".")
    else:
        notes.append("These records hold no sharpness measure.")

    seed_counts = {v[2] for (_, _, m), v in lookup.items() if m == TEST_ERROR}
    sharp = f"sharpness ({main})" if main else "sharpness"
    caption = (
        f"Test error (%) and {sharp} of the final model; mean ± sample std over seeds, {_seed_phrase(seed_counts)}."
    )
    stats = stats.assign(
        experiment=runs["experiment"].iloc[0] if len(runs) else experiment,
        dataset=dataset,
        model=model,
        variant=runs["variant"].iloc[0] if len(runs) else (variant or ""),
    )
    stats["cell"] = [cell_label(o, s) for o, s in zip(stats["optimizer"], stats["schedule"])]
    return Table(
        title=selection.title(),
        header=[""] + [cell_label(*c) for c in cells],
        rows=rows,
        caption=caption,
        notes=notes,
        key=selection.key(),
        stats=stats[
            ["experiment", "dataset", "model", "variant", "optimizer", "schedule", "cell", "metric", "mean", "std", "n"]
        ],
    )
