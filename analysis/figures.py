"""Figures: grouped bars per table (with the seed spread) and training curves per run.

Drawn on matplotlib's Agg canvas through the object API (`Figure`, never
`pyplot`), so nothing here needs a display, touches the global backend of a
notebook that imports it, or leaks figures when thousands of runs are drawn.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .load import completed
from .names import OPTIMIZERS, cell_label, optimizer_order, schedule_order
from .stats import TEST_ERROR, choose_measure, measures_in, metric_column, select_runs

FORMATS = ("png", "pdf")
_SCHEDULE_NAMES = {"constant": "constant", "batch": "+ B (batch)", "cosine": "+ C (cosine)", "linear": "+ L (linear)"}
# Curves panels: title, metrics.csv columns drawn in it.
CURVE_PANELS = (
    ("Loss", ("train_loss", "test_loss")),
    ("Error (%)", ("train_error", "test_error")),
    ("Learning rate", ("lr",)),
    ("Batch size", ("batch_size",)),
    ("Rho", ("rho",)),
    ("Gradient norm", ("grad_norm",)),
)


# Overlays of grid cells: colour = optimizer, line style = schedule, the same in every figure.
_SCHEDULE_LINESTYLES = {"constant": "-", "batch": "--", "cosine": ":", "linear": "-."}


# Dash patterns for schedules the paper does not have (a user's own), picked by name.
_OTHER_LINESTYLES = ((0, (3, 1, 1, 1, 1, 1)), (0, (5, 2)), (0, (1, 2)), (0, (6, 1, 1, 1)), (0, (2, 1, 2, 3)))


def _by_name(name: str, choices: int) -> int:
    """A stable choice for a name (the same in every figure and process, unlike `hash`)."""
    return zlib.crc32(name.encode("utf-8")) % choices


def cell_style(optimizer: str, schedule: str) -> dict[str, object]:
    """Matplotlib colour and line style of a grid cell; other names get their own, chosen by name."""
    if optimizer in OPTIMIZERS:
        index = OPTIMIZERS.index(optimizer)
    else:  # the colours after the paper's three (C3..C9)
        index = len(OPTIMIZERS) + _by_name(optimizer, 10 - len(OPTIMIZERS))
    style = _SCHEDULE_LINESTYLES.get(schedule) or _OTHER_LINESTYLES[_by_name(schedule, len(_OTHER_LINESTYLES))]
    return {"color": f"C{index}", "linestyle": style}


def style_legend(figure: Figure, optimizers: list[str], schedules: list[str], extra: tuple = ()) -> None:
    """One legend for an overlay: a colour per optimizer, then a line style per schedule, then `extra` handles."""
    handles = [
        Line2D([], [], color=cell_style(o, "constant")["color"], label=cell_label(o, "constant")) for o in optimizers
    ]
    handles += [
        Line2D([], [], color="black", linestyle=cell_style("sgd", s)["linestyle"], label=_SCHEDULE_NAMES.get(s, s))
        for s in schedules
    ]
    handles += list(extra)
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure on its own Agg canvas (no pyplot state)."""
    return _new_figure(width, height, layout)


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    # Constrained layout costs half the drawing time; per-run curves, drawn by
    # the hundred, use fixed margins instead.
    figure = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, stem: str | os.PathLike, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Write `stem.png`, `stem.pdf` (creating folders); returns the paths written."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [Path(f"{stem}.{fmt}") for fmt in formats]
    for path in paths:
        figure.savefig(path, dpi=150)
    return paths


