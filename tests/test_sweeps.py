"""Studies beyond the paper's grid: real multiruns over rho and lr through `launch.py -m`."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import QUICK, launch


def records(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and ".outcomes" not in p.parts}


def _sweep_then_relaunch(results_root: Path, sweep: list[str]) -> dict[Path, dict]:
    args = ["-m", *QUICK, *sweep, f"results_root={results_root}", "experiment_name=study"]
    first = launch(args)
    assert first.returncode == 0, first.stdout + first.stderr
    found = records(results_root)
    assert len(found) == 2 and {r["status"] for r in found.values()} == {"completed"}, first.stdout
    before = _mtimes(results_root / "study" / "synthetic-resnet18")
    again = launch(args)
    assert again.returncode == 0, again.stderr
    assert "skipped: 2" in again.stdout and "completed: 0" in again.stdout, again.stdout
    # Nothing launched: no record, log, checkpoint or .hydra file of a cell was touched.
    assert _mtimes(results_root / "study" / "synthetic-resnet18") == before
    return found


def test_a_rho_sweep_gets_one_folder_per_value_and_a_relaunch_launches_nothing(results_root):
    found = _sweep_then_relaunch(results_root, ["optimizer=sam", "sam.rho=0.01,0.1"])
    by_rho = {r["config"]["optimizer"]["rho"]: folder for folder, r in found.items()}
    assert set(by_rho) == {0.01, 0.1}
    assert by_rho[0.01] != by_rho[0.1]
    for rho, folder in by_rho.items():
        assert f"rho={rho}" in folder.parent.name and folder.name == "seed=0"
        assert folder.parent.parent.name == "sam-constant"
        assert json.loads((folder / "result.json").read_text())["variant_values"]["optimizer.rho"] == rho


def test_an_lr_sweep_gets_one_folder_per_value(results_root):
    found = _sweep_then_relaunch(results_root, ["optimizer=gsam", "optimizer.lr=0.05,0.2"])
    assert {r["variant_values"]["optimizer.lr"] for r in found.values()} == {0.05, 0.2}
    assert len({folder.parent for folder in found}) == 2


def test_equivalent_spellings_share_one_folder(results_root):
    args = [*QUICK, "optimizer=sam", f"results_root={results_root}"]
    launch([*args, "sam.rho=0.1"], check=True)
    again = launch([*args, "optimizer.rho=0.1"], check=True)
    (folder,) = records(results_root)
    assert "nothing to do" in again.stdout + again.stderr


def test_a_sweep_with_a_bad_cell_runs_nothing_and_names_the_cell(results_root):
    result = launch(
        [
            "-m",
            *QUICK,
            "optimizer=sgd,sam",
            "schedule=constant,batch",
            "train.increasing_batch_sizes=[16,300]",
            f"results_root={results_root}",
        ]
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: cell")]
    assert len(errors) == 2, result.stderr
    assert all("schedule=batch" in line and "batch_size=300 is larger than the training set" in line for line in errors)
    assert {"optimizer=sgd" in errors[0], "optimizer=sam" in errors[1]} == {True}
    assert not [p for p in results_root.rglob("*") if p.is_file()], "a refused sweep wrote files"


def test_cells_that_compute_the_same_thing_run_once(results_root):
    # SGD does not use rho: both rho values of the SGD column are one cell.
    result = launch(["-m", *QUICK, "optimizer=sgd,sam", "sam.rho=0.01,0.1", f"results_root={results_root}"])
    assert result.returncode == 0, result.stderr
    found = records(results_root)
    assert sorted(r["optimizer"] for r in found.values()) == ["sam", "sam", "sgd"]
    assert "completed: 3, skipped: 1" in result.stdout
    plan = json.loads((results_root / "adhoc" / "sweep_plan.json").read_text())
    assert sorted(c["action"] for c in plan["cells"]) == ["launch", "launch", "launch", "skip-duplicate"]


def test_a_sweep_with_a_failed_cell_exits_non_zero(tmp_path):
    from test_validation import broken_cifar

    result = launch(["-m", *broken_cifar(tmp_path), "optimizer=sgd,sam", f"results_root={tmp_path / 'results'}"])
    assert result.returncode == 1, result.stderr
    assert "failed: 2" in result.stdout
    # Each failure is summarised with its real reason, not as a killed job.
    assert result.stdout.count("FAILED ") == 2 and "killed" not in result.stdout


def test_max_batch_size_launches_a_sweep_in_slices(results_root):
    result = launch(
        ["-m", *QUICK, "optimizer=sgd,sam,gsam", "hydra.sweeper.max_batch_size=2", f"results_root={results_root}"]
    )
    assert result.returncode == 0, result.stderr
    assert len(records(results_root)) == 3
    # Hydra announces each launch: two slices (2 + 1 jobs), numbered on from the first.
    assert result.stdout.count("Launching 2 jobs locally") == 1 and result.stdout.count("Launching 1 jobs locally") == 1
    assert "#2 : " in result.stdout
