"""Benchmark: one grid cell trained by two revisions of this repository, interleaved, same config.

A refactor of the training core must leave both the speed and the numbers as they
were. This trains the same cell (`--overrides`, given to `launch.py` of each
revision) with the code of `--baseline` (a git revision, exported into a temporary
folder) and of `--candidate` (a revision, or `.` for the working tree), in
alternating order for `--rounds` rounds, each run a fresh process. It reports the
median epoch time of each revision (epochs 2.. of `metrics.csv`, so imports and
the first epoch's warm-up are left out), their ratio measured in this one run, and
whether the two revisions' metrics and sharpness are equal.

    .venv/bin/python bench/bench_revisions.py --baseline 5eb90a5 --rounds 3

The default cell uses only keys that both the first-round code and today's know:
GSAM with increasing batch sizes on digits, 5 epochs, one CPU thread.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OVERRIDES = (
    "dataset=digits model=resnet18 model.width=16 optimizer=gsam schedule=batch train.epochs=5 "
    "train.batch_size=64 train.eval_batch_size=359 train.grad_norm_examples=256 "
    "device=cpu cpu_threads=1 seed=0"
)
# Per-epoch columns that two revisions must reproduce exactly (wall time is the measured one).
COMPARED = ("train_loss", "train_error", "test_loss", "test_error", "grad_norm")


def export_revision(revision: str, into: Path) -> Path:
    """The tracked files of `revision` in `into` (`.`: this checkout itself)."""
    if revision == ".":
        return ROOT
    into.mkdir(parents=True)
    archive = into.with_suffix(".tar")
    exported = subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), revision], capture_output=True)
    if exported.returncode != 0:
        raise SystemExit(f"error: revision {revision!r} is not a commit of this repository (try a hash from git log)")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def train_cell(tree: Path, overrides: list[str], results: Path) -> tuple[list[dict], dict]:
    """Train the cell with the code in `tree`; its metrics rows and its result.json."""
    env = dict(os.environ, PYTHONPATH=str(tree), SAM_RESULTS_ROOT=str(results))
    cmd = [sys.executable, "launch.py", *overrides, "experiment_name=bench", "hydra.run.dir=" + str(results / "hydra")]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: launch.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    [metrics] = list(results.rglob("metrics.csv"))
    with metrics.open() as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((metrics.parent / "result.json").read_text())


def epoch_times(rows: list[dict]) -> list[float]:
    """Seconds per epoch from the cumulative wall time, the first epoch left out."""
    wall = [float(row["wall_time_s"]) for row in rows]
    return [later - earlier for earlier, later in zip(wall, wall[1:], strict=False)]


def compared(rows: list[dict]) -> list[dict]:
    return [{key: row.get(key) for key in COMPARED} for row in rows]


def sharpness_values(result: dict) -> dict:
    return {name: entry.get("value") for name, entry in (result.get("sharpness") or {}).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision of the reference code")
    parser.add_argument("--candidate", default=".", help="git revision, or . for the working tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--overrides", default=DEFAULT_OVERRIDES)
    args = parser.parse_args()
    overrides = args.overrides.split()

    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as tmp:
        trees = {
            "baseline": export_revision(args.baseline, Path(tmp) / "baseline"),
            "candidate": export_revision(args.candidate, Path(tmp) / "candidate"),
        }
        times: dict[str, list[float]] = {name: [] for name in trees}
        outputs: dict[str, list[tuple[list[dict], dict]]] = {name: [] for name in trees}
        started = time.time()
        for round_index in range(args.rounds):
            order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
            for name in order:
                rows, result = train_cell(trees[name], overrides, Path(tmp) / f"results-{name}-{round_index}")
                times[name].extend(epoch_times(rows))
                outputs[name].append((rows, result))
                seconds = statistics.median(epoch_times(rows))
                print(f"round {round_index + 1} {name}: {seconds:.3f} s/epoch", file=sys.stderr)

    median = {name: statistics.median(values) for name, values in times.items()}
    runs = outputs["baseline"] + outputs["candidate"]
    base_rows, base_result = runs[0]
    same_metrics = all(compared(rows) == compared(base_rows) for rows, _ in runs)
    same_sharpness = all(sharpness_values(result) == sharpness_values(base_result) for _, result in runs)
    print(f"cell: {args.overrides}")
    print(f"rounds: {args.rounds} per revision, alternating; {time.time() - started:.0f} s in all")
    print("| revision | median s/epoch (epochs 2..) |")
    print("|---|---|")
    print(f"| baseline {args.baseline} | {median['baseline']:.3f} |")
    print(f"| candidate {args.candidate} | {median['candidate']:.3f} |")
    print(f"candidate / baseline epoch time: {median['candidate'] / median['baseline']:.3f}")
    print(f"per-epoch metrics identical in every run: {same_metrics}")
    print(f"sharpness identical in every run: {same_sharpness} {sharpness_values(base_result)}")


if __name__ == "__main__":
    main()
