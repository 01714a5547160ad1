"""The paper's qualitative claims, checked per seed on our runs and per table on the paper's numbers.

A reproduction rarely matches published numbers to the decimal; what it must
reproduce is the ordering the paper argues from. Its abstract says that an
increasing batch size (+ B) or a decaying learning rate (+ C, + L) finds
flatter minima (lower sharpness) than a constant batch size and learning
rate. The other claims are this project's reading of the paper's tables, not
sentences of its text: SAM/GSAM end flatter than SGD, and the test-error
orderings (the abstract says nothing about test error). Each claim is data:
a metric and the pairs of cells (lower, higher) it asserts.

Our runs are judged per seed (the cells of one seed are compared with each
other): in how many seeds the claim holds for every pair, the effect
(ratio or difference, see `claim_stats`) and, with three seeds or more, an
exact sign-flip test. A test-error claim whose effect is smaller than what
the run's test set and seeds can resolve is *unresolved* rather than failed
(`claim_resolution`). The paper's seven tables are judged the same way, one
table per "seed", so a reader sees next to each of our claims how firmly the
paper's own numbers support it, and where they contradict its abstract
(+ C is sharper than constant in all 21 of its comparisons).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .claim_resolution import UNRESOLVED, claim_resolution, evaluated_test_size, unresolved_note
from .claim_stats import MIN_SEEDS_FOR_TEST, Comparison, Summary, effect_kind, format_effect, format_p, summarize
from .load import completed
from .names import OPTIMIZERS, PAPER_SCHEDULES, cell_label, cell_order
from .paper import has_paper_numbers, paper_tables, reported_value
from .stats import TEST_ERROR, choose_measure, measures_in, metric_column, select_runs
from .tables import Table

Cell = tuple[str, str]
HOLDS, FAILS, MIXED, NOT_CHECKED = "holds", "fails", "mixed", "n/a"
_SCHEDULE_WORDS = {
    "batch": "an increasing batch size",
    "cosine": "a decaying learning rate",
    "linear": "a decaying learning rate",
}


@dataclass(frozen=True)
class Claim:
    """`pairs` are (cell that should be lower, cell it should be lower than) on `metric`.

    `abstract` is what the paper's abstract says on the matter; None when it
    says nothing, and the claim is this project's reading of the paper's
    tables (every test-error claim, and SAM/GSAM against SGD).
    """

    text: str
    metric: str  # "test_error" or "sharpness"
    pairs: tuple[tuple[Cell, Cell], ...]
    abstract: str | None = None


def _schedule_vs_constant(schedule: str, metric: str, noun: str) -> Claim:
    suffix = cell_label("sgd", schedule)[len("SGD") :].strip()
    words = _SCHEDULE_WORDS.get(schedule)
    # The abstract speaks of flatness only; a test-error ordering is read from the tables.
    abstract = f"{words} finds flatter minima than a constant batch size and lr" if words else None
    return Claim(
        f"{suffix} {noun} < constant {noun}, for each optimizer",
        metric,
        tuple(((opt, schedule), (opt, "constant")) for opt in OPTIMIZERS),
        abstract if metric == "sharpness" else None,
    )


def _sam_vs_sgd(schedule: str, metric: str, noun: str) -> Claim:
    where = "constant" if schedule == "constant" else cell_label("sgd", schedule)[len("SGD") :].strip()
    pairs = tuple(((opt, schedule), ("sgd", schedule)) for opt in OPTIMIZERS[1:])
    return Claim(f"SAM and GSAM {noun} < SGD {noun}, {where}", metric, pairs)


def claims_for(schedules: set[str]) -> list[Claim]:
    """The claims to check; the `+ L` ones only when linear-schedule runs exist."""
    decaying = [s for s in ("batch", "cosine", "linear") if s in PAPER_SCHEDULES or s in schedules]
    compared = [s for s in ("constant", *decaying)]
    claims = []
    for metric, noun in (("sharpness", "sharpness"), ("test_error", "test error")):
        claims += [_schedule_vs_constant(s, metric, noun) for s in decaying]
        claims += [_sam_vs_sgd(s, metric, noun) for s in compared]
    return claims


def cell_values(runs: pd.DataFrame, column: str | None) -> dict[Cell, dict[object, float]]:
    """`{cell: {seed: value}}` of the completed runs that have the metric."""
    if column is None or column not in runs.columns:
        return {}
    done = completed(runs)[["optimizer", "schedule", "seed", column]].dropna()
    out: dict[Cell, dict[object, float]] = {}
    for opt, sched, seed, value in done.itertuples(index=False, name=None):
        out.setdefault((opt, sched), {})[int(seed)] = float(value)
    return out


def comparisons(claim: Claim, values: dict[Cell, dict[object, float]]) -> list[Comparison]:
    """The claim's pairs, compared in every replicate (seed or table) where both cells have a value."""
    found = []
    for lower, higher in claim.pairs:
        a, b = values.get(lower, {}), values.get(higher, {})
        found += [Comparison(lower, higher, r, a[r], b[r]) for r in sorted(a.keys() & b.keys(), key=str)]
    return found


