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
        # FAST's values differ from the primary config's: the schedule's batch sizes, epochs and width.
        batch = "batch_size=32" if record["schedule"] != "batch" else "increasing_batch_sizes=32-64"
        variant = ",".join(sorted([batch, "epochs=2", "width=8"]))
        assert record["variant"] == variant
        assert folder == (
            results_root
            / "grid"
            / "synthetic-resnet18"
            / f"{record['optimizer']}-{record['schedule']}"
            / variant
            / "seed=0"
        )
        assert 0.0 <= record["test_error"] <= 100.0
        assert record["sharpness"]["worst_linf"]["value"] >= 0.0
        assert record["config"]["optimizer"]["name"] == record["optimizer"]
        assert (
            (folder / "model.pt").exists() and (folder / "metrics.csv").exists() and (folder / "config.yaml").exists()
        )
        assert not (folder / "checkpoint.pt").exists()
    # The increasing-batch cell changed its batch size between stages, and metrics.csv shows it.
    (sam_batch,) = [f for f, r in found.items() if (r["optimizer"], r["schedule"]) == ("sam", "batch")]
    with open(sam_batch / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["batch_size"]) for r in rows] == [32, 64]
    assert [int(r["stage"]) for r in rows] == [0, 1]

    # Rerunning the finished sweep launches nothing and leaves every record as it was.
    before = {p: (p / "result.json").stat().st_mtime_ns for p in found}
    again = launch(["-m", *FAST, *GRID, f"results_root={results_root}", "experiment_name=grid"], check=True)
    assert {p: (p / "result.json").stat().st_mtime_ns for p in found} == before
    assert "skipped: 9" in again.stdout, again.stdout + again.stderr


def test_same_seed_same_result(results_root):
    args = [*FAST, "optimizer=gsam", "schedule=batch"]
    launch([*args, f"results_root={results_root / 'a'}"], check=True)
    launch([*args, f"results_root={results_root / 'b'}"], check=True)
    (a,), (b,) = records(results_root / "a").values(), records(results_root / "b").values()
    assert outcome(a) == outcome(b)


def test_resume_after_sigkill_mid_epoch_equals_uninterrupted(results_root):
    # Long enough epochs that the kill lands inside one.
    args = [
        *FAST,
        "optimizer=sam",
        "schedule=batch",
        "dataset.train_size=1024",
        "train.epochs=4",
        "train.increasing_batch_sizes=[16,32]",
    ]
    reference_root, killed_root = results_root / "reference", results_root / "killed"
    launch([*args, f"results_root={reference_root}"], check=True)

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args, f"results_root={killed_root}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cell = "epochs=4,increasing_batch_sizes=16-32,train_size=1024,width=8"
    checkpoint = killed_root / "adhoc" / "synthetic-resnet18" / "sam-batch" / cell / "seed=0" / "checkpoint.pt"
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


def test_a_changed_config_gets_its_own_folder(results_root):
    launch([*FAST, "optimizer=sam", f"results_root={results_root}"], check=True)
    launch([*FAST, "optimizer=sam", "optimizer.rho=0.1", f"results_root={results_root}"], check=True)
    found = records(results_root)
    assert sorted(r["config"]["optimizer"]["rho"] for r in found.values()) == [0.05, 0.1]
    assert len({folder.parent for folder in found}) == 2


def test_a_folder_holding_another_config_is_not_reused(results_root):
    """A finished folder whose record disagrees with the launched config (an older layout, an edit by hand)."""
    launch([*FAST, "optimizer=sam", f"results_root={results_root}"], check=True)
    (folder,) = records(results_root)
    record = json.loads((folder / "result.json").read_text())
    record["config"]["optimizer"]["rho"] = 0.3
    (folder / "result.json").write_text(json.dumps(record))
    result = launch([*FAST, "optimizer=sam", f"results_root={results_root}"])
    assert result.returncode == 2
    assert "different config" in result.stderr and "optimizer.rho: 0.3 -> 0.05" in result.stderr
    forced = launch([*FAST, "optimizer=sam", "force=true", f"results_root={results_root}"], check=True)
    (record,) = records(results_root).values()
    assert record["config"]["optimizer"]["rho"] == 0.05, forced.stderr


def test_unknown_option_names_list_the_valid_ones(results_root):
    result = launch([*FAST, "optimizer=adam", f"results_root={results_root}"])
    assert result.returncode != 0
    assert "sgd" in result.stderr and "gsam" in result.stderr
    assert not list(results_root.rglob("result.json"))


def test_a_failing_cell_is_recorded_and_the_sweep_goes_on(results_root):
    # data_dir pointing at a file makes... simplest real failure: a model that cannot take the input.
    from test_validation import broken_cifar

    result = launch(["-m", *broken_cifar(results_root.parent), "optimizer=sgd,sam", f"results_root={results_root}"])
    assert result.returncode == 1
    found = records(results_root)
    assert len(found) == 2, result.stderr
    assert {r["status"] for r in found.values()} == {"failed"}
    assert all("cifar" in r["error"] for r in found.values())


def test_a_diverging_cell_is_recorded_as_diverged(results_root):
    assert launch([*FAST, "optimizer.lr=1e30", f"results_root={results_root}"]).returncode == 1
    (record,) = records(results_root).values()
    assert record["status"] == "diverged"
    assert isinstance(record["diverged_at_step"], int) and record["diverged_at_step"] >= 0


def test_help_and_cfg_job_work(results_root):
    result = launch(["experiment=demo", "--cfg", "job"], check=True)
    assert "experiment_name: demo" in result.stdout
    info = launch(["--info", "defaults"], check=True)
    assert "optimizer" in info.stdout
