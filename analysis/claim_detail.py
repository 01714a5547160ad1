"""The claims in detail: every pair of cells per seed, and the paper's own tables checked the same way.

`check_claims` gives one line per claim; a reader who wants to see *which*
seed or *which* optimizer breaks a claim reads `claims_per_seed`: one row per
pair of cells, the effect in every seed, how many seeds hold and the test.
`paper_claims` is the same check on the paper's seven tables alone (one
table per seed), with the places where its numbers contradict its abstract.
"""

from __future__ import annotations

import math

import pandas as pd

from .claim_stats import (
    RATIO,
    Comparison,
    Summary,
    comparison_effect,
    effect_kind,
    format_effect,
    format_p,
    summarize,
)
from .claims import (
    Claim,
    abstract_note,
    cell_values,
    claims_for,
    comparisons,
    contradicts_abstract,
    paper_summaries,
)
from .names import cell_label
from .stats import TEST_ERROR, choose_measure, measures_in, metric_column, select_runs
from .tables import Table

MAX_SEED_COLUMNS = 12


def _seed_cell(found: list[Comparison], seed: int, kind: str) -> str:
    match = [c for c in found if c.replicate == seed]
    if not match:
        return "-"
    value = _scaled(match[0], kind)
    return f"{value:.3g}" if kind == RATIO else f"{value:+.2f}"


def claims_per_seed(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    sharpness: str | None = None,
) -> Table:
    """One row per (claim, pair of cells): the effect in each seed, seeds holding, effect over seeds, p.

    A ratio (sharpness) below 1 or a difference (test error) below 0 is the
    claim's direction; `-` is a seed in which one of the two cells has no
    completed run. `table.stats` holds one row per comparison.
    """
    selection = select_runs(runs, dataset, model, experiment, variant)
    measure = choose_measure(measures_in(selection.runs), sharpness)
    values = {
        "test_error": cell_values(selection.runs, TEST_ERROR),
        "sharpness": cell_values(selection.runs, metric_column(measure) if measure else None),
    }
    seeds = sorted({s for by_cell in values.values() for cell in by_cell.values() for s in cell})
    shown = seeds if len(seeds) <= MAX_SEED_COLUMNS else []
    rows, tidy = [], []
    for claim in claims_for(set(selection.runs["schedule"].unique())):
        found_all = comparisons(claim, values[claim.metric])
        kind = effect_kind(claim.metric, found_all)  # one kind per claim, as in check_claims
        for i, (lower, higher) in enumerate(claim.pairs):
            found = [c for c in found_all if (c.lower, c.higher) == (lower, higher)]
            summary = summarize(found, 1, kind)
            rows.append(
                [claim.text if i == 0 else "", f"{cell_label(*lower)} < {cell_label(*higher)}"]
                + [_seed_cell(found, s, kind) for s in shown]
                + [_holding(summary), format_effect(summary), format_p(summary)]
            )
            tidy += [
                {
                    "dataset": dataset,
                    "model": model,
                    "claim": claim.text,
                    "metric": claim.metric,
                    "lower": cell_label(*c.lower),
                    "higher": cell_label(*c.higher),
                    "seed": c.replicate,
                    "lower_value": c.lower_value,
                    "higher_value": c.higher_value,
                    "effect_kind": kind,
                    "effect": _scaled(c, kind),
                    "holds": c.holds,
                }
                for c in found
            ]
    return Table(
        title=f"{selection.title()}: the paper's claims, per seed",
        header=["Claim", "Cells"] + [f"seed {s}" for s in shown] + ["Holds", "Effect", "p"],
        align="ll" + "r" * len(shown) + "crr",
        rows=rows,
        caption="Per pair of cells and seed: sharpness as the ratio lower / higher (below 1 holds), test error "
        "as the difference lower - higher in points (below 0 holds); `-`: a cell without a completed run "
        "in that seed."
        + (
            ""
            if shown or not seeds
            else f" {len(seeds)} seeds: one column each would not read; every comparison is in claims_per_seed.csv."
        ),
        key=selection.key("claims-per-seed"),
        stats=pd.DataFrame(tidy),
    )


def _scaled(c: Comparison, kind: str) -> float:
    value = comparison_effect(c, kind)
    return math.exp(value) if kind == RATIO else value


def _holding(summary: Summary) -> str:
    return f"{summary.comparisons_holding}/{summary.comparisons}" if summary.comparisons else "-"


def paper_claims(claims: list[Claim] | None = None) -> Table:
    """The claims on the paper's published numbers alone: its 7 tables, one table per seed.

    Shows, per claim, in how many tables and comparisons it holds, the effect,
    the sign-flip test over tables, and where the numbers contradict the
    paper's abstract.
    """
    claims = claims if claims is not None else claims_for(set())
    summaries = paper_summaries(claims)
    rows, tidy, notes = [], [], []
    for claim in claims:
        s = summaries[claim.text]
        if s.comparisons == 0:
            continue
        against = contradicts_abstract(claim, s)
        rows.append(
            [
                claim.text,
                s.verdict,
                f"{s.replicates_holding}/{s.replicates}",
                f"{s.comparisons_holding}/{s.comparisons}",
                format_effect(s),
                format_p(s),
                "contradicts it" if against else ("agrees" if claim.abstract else "-"),
            ]
        )
        if against:
            notes.append(abstract_note(claim, s))
        tidy.append(
            {
                "claim": claim.text,
                "metric": claim.metric,
                "verdict": s.verdict,
                "tables": s.replicates,
                "tables_holding": s.replicates_holding,
                "comparisons": s.comparisons,
                "comparisons_holding": s.comparisons_holding,
                "effect_kind": s.kind,
                "effect": s.effect,
                "effect_min": s.effect_min,
                "effect_max": s.effect_max,
                "p": s.p,
                "contradicts_abstract": against,
            }
        )
    return Table(
        title="The paper's own numbers: its claims across its 7 tables",
        header=["Claim", "Paper", "Tables holding", "Comparisons holding", "Effect", "p", "Abstract"],
        align="lcccllc",
        rows=rows,
        caption="Each of the paper's tables (dataset x model, reported_results.csv) taken as one seed: the "
        "claim holds in a table when it holds for every pair of cells there. p: exact sign-flip test over "
        "the 7 tables (smallest possible 1/128 = 0.0078). Abstract: whether the tables agree with what the "
        "paper's abstract says on the claim; '-': the abstract says nothing on it, and the claim is this "
        "project's reading of the paper's tables (SAM and GSAM against SGD, and every test-error claim: "
        "the abstract does not mention test error).",
        notes=notes,
        key="paper-claims",
        stats=pd.DataFrame(tidy),
    )
