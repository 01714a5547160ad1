"""`hydra/sweeper=optuna`: a real two-trial search through launch.py, its relaunch, bad spaces, the analysis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import QUICK, REPO, launch

from runner.sweep.objective import measured_problem, objective_problems, value_of

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="needs the optuna extra")

SEARCH = ["-m", "hydra/sweeper=optuna", *QUICK, "train.epochs=1", "model.width=4", "experiment_name=search"]


def results(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def test_two_trials_train_two_cells_and_a_relaunch_trains_nothing(results_root):
    args = [*SEARCH, f"results_root={results_root}", "hydra.sweeper.n_trials=2", "optimizer.lr=interval(0.01,0.5)"]
    first = launch(args, check=True)
    found = results(results_root)
    assert len(found) == 2, first.stdout + first.stderr
    search = json.loads((results_root / "search" / "search.json").read_text())
    trials = search["trials"]
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    # Each trial's value is its own record's test error, and each trial has its own folder by its lr.
    for trial in trials:
        record = json.loads((Path(trial["run_dir"]) / "result.json").read_text())
        assert trial["value"] == record["test_error"]
        assert record["config"]["optimizer"]["lr"] == pytest.approx(trial["params"]["optimizer.lr"])
    assert search["best"]["value"] == min(t["value"] for t in trials)
    assert "best test_error" in first.stdout

    # The seeded sampler asks the same two trials again: both are read from their records.
    stamps = {folder: (folder / "result.json").stat().st_mtime_ns for folder in found}
    again = launch(args, check=True)
    assert {folder: (folder / "result.json").stat().st_mtime_ns for folder in found} == stamps
    assert "skipped: 2" in again.stdout, again.stdout + again.stderr
    relaunched = json.loads((results_root / "search" / "search.json").read_text())["trials"]
    assert [t["action"] for t in relaunched] == ["skip-finished", "skip-finished"]
    assert [t["value"] for t in relaunched] == [t["value"] for t in trials]

    # The analysis shows every trial and the best configuration.
    shown = subprocess.run(
        [sys.executable, "-m", "analysis", str(results_root / "search"), "--figures", "none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    assert "## Search: test_error" in shown.stdout
    best_lr = f"{search['best']['params']['optimizer.lr']:.4g}"
    assert f"Best: test_error = {search['best']['value']:.4g} with optimizer.lr={best_lr}" in shown.stdout
    assert "0 (best)" in shown.stdout or "1 (best)" in shown.stdout
    assert "the paper's claims" not in shown.stdout  # one cell per variant: no claims to check


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (["optimizer.lr=interval(-1,0.5)"], "search space optimizer.lr: optimizer.lr=-1.0 must be"),
        (["device=choice(cpu,auto)"], "search space device: every value lands in one folder"),
        (
            ["hydra.sweeper.objective=sharpness.worst_linf", "optimizer.lr=interval(0.1,0.5)"],
            "needs the measure worst_linf in sharpness",
        ),
    ],
)
def test_a_bad_search_is_refused_before_anything_trains(results_root, space, expected):
    result = launch([*SEARCH, f"results_root={results_root}", *space])
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "nothing was launched" in result.stderr
    assert not list(results_root.rglob("result.json")) and not list(results_root.rglob("search.json"))


@pytest.mark.slow
def test_a_key_that_matters_only_for_some_choices_is_searchable(results_root):
    """`sam.rho` changes nothing for SGD but does for SAM: the probe finds the setting where it matters."""
    args = [*SEARCH, f"results_root={results_root}", "optimizer=choice(sgd,sam)", "sam.rho=interval(0.01,0.1)"]
    result = launch([*args, "hydra.sweeper.n_trials=1"], check=True)
    assert len(results(results_root)) == 1, result.stderr


def test_objective_values_come_from_the_record():
    record = {"status": "completed", "test_error": 4.5, "sharpness": {"worst_linf": {"value": 0.25}}}
    assert value_of(record, "test_error") == (4.5, "")
    assert value_of(record, "sharpness.worst_linf") == (0.25, "")
    assert value_of(record, "sharpness.hessian_eig")[0] is None
    assert value_of({"status": "diverged", "error": "nan loss"}, "test_error") == (None, "diverged: nan loss")
    assert value_of(None, "test_error")[0] is None
    assert objective_problems("train_loss") == [] and objective_problems("sharpness.") != []
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"sharpness": {"worst_linf": {}}})
    assert measured_problem("sharpness.worst_linf", cfg) is None
    assert "hessian_eig" in measured_problem("sharpness.hessian_eig", cfg)


def test_the_summary_names_the_analysis_command_of_the_install(monkeypatch):
    from runner.sweep.summary import analysis_command

    monkeypatch.setattr(sys, "argv", ["/home/you/.local/bin/sam-train", "-m"])
    assert analysis_command() == "sam-analysis"
    monkeypatch.setattr(sys, "argv", [str(REPO / "launch.py"), "-m"])
    assert analysis_command() == "python -m analysis"


def test_a_search_record_is_data_and_a_bad_one_is_a_note(tmp_path):
    from analysis.report import build_report

    good = tmp_path / "search"
    good.mkdir()
    trials = [
        {"number": 0, "params": {"optimizer.lr": 0.1}, "value": 0.3, "state": "COMPLETE", "action": "launch"},
        {"number": 1, "params": {"optimizer.lr": 0.2}, "value": 0.7, "state": "COMPLETE", "action": "skip-finished"},
        {"number": 2, "params": {"optimizer.lr": 0.4}, "value": None, "state": "FAIL", "error": "diverged: nan"},
    ]
    record = {"objective": "sharpness.worst_linf", "direction": "maximize", "trials": trials}
    (good / "search.json").write_text(json.dumps(record))
    bad = tmp_path / "other"
    bad.mkdir()
    (bad / "search.json").write_text(json.dumps({"trials": [{"params": {}, "number": {"not": "a number"}}]}))
    text = build_report(tmp_path).markdown()
    assert "| 1 (best) |" in text and "0 (best)" not in text  # maximize: the larger value
    assert "Best: sharpness.worst_linf = 0.7 with optimizer.lr=0.2" in text
    assert "failed: diverged: nan" in text and "found finished" in text
    assert "A search record could not be read:" in text and "other/search.json" in text
