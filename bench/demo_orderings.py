"""The demo's seven sharpness orderings, one ratio per seed: the table docs/benchmarks.md keeps for every seed run.

    .venv/bin/python bench/demo_orderings.py results/demo [more folders ...]

Reads the records below each folder (as `python -m analysis` does) and prints, for
every seed found, lower / higher sharpness (worst_linf) of the seven pairs the demo
must order: + B below constant for SGD, SAM and GSAM, and SAM and GSAM below SGD at a
constant lr and with + C. A ratio below 1 holds; the last columns give the largest
ratio of each pair and in how many seeds it held. Exit status 1 when any pair fails
in any seed, so a script can check a fresh machine with it.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

import analysis
from analysis.claims import cell_values
from analysis.stats import metric_column

PAIRS = (
    (("sgd", "batch"), ("sgd", "constant"), "SGD + B < SGD"),
    (("sam", "batch"), ("sam", "constant"), "SAM + B < SAM"),
    (("gsam", "batch"), ("gsam", "constant"), "GSAM + B < GSAM"),
    (("sam", "constant"), ("sgd", "constant"), "SAM < SGD (constant lr)"),
    (("gsam", "constant"), ("sgd", "constant"), "GSAM < SGD (constant lr)"),
    (("sam", "cosine"), ("sgd", "cosine"), "SAM + C < SGD + C"),
    (("gsam", "cosine"), ("sgd", "cosine"), "GSAM + C < SGD + C"),
)


def ratios(runs: pd.DataFrame, measure: str = "worst_linf") -> dict[str, dict[int, float]]:
    """`{pair label: {seed: lower / higher}}` over the seeds where both cells completed."""
    values = cell_values(runs, metric_column(measure))
    found: dict[str, dict[int, float]] = {}
    for lower, higher, label in PAIRS:
        low, high = values.get(lower, {}), values.get(higher, {})
        found[label] = {int(seed): low[seed] / high[seed] for seed in sorted(low.keys() & high.keys())}
    return found


def markdown(found: dict[str, dict[int, float]]) -> str:
    seeds = sorted({seed for by_seed in found.values() for seed in by_seed})
    lines = [
        "| ordering (ratio lower / higher, below 1 holds) | "
        + " | ".join(f"seed {s}" for s in seeds)
        + " | largest | seeds holding |",
        "|---|" + "---:|" * len(seeds) + "---:|---:|",
    ]
    for _, _, label in PAIRS:
        by_seed = found[label]
        cells = [f"{by_seed[s]:.3f}" if s in by_seed else "-" for s in seeds]
        held = sum(r < 1 for r in by_seed.values())
        largest = f"{max(by_seed.values()):.3f}" if by_seed else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {largest} | {held}/{len(by_seed)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="results folders (a results root, a sweep folder)")
    parser.add_argument("--sharpness", default="worst_linf", help="the measure compared (default worst_linf)")
    args = parser.parse_args(argv)
    runs = pd.concat([analysis.load_runs(folder) for folder in args.folders], ignore_index=True)
    if runs.empty:
        print(f"error: no runs below {', '.join(args.folders)}", file=sys.stderr)
        return 2
    found = ratios(runs, args.sharpness)
    print(markdown(found))
    return 0 if all(r < 1 for by_seed in found.values() for r in by_seed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
