"""Paper-style curves: the nine cells of one table overlaid, against epochs, mean and band over seeds.

The paper argues from how training goes, not only where it ends: training
loss, test error and the full-gradient norm (the quantity its convergence
theorems bound) per epoch. One figure per (experiment, dataset, model,
variant) overlays every cell, colour = optimizer and line style = schedule
(the same in every figure of the package), the line the mean over seeds and
the shaded band their range (min to max; `band="std"` for mean ± sample
std). The gradient-norm panel appears only where runs recorded it
(`train.grad_norm_examples` > 0). Epochs a run did not evaluate (`eval_every`)
are blank in its metrics.csv and are skipped, not drawn as zeros.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .figures import cell_style, new_figure, style_legend
from .load import completed
from .names import cell_order, optimizer_order, schedule_order
from .problems import one_line
from .stats import select_runs

METRICS_FILE = "metrics.csv"
# (metrics.csv column, panel title, log scale when every value is positive)
PANELS = (
    ("train_loss", "Training loss", True),
    ("test_error", "Test error (%)", False),
    ("grad_norm", "Full-gradient norm", True),
)
MAX_METRICS_BYTES = 50 * 2**20  # a metrics.csv is kilobytes; anything this large is not one
BANDS = ("minmax", "std")


def curve_frame(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Long table (optimizer, schedule, seed, epoch, metrics...) of the completed runs' metrics.csv files.

    Returns the table and one line per metrics.csv that could not be read
    (the curves are drawn from the rest). Runs without a metrics.csv are
    skipped silently: older records and copied results often lack one.
    """
    frames, problems = [], []
    wanted = ["epoch"] + [column for column, _, _ in PANELS]
    for opt, sched, seed, run_dir in completed(runs)[["optimizer", "schedule", "seed", "run_dir"]].itertuples(
        index=False, name=None
    ):
        path = Path(run_dir) / METRICS_FILE
        try:
            if path.stat().st_size > MAX_METRICS_BYTES:
                problems.append(f"{path}: larger than {MAX_METRICS_BYTES >> 20} MB, not a metrics file")
                continue
            frame = pd.read_csv(path, usecols=lambda c: c in wanted)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
            problems.append(f"{path}: {one_line(exc)}")
            continue
        if "epoch" not in frame.columns or frame.empty:
            problems.append(f"{path}: no epochs")
            continue
        frame = frame.apply(pd.to_numeric, errors="coerce")
        frames.append(frame.assign(optimizer=opt, schedule=sched, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["optimizer", "schedule", "seed", *wanted]), problems
    return pd.concat(frames, ignore_index=True).reindex(columns=["optimizer", "schedule", "seed", *wanted]), problems


def _aggregate(values: pd.DataFrame, column: str, band: str) -> pd.DataFrame:
    """Per epoch: mean, band low and high, over the seeds that have a value."""
    grouped = values[["epoch", column]].dropna().groupby("epoch")[column]
    out = grouped.agg(["mean", "min", "max", "std", "count"]).reset_index()
    if band == "std":
        spread = out["std"].fillna(0.0)
        out["low"], out["high"] = out["mean"] - spread, out["mean"] + spread
    else:
        out["low"], out["high"] = out["min"], out["max"]
    return out


def plot_grid_curves(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    band: str = "minmax",
    frame: pd.DataFrame | None = None,
) -> Figure:
    """One figure overlaying every cell of a table: a panel per metric, a line per cell, a band over seeds.

    `frame` is `curve_frame` of the table's runs when the caller already read
    it. Raises `ValueError` when no run of the table has a readable
    metrics.csv, or for an unknown `band`.
    """
    if band not in BANDS:
        raise ValueError(f"band {band!r}: choose one of {', '.join(BANDS)}")
    selection = select_runs(runs, dataset, model, experiment, variant)
    if frame is None:
        frame, _ = curve_frame(selection.runs)
    panels = [(c, title, log) for c, title, log in PANELS if c in frame.columns and frame[c].notna().any()]
    if frame.empty or not panels:
        raise ValueError(f"no run of {selection.title()} has a readable {METRICS_FILE}")
    cells = [
        c
        for c in cell_order(set(zip(frame["optimizer"], frame["schedule"])))
        if c in set(zip(frame["optimizer"], frame["schedule"]))
    ]
    seeds = frame.groupby(["optimizer", "schedule"])["seed"].nunique()
    figure = new_figure(4.0 * len(panels) + 1.6, 3.5)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (column, title, log) in zip(axes, panels):
        positive = True
        for cell in cells:
            part = frame[(frame["optimizer"] == cell[0]) & (frame["schedule"] == cell[1])]
            stats = _aggregate(part, column, band)
            if stats.empty:
                continue
            style = cell_style(*cell)
            ax.plot(stats["epoch"], stats["mean"], linewidth=1.3, **style)
            if seeds[cell] > 1:
                ax.fill_between(
                    stats["epoch"], stats["low"], stats["high"], color=style["color"], alpha=0.15, linewidth=0
                )
            positive = positive and bool((stats["low"] > 0).all())
        if log and positive:
            ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    optimizers = optimizer_order(c[0] for c in cells)
    schedules = schedule_order(c[1] for c in cells)
    style_legend(figure, optimizers, schedules)
    counts = sorted(set(seeds.tolist()))
    spread = {"minmax": "band: min to max", "std": "band: ± sample std"}[band]
    over = f"{counts[0]} seed{'s' if counts[0] > 1 else ''}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    detail = f"mean over {over}, {spread}" if max(counts) > 1 else "one seed"
    figure.suptitle(f"{selection.title()}: training curves ({detail})", fontsize="medium")
    return figure
