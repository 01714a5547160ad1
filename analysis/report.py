"""Everything the analysis says about one results folder, assembled once.

A `Report` holds, per (experiment, dataset, model, variant), the
paper-layout table, the comparison with the paper (for the preset's own
values, when the paper has that table) and the claims check; the sweep view
of every key a folder sweeps; and the summary of records left out. The CLI writes it to files and
the terminal; a notebook or the demo can call `build_report` / `report_markdown`
directly.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .claim_detail import claims_per_seed, paper_claims
from .claims import check_claims
from .load import LoadedRuns, load_results
from .paper import compare_with_paper
from .problems import summarize_problems
from .render import latex_document_header, to_latex, to_markdown
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
        for section in self.sections:
            parts.append(to_markdown(section.table, heading="##"))
            if section.comparison is not None:
                parts.append(to_markdown(section.comparison, heading="###"))
            parts.append(to_markdown(section.claims, heading="###"))
            parts.append(to_markdown(section.claims_per_seed, heading="####"))
        for view in self.sweeps:
            parts.append(to_markdown(view.table, heading="##"))
        if self.paper_claims is not None:
            parts.append(to_markdown(self.paper_claims, heading="##"))
        if not self.sections:
            parts.append("No records to tabulate.")
        parts.append("## Records left out\n\n" + summarize_problems(self.loaded.problems))
        return "\n\n".join(parts) + "\n"

    def latex(self) -> str:
        """All tables as LaTeX `table` environments, ready to `\\input`."""
        tables = []
        for section in self.sections:
            tables += [section.table] + ([section.comparison] if section.comparison else [])
            tables += [section.claims, section.claims_per_seed]
        tables += [view.table for view in self.sweeps]
        tables += [self.paper_claims] if self.paper_claims is not None else []
        return latex_document_header() + "\n\n".join(to_latex(t) for t in tables) + "\n"

    def frame(self, part: str) -> pd.DataFrame:
        """Tidy numbers: 'table' (cell stats), 'comparison', 'claims', 'claims_per_seed', 'sweeps', 'paper_claims'."""
        if part == "sweeps":
            frames = [view.table.stats for view in self.sweeps]
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
    return report


def report_markdown(folder: str | os.PathLike, *, sharpness: str | None = None) -> str:
    """The terminal report of a folder, as `python -m analysis FOLDER` prints it (for the demo)."""
    return build_report(folder, sharpness=sharpness).markdown()
