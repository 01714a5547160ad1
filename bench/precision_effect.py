"""What bf16 autocast changes in the grid's numbers: each cell trained in float32 and in bf16, seed by seed.

    python launch.py -m experiment=demo seed=2,3,4
    python launch.py -m experiment=demo seed=2,3,4 precision=bf16 experiment_name=demo_bf16
    .venv/bin/python bench/precision_effect.py results/demo results/demo_bf16

Pairs the records of the two folders by cell (optimizer, schedule) and seed and prints,
per cell, the sharpness ratio bf16 / fp32 (geometric mean over seeds, and its range)
and the test error of each (mean over seeds, in points), then whether the seven
sharpness orderings the demo checks still hold in bf16. docs/paper.md keeps the table.
Seeds found in only one folder are left out.
"""

from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

import analysis
from analysis.claims import cell_values
from analysis.names import cell_label, cell_order
from analysis.stats import metric_column


def paired(
    fp32: pd.DataFrame, bf16: pd.DataFrame, column: str
) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """`{cell: {seed: (fp32 value, bf16 value)}}` for the seeds both folders completed."""
    ours, theirs = cell_values(fp32, column), cell_values(bf16, column)
    pairs: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    for cell in cell_order(ours.keys() & theirs.keys()):
        if cell not in ours or cell not in theirs:
            continue  # the order lists the whole grid
        seeds = sorted(ours[cell].keys() & theirs[cell].keys())
        if seeds:
            pairs[cell] = {int(s): (ours[cell][s], theirs[cell][s]) for s in seeds}
    return pairs


def markdown(sharpness: dict, errors: dict) -> str:
    lines = [
        "| cell | seeds | sharpness bf16 / fp32 (geo. mean) | range | test error fp32 (%) | test error bf16 (%) |",
        "|---|---:|---:|---|---:|---:|",
    ]
    for cell, by_seed in sharpness.items():
        ratios = [b / f for f, b in by_seed.values()]
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        err = errors.get(cell, {})
        fp32_err = sum(f for f, _ in err.values()) / len(err) if err else float("nan")
        bf16_err = sum(b for _, b in err.values()) / len(err) if err else float("nan")
        lines.append(
            f"| {cell_label(*cell)} | {len(by_seed)} | {geo:.3f} | {min(ratios):.3f}-{max(ratios):.3f} "
            f"| {fp32_err:.2f} | {bf16_err:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fp32", help="results folder of the float32 runs")
    parser.add_argument("bf16", help="results folder of the bf16 runs")
    parser.add_argument("--sharpness", default="worst_linf", help="the measure compared (default worst_linf)")
    args = parser.parse_args(argv)
    fp32, bf16 = analysis.load_runs(args.fp32), analysis.load_runs(args.bf16)
    if fp32.empty or bf16.empty:
        print(f"error: no runs below {args.fp32 if fp32.empty else args.bf16}", file=sys.stderr)
        return 2
    sharpness = paired(fp32, bf16, metric_column(args.sharpness))
    if not sharpness:
        print("error: no cell and seed completed in both folders", file=sys.stderr)
        return 2
    print(markdown(sharpness, paired(fp32, bf16, "test_error")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
