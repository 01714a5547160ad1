"""Benchmark: load and tabulate 10,000 result.json records (target: under 5 s on a CPU).

Writes the records itself into a temporary folder, laid out like a real sweep
(<experiment>/<dataset>-<model>/<optimizer>-<schedule>/seed=<k>/result.json,
each with a composed config of realistic size), then times what
`python -m analysis` does before drawing figures: find and parse every record
(`load_results`), build every table, comparison and claims check
(`build_report`), and render them to Markdown and LaTeX.

    .venv/bin/python bench/bench_analysis.py [--records 10000] [--repeats 3]

Exits with an error when the median is over the target.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import build_report, load_results, reported_results  # noqa: E402

TABLES = [tuple(k) for k in reported_results()[["dataset", "model"]].drop_duplicates().to_numpy()]
TARGET_S = 5.0  # the target: 10,000 records loaded and tabulated in under 5 s
CELLS = [(o, s) for s in ("constant", "batch", "cosine", "linear") for o in ("sgd", "sam", "gsam")]


def _config(dataset: str, model: str, optimizer: str, schedule: str, seed: int) -> dict:
    """A composed config about the size the runner stores (~2 KB of JSON)."""
    return {
        "dataset": {
            "name": dataset,
            "num_classes": 10,
            "image_size": 32,
            "channels": 3,
            "mean": [0.4914, 0.4822, 0.4465],
            "std": [0.247, 0.2435, 0.2616],
            "train_size": 50000,
            "root": "${data_dir}/" + dataset,
            "download": True,
            "loader": "device",
            "augment": "crop_flip",
        },
        "model": {"name": model, "num_classes": 10, "width": 64},
        "optimizer": {
            "name": optimizer,
            "lr": 0.1,
            "rho": 0.05 if optimizer != "sgd" else 0.0,
            "alpha": 0.02,
            "base": {"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.0, "weight_decay": 0.0},
        },
        "schedule": {
            "name": schedule,
            "epochs": 200,
            "lr_policy": schedule,
            "min_lr_ratio": 0.01,
            "warmup_epochs": 0,
            "rho_follows_lr": True,
            "stages": [{"batch_size": b, "epochs": 40} for b in (16, 32, 64, 128, 256)],
        },
        "sharpness": {
            "worst_linf": {
                "rho": 0.0002,
                "iterations": 20,
                "restarts": 1,
                "examples": 1024,
                "batch_size": 128,
                "adaptive": False,
                "random_init": False,
            }
        },
        "experiment": f"paper/{dataset}_{model}",
        "seed": seed,
        "results_root": "results",
        "data_dir": "data",
        "device": "auto",
        "precision": "bf16",
        "channels_last": True,
        "compile": False,
        "force": False,
        "grad_norm_examples": 0,
    }


def write_records(root: Path, count: int, *, seed: int = 0) -> int:
    """Write `count` records (about 1% failed, a few corrupt) below `root`; returns how many."""
    rng = random.Random(seed)
    written = 0
    for k in itertools.count():
        for dataset, model in TABLES:
            for optimizer, schedule in CELLS:
                if written == count:
                    return written
                experiment = f"paper/{dataset}_{model}"
                run_dir = root / experiment / f"{dataset}-{model}" / f"{optimizer}-{schedule}" / f"seed={k}"
                run_dir.mkdir(parents=True, exist_ok=True)
                status = "failed" if rng.random() < 0.01 else "completed"
                ok = status == "completed"
                record = {
                    "schema_version": 1,
                    "status": status,
                    "experiment": experiment,
                    "dataset": dataset,
                    "model": model,
                    "optimizer": optimizer,
                    "schedule": schedule,
                    "seed": k,
                    "test_error": rng.uniform(5, 40) if ok else None,
                    "test_loss": rng.uniform(0.1, 2) if ok else None,
                    "train_error": rng.uniform(0, 1) if ok else None,
                    "train_loss": rng.uniform(0, 0.1) if ok else None,
                    "sharpness": {
                        "worst_linf": {"value": rng.uniform(1, 3000), "error_increase": 0.3, "rho": 0.0002},
                        "avg_l2": {"value": rng.uniform(0, 1), "rho": 0.1},
                    }
                    if ok
                    else None,
                    "epochs": 200,
                    "steps": 78000,
                    "wall_time_s": rng.uniform(1000, 9000),
                    "precision": "bf16",
                    "config": _config(dataset, model, optimizer, schedule, k),
                    "versions": {"torch": "2.14.1", "python": "3.11.2"},
                    "git_commit": "abc123",
                    "error": None if ok else "RuntimeError: CUDA out of memory",
                    "diverged_at_step": None,
                }
                text = json.dumps(record, indent=2)
                if written % 2500 == 7:
                    text = text[: len(text) // 2]  # a half-written record
                (run_dir / "result.json").write_text(text)
                written += 1
    return written


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return names[0] if names else platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_analysis_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        write_records(root, args.records)
        print(f"wrote {args.records} records in {time.perf_counter() - t0:.1f} s")
        timings = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            loaded = load_results(root)
            t_load = time.perf_counter() - t0
            report = build_report(loaded)
            report.markdown(), report.latex()
            total = time.perf_counter() - t0
            timings.append((t_load, total))
            print(
                f"load {t_load:.2f} s, load + tables + render {total:.2f} s "
                f"({len(loaded.runs)} runs, {len(loaded.problems)} left out, {len(report.sections)} tables)"
            )
    median = statistics.median(t for _, t in timings)
    print(
        f"median of {args.repeats}: load {statistics.median(t for t, _ in timings):.2f} s, "
        f"load + tabulate {median:.2f} s (target < {TARGET_S:.0f} s) on {_cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, pandas {pd.__version__}"
    )
    if median >= TARGET_S:
        sys.exit(f"slower than the target of {TARGET_S} s")


if __name__ == "__main__":
    main()
