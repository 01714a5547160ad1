"""The runner end to end through `launch.py`, in subprocesses, as users run it."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FAST, REPO, launch

GRID = ["optimizer=sgd,sam,gsam", "schedule=constant,batch,cosine"]
COMPARED = ("test_error", "test_loss", "train_error", "train_loss", "sharpness", "steps", "epochs")


def records(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def outcome(record: dict) -> dict:
    """What a run computed, without the timings that differ between two equal runs."""
    kept = {key: record[key] for key in COMPARED}
    kept["sharpness"] = {
        name: {k: v for k, v in entry.items() if k != "wall_time_s"} for name, entry in record["sharpness"].items()
    }
    return kept


def test_multirun_of_the_nine_cell_grid(results_root):
    result = launch(["-m", *FAST, *GRID, f"results_root={results_root}", "experiment_name=grid"], check=True)
    found = records(results_root)
    assert len(found) == 9, result.stdout + result.stderr
    cells = {(r["optimizer"], r["schedule"]) for r in found.values()}
    assert cells == {(o, s) for o in ("sgd", "sam", "gsam") for s in ("constant", "batch", "cosine")}
    for folder, record in found.items():
        assert record["status"] == "completed", record.get("error")
        assert folder == results_root / "grid" / "synthetic-resnet18" / f"{record['optimizer']}-{record['schedule']}" / "seed=0"
        assert 0.0 <= record["test_error"] <= 100.0
        assert record["sharpness"]["worst_linf"]["value"] >= 0.0
        assert record["config"]["optimizer"]["name"] == record["optimizer"]
        assert (folder / "model.pt").exists() and (folder / "metrics.csv").exists() and (folder / "config.yaml").exists()
        assert not (folder / "checkpoint.pt").exists()
    # The increasing-batch cell changed its batch size between stages, and metrics.csv shows it.
    with open(results_root / "grid" / "synthetic-resnet18" / "sam-batch" / "seed=0" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["batch_size"]) for r in rows] == [32, 64]
    assert [int(r["stage"]) for r in rows] == [0, 1]

    # Rerunning the finished sweep trains nothing and leaves every record as it was.
    before = {p: (p / "result.json").stat().st_mtime_ns for p in found}
    again = launch(["-m", *FAST, *GRID, f"results_root={results_root}", "experiment_name=grid"], check=True)
    assert {p: (p / "result.json").stat().st_mtime_ns for p in found} == before
    logs = "".join((p / "run.log").read_text() for p in found)
    assert logs.count("nothing to do") == 9, again.stdout + again.stderr


def test_same_seed_same_result(results_root):
    args = [*FAST, "optimizer=gsam", "schedule=batch"]
    launch([*args, f"results_root={results_root / 'a'}"], check=True)
    launch([*args, f"results_root={results_root / 'b'}"], check=True)
    (a,), (b,) = records(results_root / "a").values(), records(results_root / "b").values()
    assert outcome(a) == outcome(b)


def test_resume_after_sigkill_mid_epoch_equals_uninterrupted(results_root):
    # Long enough epochs that the kill lands inside one.
    args = [*FAST, "optimizer=sam", "schedule=batch", "dataset.train_size=2048", "model.width=16",
            "train.epochs=4", "train.increasing_batch_sizes=[16,32]"]
    reference_root, killed_root = results_root / "reference", results_root / "killed"
    launch([*args, f"results_root={reference_root}"], check=True)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(REPO / "launch.py"), *args, f"results_root={killed_root}"],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed_root / "adhoc" / "synthetic-resnet18" / "sam-batch" / "seed=0" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists(), "the run ended before its first checkpoint"
    assert not (checkpoint.parent / "result.json").exists(), "the kill came too late to test a resume"

    resumed = launch([*args, f"results_root={killed_root}"], check=True)
    (reference,), (after_kill,) = records(reference_root).values(), records(killed_root).values()
    assert outcome(reference) == outcome(after_kill)
    assert "resuming" in (checkpoint.parent / "run.log").read_text(), resumed.stderr
    with open(checkpoint.parent / "metrics.csv") as handle:
        assert [int(r["epoch"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4]


def test_a_changed_config_does_not_reuse_a_finished_cell(results_root):
    launch([*FAST, "optimizer=sam", f"results_root={results_root}"], check=True)
    result = launch([*FAST, "optimizer=sam", "optimizer.rho=0.1", f"results_root={results_root}"])
    assert result.returncode != 0
    assert "different config" in result.stderr and "optimizer.rho: 0.05 -> 0.1" in result.stderr
    (record,) = records(results_root).values()
    assert record["config"]["optimizer"]["rho"] == 0.05
    forced = launch([*FAST, "optimizer=sam", "optimizer.rho=0.1", "force=true", f"results_root={results_root}"],
                    check=True)
    (record,) = records(results_root).values()
    assert record["config"]["optimizer"]["rho"] == 0.1, forced.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lr=-0.1", "optimizer.lr=-0.1 must be a positive number"),
        ("optimizer.lr=0", "optimizer.lr=0 must be a positive number"),
        ("train.epochs=0", "train.epochs=0 must be a positive integer"),
        ("schedule.stages=[{batch_size:0,epochs:2}]", "schedule.stages[0].batch_size=0 must be a positive integer"),
        ("train.batch_size=1000", "batch_size=1000 is larger than the training set of synthetic (256 examples)"),
        ("optimizer=sam optimizer.rho=-0.05", "optimizer.rho=-0.05 must be a finite number >= 0"),
        ("optimizer=gsam optimizer.alpha=-1", "optimizer.alpha=-1 must be a finite number >= 0"),
        ("schedule.stages=[{batch_size:32,epochs:5}]", "schedule.stages epochs add up to 5, but train.epochs=2"),
        ("dataset=cifar10 dataset.download=false data_dir=/nonexistent/data", "/nonexistent/data"),
        ("precision=fp8", "precision='fp8' must be one of"),
        ("sharpness.worst_linf.rho=-1", "sharpness.worst_linf.rho=-1: must be a finite number >= 0"),
    ],
)
def test_bad_values_exit_with_one_line_and_write_nothing(results_root, override, message):
    result = launch([*FAST, *override.split(), f"results_root={results_root}"])
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not list(results_root.rglob("result.json")) and not list(results_root.rglob("checkpoint.pt"))


def test_unknown_option_names_list_the_valid_ones(results_root):
    result = launch([*FAST, "optimizer=adam", f"results_root={results_root}"])
    assert result.returncode != 0
    assert "sgd" in result.stderr and "gsam" in result.stderr
    assert not list(results_root.rglob("result.json"))


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(results_root):
    # data_dir pointing at a file makes... simplest real failure: a model that cannot take the input.
    result = launch(["-m", *FAST, "optimizer=sgd,sam", f"results_root={results_root}",
                     "model.width=8", "+model.blocks_boom=1"])
    found = records(results_root)
    assert len(found) == 2, result.stderr
    assert {r["status"] for r in found.values()} == {"failed"}
    assert all("blocks_boom" in r["error"] for r in found.values())


def test_a_diverging_cell_is_recorded_as_diverged(results_root):
    launch([*FAST, "optimizer.lr=1e30", f"results_root={results_root}"], check=True)
    (record,) = records(results_root).values()
    assert record["status"] == "diverged"
    assert isinstance(record["diverged_at_step"], int) and record["diverged_at_step"] >= 0


def test_help_and_cfg_job_work(results_root):
    result = launch(["experiment=demo", "--cfg", "job"], check=True)
    assert "experiment_name: demo" in result.stdout
    info = launch(["--info", "defaults"], check=True)
    assert "optimizer" in info.stdout