def judge(claim: Claim, values: dict[Cell, dict[object, float]]) -> Summary:
    """Counts, effect and test of one claim over the replicates in `values`."""
    found = comparisons(claim, values)
    return summarize(found, len(claim.pairs), effect_kind(claim.metric, found))


def _paper_values(metric: str, tables: list[tuple[str, str]]) -> dict[Cell, dict[object, float]]:
    out: dict[Cell, dict[object, float]] = {}
    for dataset, model in tables:
        for sched in PAPER_SCHEDULES:
            for opt in OPTIMIZERS:
                value = reported_value(dataset, model, opt, sched, metric)
                if value is not None:
                    out.setdefault((opt, sched), {})[(dataset, model)] = value
    return out


def paper_summaries(claims: list[Claim]) -> dict[str, Summary]:
    """Each claim judged on the paper's seven tables, one table per replicate."""
    tables = paper_tables()
    values = {m: _paper_values(m, tables) for m in ("sharpness", "test_error")}
    return {claim.text: judge(claim, values[claim.metric]) for claim in claims}


def contradicts_abstract(claim: Claim, paper: Summary) -> bool:
    """The paper's tables go against what its abstract says (in any of their comparisons)."""
    if claim.abstract is None or paper.comparisons == 0:
        return False
    return paper.comparisons_holding < paper.comparisons


def abstract_note(claim: Claim, paper: Summary) -> str:
    """One line: what the abstract says, and how the paper's own tables go against it."""
    held = f"{paper.comparisons_holding} of {paper.comparisons}"
    return (
        f'The paper\'s abstract says {claim.abstract}; its own tables go against it: "{claim.text}" '
        f"holds in {held} comparisons (effect {format_effect(paper)})."
    )


def _seeds(summary: Summary) -> str:
    if summary.replicates == 0:
        return "-"
    text = f"{summary.replicates_holding}/{summary.replicates}"
    return text + " (one seed)" if summary.replicates == 1 else text


def _counts(summary: Summary) -> str:
    if summary.comparisons == 0:
        return "-"
    return (
        f"{summary.comparisons_holding}/{summary.comparisons} ({summary.replicates_holding}/"
        f"{summary.replicates} tables)"
    )


def check_claims(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    sharpness: str | None = None,
) -> Table:
    """A `Table` of the claims for one (dataset, model[, variant]): ours per seed next to the paper's counts.

    Sharpness claims use the table's sharpness measure (see `paper_table`);
    the orderings they assert make sense for any measure. `table.stats` holds
    the numbers, one row per claim; `claims_per_seed` gives every comparison.
    """
    selection = select_runs(runs, dataset, model, experiment, variant)
    runs = selection.runs
    measure = choose_measure(measures_in(runs), sharpness)
    values = {
        "test_error": cell_values(runs, TEST_ERROR),
        "sharpness": cell_values(runs, metric_column(measure) if measure else None),
    }
    claims = claims_for(set(runs["schedule"].unique()))
    paper = paper_summaries(claims)
    in_paper = has_paper_numbers(dataset, model)
    here = {m: _paper_values(m, [(dataset, model)]) for m in values} if in_paper else None
    test_size = evaluated_test_size(runs)

    rows, tidy, one_seed, missing, against, resolutions = [], [], [], [], [], []
    for claim in claims:
        ours, theirs = judge(claim, values[claim.metric]), paper[claim.text]
        this_table = judge(claim, here[claim.metric]).verdict if here else "-"
        verdict, effect, resolution = ours.verdict, format_effect(ours), None
        if claim.metric == "test_error" and ours.comparisons:
            resolution = claim_resolution(comparisons(claim, values[claim.metric]), test_size)
            if resolution is not None and abs(ours.effect) < resolution:
                verdict, effect = UNRESOLVED, f"{effect}; resolves ±{resolution:.2f} pp"
                resolutions.append(resolution)
        row = [claim.text, verdict, _seeds(ours), effect, format_p(ours), _counts(theirs), format_effect(theirs)]
        rows.append(row + ([this_table if this_table != NOT_CHECKED else "-"] if in_paper else []))
        if ours.replicates == 1:
            one_seed.append(claim.text)
        if ours.replicates == 0:
            missing.append({c for pair in claim.pairs for c in pair if c not in values[claim.metric]})
        if contradicts_abstract(claim, theirs):
            against.append(abstract_note(claim, theirs))
        tidy.append(_tidy_row(selection, claim, ours, theirs, this_table, verdict, resolution))

    notes = _notes(rows, one_seed, missing, against)
    if resolutions and test_size is not None:
        notes.insert(0, unresolved_note(resolutions, test_size))
    held = sum(r[1] == HOLDS for r in rows)
    resolved = len(rows) - len(resolutions)
    counted = (
        f"{held} of {len(rows)} claims hold"
        if not resolutions
        else f"{held} of the {resolved} claims this run can resolve hold"
    )
    caption = (
        f"{counted} in every seed of our runs (sharpness: "
        f"{measure or 'none measured'})"
        + (
            f"; {len(resolutions)} test-error claim{'s are' if len(resolutions) > 1 else ' is'} below what its "
            "test set and seeds can resolve (unresolved, see the note)"
            if resolutions
            else ""
        )
        + ". Effect: lower / higher cell as a ratio (sharpness; below 1 "
        "is the claim's direction) or a difference in points (test error; below 0), geometric mean "
        "(mean) and range over the claim's comparisons. Paper: the same check on its 7 tables, one "
        "table per seed."
    )
    header = ["Claim", "Ours", "Seeds holding", "Effect (ours)", "p (ours)", "Paper: comparisons", "Effect (paper)"] + (
        ["Paper: this table"] if in_paper else []
    )
    return Table(
        title=f"{selection.title()}: the paper's claims",
        header=header,
        align="lcclrcl" + ("c" if in_paper else ""),
        rows=rows,
        caption=caption,
        notes=notes,
        key=selection.key("claims"),
        stats=pd.DataFrame(tidy),
    )


