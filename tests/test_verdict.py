"""Whether a cell trains is decided in one place: skip, resume, train or refuse, from the cell's folder.

`runner.sweep.verdict.decide` answers for the single-run preflight, the sweeper (and the search,
which plans with it) and the run itself; these tests give it folders as runs leave them. The
launches that go through it end to end are tests/test_runner.py, test_sweeps.py and test_hostile.py.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from runner.folder import CHECKPOINT_FILE, MODEL_FILE, RESULT_FILE
from runner.sweep.verdict import REFUSE, RESUME, SKIP, TRAIN, config_mismatch, decide

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "seed": 0,
    "device": "cpu",
    "optimizer": {"name": "sam", "lr": 0.1, "rho": 0.05},
    "schedule": {"name": "constant", "stages": [{"batch_size": 32, "epochs": 2}]},
    "train": {"epochs": 2, "batch_size": 32},
}


def config(root: Path, **changes) -> OmegaConf:
    cfg = OmegaConf.create({**CONFIG, "force": False, "results_root": str(root), "run_dir": str(root / "cell")})
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    return cfg


def cell(root: Path, *, record: dict | str | None = None, checkpoint: bool = False, model: bool = False) -> Path:
    folder = root / "cell"
    folder.mkdir(parents=True, exist_ok=True)
    if record is not None:
        (folder / RESULT_FILE).write_text(record if isinstance(record, str) else json.dumps(record))
    if checkpoint:
        (folder / CHECKPOINT_FILE).write_bytes(b"PK\x03\x04")
    if model:
        (folder / MODEL_FILE).write_bytes(b"PK\x03\x04")
    return folder


def record(status: str, **changes) -> dict:
    stored = OmegaConf.create(CONFIG)
    for key, value in changes.items():
        OmegaConf.update(stored, key, value)
    return {"status": status, "config": OmegaConf.to_container(stored)}


def test_a_completed_cell_of_the_same_config_is_skipped_without_writing(tmp_path):
    folder = cell(tmp_path, record=record("completed"), model=True)
    before = sorted(p.name for p in folder.iterdir())
    verdict = decide(folder, config(tmp_path, device="cuda"))  # a neutral key changes nothing computed
    assert (verdict.action, verdict.reason) == (SKIP, "already completed")
    assert verdict.record["status"] == "completed"
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_diverged_cell_is_finished_and_a_failed_one_trains_again(tmp_path):
    assert decide(cell(tmp_path, record=record("diverged")), config(tmp_path)).action == SKIP
    assert decide(cell(tmp_path, record=record("failed")), config(tmp_path)).action == TRAIN
    assert decide(cell(tmp_path, record=record("failed"), checkpoint=True), config(tmp_path)).action == RESUME


def test_a_completed_cell_of_another_config_is_refused_in_one_line(tmp_path):
    folder = cell(tmp_path, record=record("completed", **{"optimizer.rho": 0.3}))
    verdict = decide(folder, config(tmp_path))
    assert verdict.action == REFUSE
    assert len(verdict.reason.splitlines()) == 1
    assert "different config" in verdict.reason and "optimizer.rho: 0.3 -> 0.05" in verdict.reason
    assert "force=true" in verdict.reason


def test_a_refusal_names_four_keys_at_most(tmp_path):
    stored = record("completed", **{"optimizer.rho": 0.3, "optimizer.lr": 0.2, "seed": 4, "train.epochs": 9})
    stored["config"]["schedule"]["name"] = "cosine"
    reason = config_mismatch(stored["config"], config(tmp_path), "completed run", tmp_path / "cell")
    assert reason.count(" -> ") == 4 and "; ...)" in reason


def test_a_checkpoint_resumes_and_one_of_another_config_is_refused(tmp_path):
    folder = cell(tmp_path, checkpoint=True)
    assert decide(folder, config(tmp_path)).action == RESUME
    same = decide(folder, config(tmp_path), checkpoint_config=lambda path: record("x")["config"])
    assert same.action == RESUME
    other = decide(folder, config(tmp_path), checkpoint_config=lambda path: record("x", seed=3)["config"])
    assert other.action == REFUSE and "holds a checkpoint made with a different config (seed: 3 -> 0)" in other.reason


def test_a_checkpoint_that_cannot_be_read_is_the_callers_to_set_aside(tmp_path):
    folder = cell(tmp_path, checkpoint=True)

    def unreadable(path: Path) -> None:
        raise ValueError(f"{path}: unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        decide(folder, config(tmp_path), checkpoint_config=unreadable)


def test_force_trains_over_a_finished_cell_and_its_checkpoint(tmp_path):
    folder = cell(tmp_path, record=record("completed", **{"optimizer.rho": 0.3}), checkpoint=True, model=True)
    verdict = decide(folder, config(tmp_path, force=True))
    assert verdict.action == TRAIN and "force=true" in verdict.reason


def test_a_damaged_record_trains_unless_the_run_may_have_finished(tmp_path):
    folder = cell(tmp_path, record='{"status": "compl')  # cut mid-write
    assert decide(folder, config(tmp_path)).action == TRAIN  # no model.pt: the run never finished
    (folder / MODEL_FILE).write_bytes(b"PK\x03\x04")
    refused = decide(folder, config(tmp_path))
    assert refused.action == REFUSE and "may have finished" in refused.reason
    assert decide(folder, config(tmp_path, force=True)).action == TRAIN


def test_a_cell_linked_out_of_the_results_root_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "results"
    root.mkdir()
    (root / "cell").symlink_to(elsewhere)
    verdict = decide(root / "cell", config(root))
    assert verdict.action == REFUSE and "outside results_root" in verdict.reason


def _calls(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
    }


@pytest.mark.parametrize("module", ["runner/sweep/sweeper.py", "runner/sweep/preflight.py", "runner/training/run.py"])
def test_the_sweeper_the_preflight_and_the_run_ask_the_verdict(module):
    assert "decide" in _calls(REPO / module)


def test_configs_are_compared_and_records_judged_in_the_verdict_alone():
    """No second copy of the decision: nobody else compares computed values or reads the finished statuses."""
    allowed = {
        "computed_values": {"runner/sweep/identity.py", "runner/sweep/verdict.py"},
        "is_finished": {"runner/folder.py", "runner/sweep/verdict.py"},
        "FINISHED_STATUSES": {"runner/folder.py", "runner/sweep/status.py"},  # status shows, it does not decide
    }
    for name, files in allowed.items():
        found = {
            str(path.relative_to(REPO))
            for path in (REPO / "runner").rglob("*.py")
            if name in path.read_text(encoding="utf-8")
        }
        assert found <= files, f"{name} is used in {sorted(found - files)}; decide with runner.sweep.verdict"
