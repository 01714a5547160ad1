"""Everything the analysis says about one results folder, assembled once.

A `Report` holds, per (experiment, dataset, model, variant), the
paper-layout table, the comparison with the paper (for the preset's own
values, when the paper has that table) and the claims check; the sweep view
of every key a folder sweeps; the trials of an Optuna search; and the summary of records left out.
The CLI writes it to files and the terminal; a notebook or the demo can call `build_report` /
`report_markdown` directly.

Only what applies is printed: a claims check only for a table that has the cells of at least one
claim (a study of one column has none), the paper's own claims only when one of ours applies, and
for a study (a sweep view or a search) the per-variant tables of a single cell are left out, since
the sweep view or the search table holds their numbers. Searches and sweep views come first.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .claim_detail import claims_per_seed, paper_claims
from .claims import NOT_CHECKED, check_claims
from .load import LoadedRuns, load_results
from .paper import compare_with_paper
from .problems import summarize_problems
from .render import latex_document_header, to_latex, to_markdown
from .search import find_searches, search_table
from .stats import table_keys
from .sweeps import Sweep, find_sweeps, sweep_table
from .tables import Table, paper_table


@dataclass
class Section:
    """The outputs for one (experiment, dataset, model, variant)."""

    experiment: str
    dataset: str
    model: str
    variant: str
    table: Table
    comparison: Table | None
    claims: Table
    claims_per_seed: Table


@dataclass
class SweepView:
    """One sweep over a key and its table (the figure is drawn from `sweep` by the CLI)."""

    sweep: Sweep
    table: Table


@dataclass
class Report:
    loaded: LoadedRuns
    sections: list[Section] = field(default_factory=list)
    sharpness: str | None = None
    sweeps: list[SweepView] = field(default_factory=list)
    paper_claims: Table | None = None  # the paper's own tables checked like our seeds
    searches: list[Table] = field(default_factory=list)  # one per Optuna search below the folder
    search_notes: list[str] = field(default_factory=list)  # search.json files that could not be read

    def is_study(self) -> bool:
        """A folder that varies keys beyond the grid: its sweep views and searches say more than one cell."""
        return bool(self.sweeps or self.searches)

    def shown_sections(self) -> list[Section]:
        """The per-variant sections worth printing: all of them, but for a study those with two cells or more."""
        if not self.is_study():
            return list(self.sections)
        return [section for section in self.sections if _cells(section.table) >= 2]

    def headline(self) -> str:
        """One line: how many records were read and what became of them."""
        runs = self.loaded.runs
        statuses = Counter(runs["status"])
        unusable = sum(p.kind not in ("failed", "diverged") for p in self.loaded.problems)
        parts = [f"{statuses.get('completed', 0)} completed"]
        parts += [f"{statuses[s]} {s}" for s in ("failed", "diverged") if statuses.get(s)]
        if unusable:
            parts.append(f"{unusable} unusable")
        total = len(runs) + unusable
        return f"{total} run{'s' if total != 1 else ''} found below {self.loaded.root}: {', '.join(parts)}."

    def markdown(self) -> str:
        """The whole report as Markdown: tables, comparisons, claims, then the left-out records."""
        parts = [self.headline()]
        parts += [to_markdown(table, heading="##") for table in self.searches]
        parts += [f"A search record could not be read: {note}" for note in self.search_notes]
        parts += [to_markdown(view.table, heading="##") for view in self.sweeps]
        shown = self.shown_sections()
        for section in shown:
            parts.append(to_markdown(section.table, heading="##"))
            if section.comparison is not None:
                parts.append(to_markdown(section.comparison, heading="###"))
            if _claims_apply(section):
                parts.append(to_markdown(section.claims, heading="###"))
                parts.append(to_markdown(section.claims_per_seed, heading="####"))
        if len(shown) < len(self.sections):
            left = len(self.sections) - len(shown)
            views = " and ".join(name for name, there in (("search", self.searches), ("sweep", self.sweeps)) if there)
            parts.append(
                f"{left} table{'s' if left > 1 else ''} of a single cell (one per value studied) left out: "
                f"the {views} views above hold their numbers, and runs.csv every run."
            )
        if self.paper_claims is not None and any(_claims_apply(section) for section in shown):
            parts.append(to_markdown(self.paper_claims, heading="##"))
        if not self.sections:
            parts.append("No records to tabulate.")
        parts.append("## Records left out\n\n" + summarize_problems(self.loaded.problems))
        return "\n\n".join(parts) + "\n"

    def latex(self) -> str:
        """All tables as LaTeX `table` environments, ready to `\\input`."""
        tables = list(self.searches) + [view.table for view in self.sweeps]
        shown = self.shown_sections()
        for section in shown:
            tables += [section.table] + ([section.comparison] if section.comparison else [])
            tables += [section.claims, section.claims_per_seed] if _claims_apply(section) else []
        if self.paper_claims is not None and any(_claims_apply(section) for section in shown):
            tables.append(self.paper_claims)
        return latex_document_header() + "\n\n".join(to_latex(t) for t in tables) + "\n"

    def frame(self, part: str) -> pd.DataFrame:
        """Tidy numbers: 'table' (cell stats), 'comparison', 'claims', 'claims_per_seed', 'sweeps', 'paper_claims'."""
        if part == "sweeps":
            frames = [view.table.stats for view in self.sweeps]
        elif part == "search":
            frames = [table.stats for table in self.searches]
        elif part == "paper_claims":
            frames = [self.paper_claims.stats] if self.paper_claims is not None else []
        else:
            frames = [getattr(s, part).stats for s in self.sections if getattr(s, part) is not None]
        frames = [f for f in frames if f is not None and not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def build_report(source: LoadedRuns | str | os.PathLike, *, sharpness: str | None = None) -> Report:
    """Build every table of a folder (or of already loaded runs)."""
    loaded = source if isinstance(source, LoadedRuns) else load_results(Path(source))
    runs = loaded.runs
    report = Report(loaded, sharpness=sharpness)
    for experiment, dataset, model, variant in table_keys(runs):
        options = {"experiment": experiment, "variant": variant, "sharpness": sharpness}
        report.sections.append(
            Section(
                experiment,
                dataset,
                model,
                variant,
                table=paper_table(runs, dataset, model, **options),
                comparison=compare_with_paper(runs, dataset, model, experiment=experiment) if variant == "" else None,
                claims=check_claims(runs, dataset, model, **options),
                claims_per_seed=claims_per_seed(runs, dataset, model, **options),
            )
        )
    if report.sections:
        report.paper_claims = paper_claims()
    report.sweeps = [SweepView(sweep, sweep_table(sweep, sharpness)) for sweep in find_sweeps(runs)]
    searches, report.search_notes = find_searches(loaded.root)
    report.searches = [search_table(search, loaded.root) for search in searches]
    return report


def _cells(table: Table) -> int:
    """Grid cells of a table with at least one completed run."""
    stats = table.stats
    if stats is None or stats.empty or "cell" not in stats:
        return 0
    return int(stats.loc[stats["n"] > 0, "cell"].nunique()) if "n" in stats else int(stats["cell"].nunique())


def _claims_apply(section: Section) -> bool:
    """Whether the folder has the cells of at least one claim of this table (else every row says n/a)."""
    stats = section.claims.stats
    if stats is None or stats.empty or "ours" not in stats:
        return False
    return bool((stats["ours"] != NOT_CHECKED).any())


def report_markdown(folder: str | os.PathLike, *, sharpness: str | None = None) -> str:
    """The terminal report of a folder, as `python -m analysis FOLDER` prints it (for the demo)."""
    return build_report(folder, sharpness=sharpness).markdown()
