"""Benchmark: what validating a base optimizer costs a launch, and what a refused launch costs in all.

    .venv/bin/python bench/bench_launch_start.py [--repeats 3]

Every launch checks `optimizer.base` by building it, so that torch's own
argument checks name a bad setting before any cell starts. Built on one
parameter, the build adds a parameter group, and that imports torch._dynamo
(the first call of any function torch wraps to keep dynamo out of it). Built
on no parameters, torch's optimizers check their settings and then refuse the
empty list, and nothing more is imported. This times, in fresh processes and
interleaved, the two builds after `import torch` (the difference is what the
change saves every launch that does not train, such as the sweeping process
of a pool or SLURM sweep, or a command refused by validation), and one whole
`launch.py` refused by validation, for scale. It prints the median wall and
CPU seconds of each, and the ratio of the two builds.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD = "import torch; torch.optim.SGD({params}, lr=0.1, momentum=0.0, weight_decay=0.0)"
COMMANDS = {
    "import torch, build on one parameter": [
        sys.executable,
        "-c",
        BUILD.format(params="[torch.nn.Parameter(torch.zeros(1))]"),
    ],
    "import torch, build on no parameters": [
        sys.executable,
        "-c",
        "try:\n    " + BUILD.format(params="[]") + "\nexcept ValueError:\n    pass",
    ],
    "launch.py refused by validation": [sys.executable, "launch.py", "optimizer=sgd", "optimizer.rho=0.1"],
}


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of `command` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # interleaved, so a busier moment of the machine hits every command alike
        for name, command in COMMANDS.items():
            wall, cpu = timed(command)
            walls[name].append(wall)
            cpus[name].append(cpu)
    for name in COMMANDS:
        print(f"{name:40s} {statistics.median(walls[name]):6.2f} s wall  {statistics.median(cpus[name]):6.2f} CPU-s")
    one, none = (statistics.median(walls[name]) for name in list(COMMANDS)[:2])
    print(f"no parameters / one parameter: {none / one:.2f}x wall (saves {one - none:.2f} s a launch)")


if __name__ == "__main__":
    main()
