"""Benchmark: what one poll of a sweep's live view costs the launching process, in CPU-seconds.

    .venv/bin/python bench/bench_live_poll.py <sweep folder> [--polls 20]

While the cells of a local or pool sweep train, the process that launched them
redraws its view every two seconds from the files the cells write. On a 2-core
machine every CPU-second it takes is one the cells do not get, so a poll must
cost a small fraction of its interval. This times `runner.sweep.status.collect`
on a real sweep folder three ways, interleaved: as the view runs now (each
config.yaml parsed once by libyaml and kept while the file is unchanged), with
the cache emptied before each poll (libyaml on every file), and as it ran
before (PyYAML's pure-Python parser on every running cell's config.yaml at
every poll). It prints the median CPU-seconds per poll and its share of the
two-second interval.
"""

from __future__ import annotations

import argparse
import statistics
import time

import yaml

from runner.sweep import status as st


def one_poll(sweep: str, mode: str) -> float:
    """CPU-seconds of one `collect`, in `mode` (cached, libyaml or python)."""
    if mode != "cached":
        st._CONFIGS.clear()
    st.safe_load_yaml = yaml.safe_load if mode == "python" else PARSE  # type: ignore[assignment]
    started = time.process_time()
    st.collect(sweep)
    return time.process_time() - started


PARSE = st.safe_load_yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="a sweep folder (the one holding sweep_plan.json)")
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--every", type=float, default=2.0, help="the view's interval, seconds")
    args = parser.parse_args()
    modes = ("cached", "libyaml", "python")
    one_poll(args.sweep, "cached")  # warm: imports, the first parse
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(args.polls):
        for mode in modes:
            times[mode].append(one_poll(args.sweep, mode))
    cells = len(st.collect(args.sweep)["cells"])
    print(f"{args.sweep}: {cells} cells, {args.polls} polls of each, median CPU-seconds per poll")
    base = statistics.median(times["python"])
    for mode in modes:
        median = statistics.median(times[mode])
        print(
            f"  {mode:8s} {median * 1000:8.1f} ms  {100 * median / args.every:5.1f} % of a core at one poll "
            f"per {args.every:g} s  ({median / base:.3f}x python)"
        )


if __name__ == "__main__":
    main()
