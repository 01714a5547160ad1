"""Benchmark: the analysis's figures drawn by one process against one forked process per core.

    .venv/bin/python bench/bench_figures.py <results folder> [--rounds 2]

On a finished demo the figures are most of `python -m analysis`'s time:
twenty figures, each laid out and written twice (PNG and PDF) by matplotlib.
They are independent, so `analysis.cli.write_figures` spreads them over one
forked process per available core. This builds the report once, then draws
every figure (`--figures all`, as `make demo` runs it) into a fresh temporary
folder with one worker and with the default, alternating which goes first,
and prints the median wall seconds of each and their ratio. Wall time is the
result here: the work is the same either way, only spread over the cores, so
run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.cli import write_figures  # noqa: E402
from analysis.figure_jobs import available_cores  # noqa: E402
from analysis.report import build_report  # noqa: E402


def draw_all(report, workers: int) -> tuple[float, int]:
    """Wall seconds to draw every figure with `workers` processes, and how many files were written."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        written, warnings = write_figures(report, Path(folder), "all", workers=workers)
        elapsed = time.perf_counter() - started
    if warnings:
        raise SystemExit(f"error: a figure failed: {warnings[0]}")
    return elapsed, len(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a results folder (e.g. results/demo)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    report = build_report(args.folder)
    cores = available_cores()
    counts = {"one process": 1, f"{cores} processes": cores}
    times: dict[str, list[float]] = {name: [] for name in counts}
    files = 0
    for round_ in range(args.rounds):
        order = list(counts) if round_ % 2 == 0 else list(reversed(counts))
        for name in order:
            elapsed, files = draw_all(report, counts[name])
            times[name].append(elapsed)
    print(f"{args.folder}: {files} figure files, {args.rounds} rounds, median wall seconds")
    base = statistics.median(times["one process"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:12s} {median:7.2f} s  ({median / base:.2f}x one process)")


if __name__ == "__main__":
    main()
