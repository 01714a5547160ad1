"""End to end: a small real multirun through launch.py, then its table built by the analysis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import analysis
from analysis.cli import main

REPO = Path(__file__).resolve().parents[1]
# Two cells (SGD, SAM) of one epoch on the synthetic data with a narrow network and a
# small sharpness measurement. Keys as in conf/ (`train.epochs`, `train.batch_size`);
# the sweep's experiment name is the config's default, whatever it is.
OVERRIDES = [
    "dataset=synthetic",
    "model.width=8",
    "optimizer=sgd,sam",
    "schedule=constant",
    "train.epochs=1",
    "train.batch_size=32",
    "sharpness.worst_linf.examples=64",
    "sharpness.worst_linf.batch_size=32",
    "device=cpu",
    "cpu_threads=1",
]


def test_multirun_then_table(tmp_path: Path, capsys) -> None:
    command = [sys.executable, "launch.py", "-m", *OVERRIDES, f"results_root={tmp_path}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    loaded = analysis.load_results(tmp_path)
    assert not [p for p in loaded.problems if p.kind not in ("failed", "diverged")], loaded.problems
    runs = loaded.runs
    assert set(runs["optimizer"]) == {"sgd", "sam"} and set(runs["schedule"]) == {"constant"}
    assert (runs["status"] == "completed").all(), runs[["run_dir", "status", "error"]]
    (key,) = analysis.table_keys(runs)
    experiment, dataset, model, variant = key  # the overrides above make a variant of the primary config
    assert dataset == "synthetic"
    table = analysis.paper_table(runs, dataset, model, experiment=experiment, variant=variant)
    row = table.frame().loc["Test Error (%)"]
    assert row["SGD"] != "-" and row["SAM"] != "-" and row["GSAM"] == "-"
    assert table.frame().loc["Sharpness", "SAM"] != "-"  # worst_linf was measured

    out = tmp_path / "analysis"
    assert main([str(tmp_path), "--out", str(out)]) == 0
    assert "| Test Error (%)" in capsys.readouterr().out
    assert (out / "tables.md").is_file() and (out / "figures").is_dir()
    curves = list((out / "figures" / "curves").rglob("*.png"))
    assert len(curves) == 2, curves  # one per run folder with metrics.csv
    overlays = list((out / "figures").glob("*-curves.png"))
    assert len(overlays) == 1, overlays  # the table's cells overlaid


@pytest.mark.slow
def test_rho_sweep_then_sweep_view(tmp_path: Path, capsys) -> None:
    """sam.rho=0.02,0.1 over SGD and SAM: two SAM variants, SGD once (its rho is 0), and the sweep view."""
    overrides = [o for o in OVERRIDES if not o.startswith("sharpness.")] + ["sharpness=none", "sam.rho=0.02,0.1"]
    command = [sys.executable, "launch.py", "-m", *overrides, f"results_root={tmp_path}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    runs = analysis.load_runs(tmp_path)
    assert (runs["status"] == "completed").all()
    sam = runs[runs["optimizer"] == "sam"]
    assert sorted(sam["config.optimizer.rho"]) == [0.02, 0.1] and sam["variant"].nunique() == 2
    assert len(runs[runs["optimizer"] == "sgd"]) == 1  # rho does not apply to SGD: one folder
    (sweep,) = analysis.find_sweeps(runs)
    assert sweep.key == "optimizer.rho"
    stats = analysis.sweep_stats(sweep)
    errors = stats[stats["metric"] == "test_error"].set_index(["cell", "value"])["mean"]
    for rho in ("0.02", "0.1"):
        expected = sam.loc[sam["config.optimizer.rho"] == float(rho), "test_error"].item()
        assert errors[("SAM", rho)] == expected
    assert ("SGD", "0") in errors.index

    out = tmp_path / "analysis"
    assert main([str(tmp_path), "--out", str(out), "--figures", "tables"]) == 0
    assert "sweep over optimizer.rho" in capsys.readouterr().out
    assert (out / "sweeps.csv").is_file()
    assert list((out / "figures").glob("*-sweep-optimizer.rho*.png"))