def _notes(rows: list[list[str]], one_seed: list[str], missing: list[set], against: list[str]) -> list[str]:
    notes = []
    if one_seed and len(one_seed) == sum(r[1] != NOT_CHECKED for r in rows):
        notes.append(
            "Every claim checked here rests on one seed: no spread and no test. "
            "Run more seeds (e.g. seed=0,1,2) to judge them."
        )
    elif one_seed:
        notes.append("Rests on one seed: " + "; ".join(one_seed) + ".")
    if any(r[4] not in ("-", "one seed") for r in rows):
        notes.append(
            f"p: exact one-sided sign-flip permutation test over seeds of the mean log ratio (mean "
            f"difference); shown from {MIN_SEEDS_FOR_TEST} seeds; with n seeds the smallest p possible "
            "is 1/2^n (0.125 for 3, 0.031 for 5)."
        )
    if missing:
        cells = cell_order(set().union(*missing))
        absent = [cell_label(*c) for c in cells if any(c in m for m in missing)]
        what = (
            f"they need cells without a completed run: {', '.join(absent)}"
            if absent
            else "no seed has both cells of every pair"
        )
        notes.append(f"n/a ({len(missing)} claim{'s' if len(missing) > 1 else ''}): {what}.")
    return notes + against


def _tidy_row(
    selection, claim: Claim, ours: Summary, theirs: Summary, this_table: str, verdict: str, resolution: float | None
) -> dict:
    row = {
        "experiment": selection.runs["experiment"].iloc[0] if len(selection.runs) else selection.experiment,
        "dataset": selection.dataset,
        "model": selection.model,
        "variant": selection.runs["variant"].iloc[0] if len(selection.runs) else (selection.variant or ""),
        "claim": claim.text,
        "metric": claim.metric,
        "ours": verdict,
        # The smallest mean difference (points) the run's test set and seeds resolve; test-error claims only.
        "resolvable_pp": resolution if resolution is not None else math.nan,
    }
    for prefix, s in (("", ours), ("paper_", theirs)):
        row.update(
            {
                f"{prefix}effect_kind": s.kind,
                f"{prefix}replicates": s.replicates,
                f"{prefix}replicates_holding": s.replicates_holding,
                f"{prefix}comparisons": s.comparisons,
                f"{prefix}comparisons_holding": s.comparisons_holding,
                f"{prefix}effect": s.effect,
                f"{prefix}effect_min": s.effect_min,
                f"{prefix}effect_max": s.effect_max,
                f"{prefix}p": s.p,
            }
        )
    row.update(
        {
            "paper": theirs.verdict,
            "paper_this_table": this_table,
            "paper_contradicts_abstract": contradicts_abstract(claim, theirs),
        }
    )
    return row
