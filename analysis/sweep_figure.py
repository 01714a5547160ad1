"""The line figure of a sweep view: each grid column's test error and sharpness against the swept key.

One line per column (colour = optimizer, line style = schedule), a point per
value with the sample std over seeds as its error bar. A column that holds a
single value of the key (SGD in a rho sweep: its rho is 0) is not swept; it
is drawn as a horizontal line at its value, a reference for the others. The
x axis is numeric when every value is a number, logarithmic when they are
positive and span a factor of 10 or more (rho 0.01 to 0.1), and one slot
per value otherwise (batch-size ladders).
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .figures import cell_style, new_figure, style_legend
from .names import cell_label, cell_order, optimizer_order, schedule_order
from .sweeps import Sweep, _value_order, single_value_cells, sweep_stats


def _positions(stats, cells_swept) -> tuple[dict[str, float], list[str], bool]:
    """x of each value label, the labels to tick (those of swept columns), and whether x is logarithmic."""
    order = _value_order(stats)
    swept = stats[[(o, s) in cells_swept for o, s in zip(stats["optimizer"], stats["schedule"])]]
    numbers = dict(zip(stats["value"], stats["value_number"]))
    used = [v for v in order if v in set(swept["value"])] or order
    if all(not math.isnan(numbers[v]) for v in used):
        positive = [numbers[v] for v in used if numbers[v] > 0]
        log = len(positive) == len(used) and len(used) > 1 and max(positive) / min(positive) >= 10
        return {v: numbers[v] for v in order}, used, log
    return {v: float(i) for i, v in enumerate(order)}, order, False


def plot_sweep(sweep: Sweep, sharpness: str | None = None) -> Figure:
    """Test error and sharpness against the swept key, one line per grid column present."""
    stats = sweep_stats(sweep, sharpness)
    stats = stats[stats["n"] > 0]
    present = set(zip(stats["optimizer"], stats["schedule"]))
    cells = [c for c in cell_order(present) if c in present]
    fixed = set(single_value_cells(stats))
    swept = [c for c in cells if c not in fixed]
    x_of, ticks, log = _positions(stats, set(swept))
    metrics = [("test_error", "Test error (%)")]
    measure = next((m for m in stats["measure"] if m), None)
    if measure:
        metrics.append(("sharpness", f"Sharpness ({measure})"))
    figure = new_figure(4.2 * len(metrics) + 1.6, 3.6)
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, (metric, ylabel) in zip(axes, metrics):
        part = stats[stats["metric"] == metric]
        for opt, sched in cells:
            rows = part[(part["optimizer"] == opt) & (part["schedule"] == sched)]
            rows = rows.assign(x=rows["value"].map(x_of)).sort_values("x")
            style = cell_style(opt, sched)
            if (opt, sched) in fixed:
                label = f"{cell_label(opt, sched)} ({sweep.key} = {rows['value'].iloc[0]})"
                ax.axhline(rows["mean"].iloc[0], linewidth=1.0, alpha=0.6, label=label, **style)
                continue
            ax.errorbar(
                rows["x"],
                rows["mean"],
                yerr=np.nan_to_num(rows["std"].to_numpy(dtype=float)),
                marker="o",
                markersize=3.5,
                capsize=3,
                label=cell_label(opt, sched),
                **style,
            )
        if log:
            ax.set_xscale("log")
        ax.set_xticks([x_of[v] for v in ticks], ticks, fontsize="small")
        ax.minorticks_off()
        ax.set_xlabel(sweep.key)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    optimizers = optimizer_order(c[0] for c in cells)
    schedules = schedule_order(c[1] for c in cells)
    flat = Line2D([], [], color="gray", linewidth=1.0, alpha=0.6, label="flat, no markers:\none value only")
    style_legend(figure, optimizers, schedules, (flat,) if fixed else ())
    figure.suptitle(sweep.title(), fontsize="medium")
    return figure
