"""From result.json records to the paper's tables, a comparison with the paper, and figures.

    python -m analysis results/demo            # print the tables, write results/demo/analysis/

In a notebook:

    import analysis
    runs = analysis.load_runs("results")                 # one row per run
    table = analysis.paper_table(runs, "cifar10", "resnet18")
    table                                                # renders as Markdown
    analysis.compare_with_paper(runs, "cifar10", "resnet18")
    analysis.check_claims(runs, "cifar10", "resnet18")
    for sweep in analysis.find_sweeps(runs):         # a study over rho, lr, ...
        analysis.sweep_table(sweep)                  # each column against the swept key

    from analysis.compare import Column, compare_columns    # a control across variants
    compare_columns(runs, Column.parse("batch"), Column.parse("constant@epochs=62"))

Values are `mean ± std` over seeds with the sample standard deviation
(ddof=1); a cell with one seed shows its value alone. Failed, diverged and
unreadable records never enter a mean; `load_results(root).problems` lists them.
Tables are built per (dataset, model, variant): a variant (`rho=0.1`) is a
set of values that differ from the experiment preset, "" the preset's own.
"""

from .claim_detail import claims_per_seed, paper_claims
from .claim_stats import Comparison, Summary, sign_flip_p, summarize
from .claims import Claim, check_claims, claims_for
from .columns import read_runs_csv, write_runs_csv
from .figures import plot_curves, plot_table, save_figure
from .grid_curves import curve_frame, plot_grid_curves
from .load import LoadedRuns, completed, load_results, load_runs
from .paper import compare_with_paper, reported_results, reported_value
from .problems import Problem, summarize_problems
from .render import to_latex, to_markdown
from .report import Report, build_report, report_markdown
from .stats import Selection, cell_stats, select_runs, table_keys
from .sweep_figure import plot_sweep
from .sweeps import Sweep, find_sweeps, sweep_stats, sweep_table
from .tables import Table, paper_table

__all__ = [
    "Claim",
    "Comparison",
    "LoadedRuns",
    "Problem",
    "Report",
    "Selection",
    "Summary",
    "Sweep",
    "Table",
    "build_report",
    "cell_stats",
    "check_claims",
    "claims_for",
    "claims_per_seed",
    "compare_with_paper",
    "completed",
    "curve_frame",
    "find_sweeps",
    "load_results",
    "load_runs",
    "paper_claims",
    "paper_table",
    "plot_curves",
    "plot_grid_curves",
    "plot_sweep",
    "plot_table",
    "read_runs_csv",
    "report_markdown",
    "reported_results",
    "reported_value",
    "save_figure",
    "select_runs",
    "sign_flip_p",
    "summarize",
    "summarize_problems",
    "sweep_stats",
    "sweep_table",
    "table_keys",
    "to_latex",
    "to_markdown",
    "write_runs_csv",
]
