"""Benchmark: where the CPU-seconds of a demo cell go, for two revisions (or two configs), interleaved.

`make demo` trains 18 cells, each in its own single-threaded process on a 2-core
machine, so what bounds its wall time is the CPU-seconds the cells spend in all:
process start and imports, building the cell, the training steps of every
epoch, the test pass and the full-gradient norm after every epoch, and the final
sharpness measure. This measures each of those phases with `time.process_time`
in a fresh process per measurement, for the code of two revisions (`--baseline`,
a git revision exported to a temporary folder; `--candidate`, `.` for the
working tree) with their own `experiment=demo` preset, alternating which goes
first in every round. It prints the median CPU-seconds of each phase, the
per-round ratio candidate / baseline, and the demo's total projected from the
phases (every cell of the preset's grid and seeds at the preset's epochs).

    .venv/bin/python bench/bench_demo.py --baseline 1db886f --rounds 3

Each measurement trains its cell for `--epochs` epochs (default 5: one per stage
of + B), so per-epoch costs are measured at every batch size the demo uses, and
then runs the preset's sharpness measure once. CPU-seconds, not wall time: the
development machine is shared, and a process's CPU time moves far less with the
load than its wall time does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_revisions import export_revision  # bench/ is the script's folder, so first on sys.path

CELLS = ("sgd-constant", "sam-batch", "gsam-cosine")
PHASES = ("imports", "build", "train", "evaluate", "grad_norm", "sharpness", "record")


def worker(cell: str, epochs: int, overrides: list[str]) -> dict:
    """One cell of the demo preset in this process, phase by phase: CPU-seconds and the preset's sizes.

    Runs with the tree under test first on sys.path (the parent sets PYTHONPATH and the
    working directory), so the imports timed are that revision's.
    """
    started = time.process_time()
    import torch
    from hydra import compose, initialize_config_dir

    import runner  # noqa: F401  (registers the resolvers)
    from runner.remeasure.measures import measure_all
    from runner.training import records
    from runner.training.build import build_cell
    from runner.training.distributed import DistContext

    costs = {"imports": time.process_time() - started}
    optimizer, schedule = cell.split("-")
    with initialize_config_dir(config_dir=str(Path.cwd() / "conf"), version_base="1.3"):
        preset = compose("config", overrides=["experiment=demo", *overrides], return_hydra_config=True)
        cfg = compose(
            "config",
            overrides=["experiment=demo", f"optimizer={optimizer}", f"schedule={schedule}", f"train.epochs={epochs}"]
            + overrides,
        )
    tick = time.process_time()
    dist = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), is_main=True)
    built = build_cell(cfg, dist, "fp32")
    costs["build"] = time.process_time() - tick
    per_epoch: dict[str, list[float]] = {"train": [], "evaluate": [], "grad_norm": []}
    from runner.training.steps import EpochSums

    for epoch in range(built.schedule.epochs):
        tick = time.process_time()
        built.train(epoch, EpochSums.zeros(built.device))
        per_epoch["train"].append(time.process_time() - tick)
        tick = time.process_time()
        built.evaluate()
        per_epoch["evaluate"].append(time.process_time() - tick)
        tick = time.process_time()
        built.grad_norm()
        per_epoch["grad_norm"].append(time.process_time() - tick)
    tick = time.process_time()
    measure_all(built.model, cfg.dataset, cfg.sharpness, device=built.device, seed=int(cfg.seed))
    costs["sharpness"] = time.process_time() - tick
    tick = time.process_time()
    records.versions()
    records.git_commit()
    costs["record"] = time.process_time() - tick
    seeds = str(preset.hydra.sweeper.params.seed).split(",")
    return {
        "costs": costs,
        "per_epoch": per_epoch,
        "preset_epochs": int(preset.train.epochs),
        "preset_seeds": len(seeds),
        "process": time.process_time(),
    }


def measure(tree: Path, cell: str, epochs: int, overrides: list[str]) -> dict:
    """`worker` in a fresh interpreter running the code of `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", cell, "--epochs", str(epochs), "--", *overrides]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: the {cell} cell failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def projected_cell(result: dict, epochs: int) -> dict[str, float]:
    """A cell's phases at the preset's `epochs`: per-epoch costs spread evenly over the measured epochs.

    The measured epochs are one per stage of + B (the stages split the epochs equally),
    so the mean per-epoch cost times the preset's epochs is what the whole cell pays.
    """
    costs = dict(result["costs"])
    for phase, values in result["per_epoch"].items():
        costs[phase] = statistics.fmean(values) * epochs
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare against (default HEAD)")
    parser.add_argument("--candidate", default=".", help="git revision, or . for the working tree")
    parser.add_argument("--baseline-overrides", default="", help="overrides after experiment=demo, baseline")
    parser.add_argument("--candidate-overrides", default="", help="overrides after experiment=demo, candidate")
    parser.add_argument("--cells", default=",".join(CELLS), help="optimizer-schedule cells to measure")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs, args.overrides)))
        return
    cells = args.cells.split(",")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as scratch:
        trees = {
            "baseline": (export_revision(args.baseline, Path(scratch) / "baseline"), args.baseline_overrides.split()),
            "candidate": (
                export_revision(args.candidate, Path(scratch) / "candidate"),
                args.candidate_overrides.split(),
            ),
        }
        runs: dict[tuple[str, str], list[dict]] = {}
        for round_ in range(args.rounds):
            order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
            for cell in cells:
                for name in order:
                    tree, overrides = trees[name]
                    runs.setdefault((name, cell), []).append(measure(tree, cell, args.epochs, overrides))
                    print(f"round {round_ + 1} {cell} {name}: {_phases(runs[(name, cell)][-1])}", flush=True)
    report(runs, cells, args)


def _phases(result: dict) -> str:
    """One measurement as a line: CPU-seconds per phase (epochs summed) and the process's total."""
    costs = {**result["costs"], **{phase: sum(values) for phase, values in result["per_epoch"].items()}}
    return " ".join(f"{phase} {costs[phase]:.2f}" for phase in PHASES) + f" | process {result['process']:.1f} CPU-s"


def report(runs: dict[tuple[str, str], list[dict]], cells: list[str], args: argparse.Namespace) -> None:
    """Medians per phase (measured epochs, then projected to the preset) and candidate/baseline ratios."""
    print(f"\nCPU-seconds per phase, median of {args.rounds} rounds, {args.epochs} epochs measured per cell")
    print(
        f"baseline {args.baseline} {args.baseline_overrides}; candidate {args.candidate} {args.candidate_overrides}\n"
    )
    print("| cell | phase | baseline | candidate | candidate / baseline |")
    print("|---|---|---:|---:|---:|")
    for cell in cells:
        for phase in PHASES:
            base, cand = [], []
            for b, c in zip(runs[("baseline", cell)], runs[("candidate", cell)]):
                pick = (
                    (lambda r: sum(r["per_epoch"][phase]))
                    if phase in ("train", "evaluate", "grad_norm")
                    else (lambda r: r["costs"][phase])
                )
                base.append(pick(b))
                cand.append(pick(c))
            ratios = [c / b for b, c in zip(base, cand) if b > 0]
            print(
                f"| {cell} | {phase} | {statistics.median(base):.2f} | {statistics.median(cand):.2f} | "
                f"{statistics.median(ratios):.3f} |"
            )
    print("\nProjected demo (every cell of the grid, the preset's epochs and seeds), median of rounds:\n")
    print("| phase | baseline CPU-s | candidate CPU-s |")
    print("|---|---:|---:|")
    totals = {}
    for name in ("baseline", "candidate"):
        per_round = []
        for round_ in range(args.rounds):
            phases = {phase: 0.0 for phase in PHASES}
            for cell in cells:
                result = runs[(name, cell)][round_]
                # The measured cells stand for their optimizer's three cells (constant, + B, + C cost alike per epoch).
                weight = 3 * result["preset_seeds"] * 3 / len(cells)
                for phase, value in projected_cell(result, result["preset_epochs"]).items():
                    phases[phase] += weight * value
            per_round.append(phases)
        totals[name] = {phase: statistics.median(r[phase] for r in per_round) for phase in PHASES}
        first = runs[(name, cells[0])][0]
        totals[name]["label"] = f"{first['preset_epochs']} epochs x {first['preset_seeds']} seeds"
    for phase in PHASES:
        print(f"| {phase} | {totals['baseline'][phase]:.0f} | {totals['candidate'][phase]:.0f} |")
    base_sum = sum(totals["baseline"][p] for p in PHASES)
    cand_sum = sum(totals["candidate"][p] for p in PHASES)
    print(
        f"| total | {base_sum:.0f} ({totals['baseline']['label']}) | {cand_sum:.0f} ({totals['candidate']['label']}) |"
    )


if __name__ == "__main__":
    main()