def plot_table(
    runs: pd.DataFrame,
    dataset: str,
    model: str,
    *,
    experiment: str | None = None,
    variant: str | None = None,
    sharpness: str | None = None,
) -> Figure:
    """Grouped bars of test error and sharpness per cell: groups are schedules, bars optimizers.

    Bar = mean over seeds, whisker = sample std, dots = the individual seeds,
    so the spread behind each mean is visible. Sharpness goes on a log axis
    when its values span more than 50x (the paper's span 1 to 3000).
    """
    selection = select_runs(runs, dataset, model, experiment, variant)
    done = completed(selection.runs)
    measure = choose_measure(measures_in(selection.runs), sharpness)
    panels = [("Test error (%)", TEST_ERROR)]
    if measure and metric_column(measure) in done.columns:
        panels.append((f"Sharpness ({measure})", metric_column(measure)))
    schedules = schedule_order(done["schedule"])
    optimizers = optimizer_order(done["optimizer"])
    figure = _new_figure(4.0 * len(panels) + 1.0, 3.6)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    width = 0.8 / max(len(optimizers), 1)
    colors = {opt: cell_style(opt, "constant")["color"] for opt in optimizers}  # as in the curves and sweep views
    for ax, (ylabel, column) in zip(axes, panels):
        means, labelled = [], set()
        for i, opt in enumerate(optimizers):
            for g, sched in enumerate(schedules):
                values = done.loc[(done["optimizer"] == opt) & (done["schedule"] == sched), column].dropna().to_numpy()
                if values.size == 0:
                    continue
                x = g + (i - (len(optimizers) - 1) / 2) * width
                mean = float(values.mean())
                std = float(values.std(ddof=1)) if values.size > 1 else 0.0
                means.append(mean)
                label = cell_label(opt, "constant") if opt not in labelled else None
                labelled.add(opt)
                ax.bar(x, mean, width * 0.9, color=colors[opt], yerr=std, capsize=3, ecolor="dimgray", label=label)
                ax.plot(np.full(values.size, x), values, "o", color="black", markersize=2.5, zorder=3)
        positive = [m for m in means if m > 0]
        if ylabel.startswith("Sharpness") and positive and max(positive) / min(positive) > 50:
            ax.set_yscale("log")
        ax.set_xticks(range(len(schedules)), [_SCHEDULE_NAMES.get(s, s) for s in schedules])
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:  # beside the axes, where it hides no bar
        figure.legend(unique.values(), unique.keys(), loc="outside right upper", fontsize="small")
    figure.suptitle(selection.title())
    return figure


def read_metrics(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's `metrics.csv`; raises `FileNotFoundError` or `ValueError` when there is nothing to draw."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics.csv in {run_dir}")
    frame = pd.read_csv(path)
    if frame.empty or "epoch" not in frame.columns:
        raise ValueError(f"{path} has no epochs")
    return frame


def plot_curves(run_dir: str | os.PathLike, *, title: str | None = None) -> Figure:
    """Training curves of one run from its `metrics.csv`: loss, error, lr, batch size, rho vs. epoch.

    Panels whose columns are absent or empty are left out (grad_norm is
    empty unless enabled). Dotted lines mark where a schedule stage begins.
    """
    frame = read_metrics(run_dir)
    panels = [(name, [c for c in cols if c in frame.columns and frame[c].notna().any()]) for name, cols in CURVE_PANELS]
    panels = [(name, cols) for name, cols in panels if cols]
    ncols = min(3, len(panels)) or 1
    nrows = max(1, math.ceil(len(panels) / ncols))
    figure = _new_figure(4.0 * ncols, 2.8 * nrows + 0.4, layout=None)
    figure.subplots_adjust(left=0.07, right=0.98, bottom=0.09, top=0.88, wspace=0.28, hspace=0.55)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    stage_starts = []
    if "stage" in frame.columns:
        changed = frame["stage"].ne(frame["stage"].shift()) & frame.index.to_series().gt(0)
        stage_starts = frame.loc[changed, "epoch"].tolist()
    for ax, (name, cols) in zip(axes, panels):
        for col in cols:
            ax.plot(frame["epoch"], frame[col], marker="." if len(frame) < 30 else None, label=col.replace("_", " "))
        for epoch in stage_starts:
            ax.axvline(epoch - 0.5, color="gray", linestyle=":", linewidth=0.8)
        ax.set_title(name, fontsize="medium")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    figure.suptitle(title or str(run_dir), fontsize="medium")
    return figure
