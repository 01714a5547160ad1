"""`python -m analysis FOLDER` / `sam-analysis FOLDER`: tables, comparison, claims and figures.

Reads every result.json below FOLDER (a results root, a sweep folder or one
run folder), prints the Markdown report, and writes to --out (default
FOLDER/analysis; when FOLDER is read-only, ./analysis-<folder name>, see
`output`):

    tables.md                          every table, comparison and claims check, left-out records
    tables.tex                         the same tables, LaTeX booktabs
    runs.csv                           tidy: one row per run (all statuses)
    cells.csv, comparison.csv, claims.csv   tidy numbers behind the tables
    claims_per_seed.csv, paper_claims.csv   every comparison of a claim; the paper's tables checked alike
    sweeps.csv                         tidy numbers of the sweep views (when the folder sweeps a key)
    search.csv                         the trials of an Optuna search (when the folder holds one)
    figures/<table>.png|pdf            grouped bars per table
    figures/<table>-curves.png|pdf     the table's cells overlaid: training loss, test error, gradient norm
    figures/<table>-sweep-<key>.png|pdf  a sweep view's lines: each column against the swept key
    figures/curves/<run>.png|pdf       training curves per run folder

Exit status: 0 when at least one table was built, 1 when there was nothing
to tabulate, 2 when FOLDER does not exist, an argument is wrong or nothing
can be written. Bad records never make it fail: they are summarised instead
(and counted in one warning line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from pathlib import Path

from .columns import write_runs_csv
from .figure_jobs import FigureJob, render_figures
from .figures import plot_curves, plot_table
from .grid_curves import curve_frame, plot_grid_curves
from .output import OutputError, output_folder
from .report import Report, build_report
from .stats import select_runs
from .sweep_figure import plot_sweep

FORMATS = ("md", "tex", "csv")
FIGURE_CHOICES = ("all", "tables", "none")
UNUSABLE = ("corrupt", "schema", "invalid", "duplicate")  # problem kinds that are not runs' own failures


def _formats(text: str) -> list[str]:
    chosen = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sam-analysis" if Path(sys.argv[0]).name == "sam-analysis" else "python -m analysis",
        description="Build the paper's tables, the comparison with the paper, the claims check "
        "and figures from the result.json records below a folder.",
    )
    parser.add_argument("folder", type=Path, help="results root, sweep folder or run folder")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output folder (default: FOLDER/analysis, or ./analysis-<folder name> when FOLDER is read-only)",
    )
    parser.add_argument(
        "--format",
        type=_formats,
        default=list(FORMATS),
        dest="formats",
        metavar="md,tex,csv",
        help="comma-separated subset of md,tex,csv (default: all)",
    )
    parser.add_argument(
        "--sharpness",
        default=None,
        metavar="NAME",
        help="sharpness measure of the table's Sharpness row (default: worst_linf, or the only measure present)",
    )
    parser.add_argument(
        "--figures",
        choices=FIGURE_CHOICES,
        default="all",
        help="all (default): bars and overlaid curves per table, sweep views and curves per run; "
        "tables: all but the curves per run; none",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the report")
    return parser.parse_args(argv)


def write_tables(report: Report, out: Path, formats: list[str]) -> list[Path]:
    """Write the report's text outputs; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if "md" in formats:
        (out / "tables.md").write_text(report.markdown(), encoding="utf-8")
        written.append(out / "tables.md")
    if "tex" in formats:
        (out / "tables.tex").write_text(report.latex(), encoding="utf-8")
        written.append(out / "tables.tex")
    if "csv" in formats:
        write_runs_csv(report.loaded.runs, out / "runs.csv")
        written.append(out / "runs.csv")
        parts = (
            ("cells", "table"),
            ("comparison", "comparison"),
            ("claims", "claims"),
            ("claims_per_seed", "claims_per_seed"),
            ("paper_claims", "paper_claims"),
        )
        for name, part in parts:
            report.frame(part).to_csv(out / f"{name}.csv", index=False)
            written.append(out / f"{name}.csv")
        for part, there in (("sweeps", report.sweeps), ("search", report.searches)):
            if there:
                report.frame(part).to_csv(out / f"{part}.csv", index=False)
                written.append(out / f"{part}.csv")
    return written


