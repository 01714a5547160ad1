"""Benchmark: a sweep's start, from the command to the last cell planned, with one planning process or several.

    .venv/bin/python bench/bench_sweep_plan.py [--rounds 3] [overrides ...]

Before launching anything, the sweeper composes every cell with Hydra,
validates it and works out its folder: about a second a cell on a slow CPU, in
Python, so a 2-core machine used one core for it. The cells are independent,
and `hydra.sweeper.plan_processes=auto` examines them in one forked process per
core. This times the demo's 18 cells (or the sweep the overrides name) planned
with `plan_processes=1` and `auto`, interleaved, in fresh processes. So that
nothing trains, the pool is given `n_jobs=0`, which the sweep refuses after
every cell has been planned: the time is the launch's start and its planning.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_start(overrides: list[str], processes: str, results: str) -> float:
    """Wall seconds from `launch.py -m` to its refusal after planning."""
    command = [
        sys.executable,
        "launch.py",
        "-m",
        *overrides,
        f"hydra.sweeper.plan_processes={processes}",
        "hydra/launcher=pool",
        "hydra.launcher.n_jobs=0",
        f"results_root={results}",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if "hydra.launcher.n_jobs=0" not in done.stderr:
        raise SystemExit(f"the launch did not stop where expected:\n{done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", default=["experiment=demo"])
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"1": [], "auto": []}
    with tempfile.TemporaryDirectory() as results:
        for _ in range(args.rounds):
            for processes in walls:
                walls[processes].append(timed_start(args.overrides, processes, results))
    one, auto = statistics.median(walls["1"]), statistics.median(walls["auto"])
    print(f"sweep: {' '.join(args.overrides)}; {args.rounds} rounds, interleaved")
    print(f"plan_processes=1     {one:6.1f} s (median of {', '.join(f'{w:.1f}' for w in walls['1'])})")
    print(f"plan_processes=auto  {auto:6.1f} s (median of {', '.join(f'{w:.1f}' for w in walls['auto'])})")
    print(f"auto / 1: {auto / one:.2f}x")


if __name__ == "__main__":
    main()