def write_figures(report: Report, out: Path, which: str, workers: int | None = None) -> tuple[list[Path], list[str]]:
    """Draw the figures; a figure that cannot be drawn is a warning, never a crash.

    Drawing and saving is most of the analysis's time (matplotlib lays out and
    rasterises every figure twice, PNG and PDF), and the figures are independent:
    they are drawn by up to `workers` processes (default: one per available core).
    """
    if which == "none":
        return [], []
    runs = report.loaded.runs
    jobs: list[FigureJob] = []
    warnings: list[str] = []
    for section in report.sections:
        if section.table.stats is None or section.table.stats.empty:  # no completed run: nothing to draw
            continue
        options = {"experiment": section.experiment, "variant": section.variant}
        jobs.append(
            FigureJob(
                out / "figures" / section.table.key,
                partial(plot_table, runs, section.dataset, section.model, sharpness=report.sharpness, **options),
                f"figure for {section.table.title}",
            )
        )
        frame, unreadable = curve_frame(select_runs(runs, section.dataset, section.model, **options).runs)
        if which != "all":  # with per-run curves, those say which metrics.csv cannot be read
            warnings += [f"curves of {line}" for line in unreadable]
        if frame.empty:
            continue
        jobs.append(
            FigureJob(
                out / "figures" / f"{section.table.key}-curves",
                partial(plot_grid_curves, runs, section.dataset, section.model, frame=frame, **options),
                f"curves for {section.table.title}",
            )
        )
    for view in report.sweeps:
        jobs.append(
            FigureJob(
                out / "figures" / view.table.key,
                partial(plot_sweep, view.sweep, report.sharpness),
                f"figure for {view.table.title}",
            )
        )
    if which == "all":
        root = report.loaded.root.resolve()  # run_dir is resolved too
        for run_dir in runs["run_dir"]:
            rel = os.path.relpath(run_dir, root)
            if not (Path(run_dir) / "metrics.csv").is_file():
                continue
            stem = out / "figures" / "curves" / ("run" if rel == "." else rel)
            jobs.append(FigureJob(stem, partial(plot_curves, run_dir, title=rel), f"curves for {rel}"))
    written, failures = render_figures(jobs, workers)
    return written, warnings + failures


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (`sam-analysis`); returns the exit status."""
    try:
        return _run(parse_args(argv))
    except BrokenPipeError:  # `python -m analysis results | head`: the reader left, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _run(args: argparse.Namespace) -> int:
    if not args.folder.is_dir():
        print(f"error: results folder {str(args.folder)!r} does not exist", file=sys.stderr)
        return 2
    try:
        out, note = output_folder(args.folder, args.out)
    except OutputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if note:
        print(note, file=sys.stderr)
    report = build_report(args.folder, sharpness=args.sharpness)
    unusable = [p for p in report.loaded.problems if p.kind in UNUSABLE]
    if unusable:
        print(
            f"warning: {len(unusable)} record{'s' if len(unusable) > 1 else ''} could not be used "
            f"(unreadable, malformed or duplicate); listed under 'Records left out'",
            file=sys.stderr,
        )
    try:
        written = write_tables(report, out, args.formats)
    except OSError as exc:
        print(f"error: cannot write the analysis to {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not args.quiet:  # the tables first: figures of a large sweep take a while
        print(report.markdown(), flush=True)
    figures, warnings = write_figures(report, out, args.figures)
    for warning in warnings:
        print(f"warning: could not draw the {warning}", file=sys.stderr)
    if not args.quiet:
        print(f"Wrote {len(written)} table files and {len(figures)} figure files to {out}")
    return 0 if (report.loaded.runs["status"] == "completed").any() else 1
