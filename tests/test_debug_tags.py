"""`tags` label a run without moving it; the `debug` presets run a cell cut short, through launch.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import QUICK, launch

from runner.loggers.common import run_labels, tags_problems


def results(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def test_a_tagged_relaunch_of_a_finished_run_trains_nothing(results_root):
    args = [*QUICK, "train.epochs=1", "model.width=4", f"results_root={results_root}"]
    launch(args, check=True)
    (folder, record), *_ = results(results_root).items()
    assert record["config"]["tags"] == []
    stamp = (folder / "result.json").stat().st_mtime_ns

    tagged = launch([*args, "tags=[baseline,lr-study]"], check=True)
    assert list(results(results_root)) == [folder]  # the same folder: tags are not part of it
    assert (folder / "result.json").stat().st_mtime_ns == stamp, tagged.stderr
    assert "nothing to do" in (folder / "run.log").read_text() + tagged.stdout + tagged.stderr


def test_tags_of_a_new_run_are_in_its_record_and_a_sweep_plans_nothing_for_tags(results_root):
    args = ["-m", *QUICK, "train.epochs=1", "model.width=4", f"results_root={results_root}", "tags=[a,b]"]
    launch(args, check=True)
    ((folder, record),) = results(results_root).items()
    assert record["config"]["tags"] == ["a", "b"]
    assert "tags" not in record["variant_values"] and "a" not in folder.parent.name.split(",")
    again = launch([*args[:-1], "tags=[c]"], check=True)
    assert "skipped: 1" in again.stdout, again.stdout + again.stderr


def test_a_bad_tags_value_is_one_line_before_anything_runs(results_root):
    result = launch([*QUICK, f"results_root={results_root}", "tags=[[a,b]]"])
    assert result.returncode == 2
    assert "tags=[['a', 'b']] must be a list of labels" in result.stderr
    assert not list(results_root.rglob("result.json"))


def test_labels_from_a_list_or_a_string():
    assert run_labels({"tags": ["a", "b", "a", " "]}) == ["a", "b"]
    assert run_labels({"tags": "x, y"}) == ["x", "y"]
    assert run_labels({}) == []
    assert tags_problems({"tags": ["a", 1]}) == [] and tags_problems({"tags": [{"a": 1}]}) != []


def test_debug_fdr_runs_two_batches_per_epoch_the_fewest_epochs_into_the_debug_folder(results_root):
    base = [*(o for o in QUICK if not o.startswith("train.epochs")), "model.width=4", f"results_root={results_root}"]
    launch([*base, "debug=fdr"], check=True)  # constant, batch 32: two batches of 32, one epoch
    launch([*base, "debug=fdr", "schedule=batch"], check=True)  # + B [32, 64]: 2 x 64 examples, one epoch a stage
    found = {record["schedule"]: (folder, record) for folder, record in results(results_root).items()}
    (constant_dir, constant), (_, batch) = found["constant"], found["batch"]
    assert constant["status"] == batch["status"] == "completed"
    assert (constant["epochs"], constant["steps"]) == (1, 2)
    assert (batch["epochs"], batch["steps"]) == (2, 128 // 32 + 128 // 64)
    assert constant_dir.relative_to(results_root).parts[0] == "debug" and "debug=fdr" in constant["variant"].split(",")
    assert constant["sharpness"] == {}
    stamp = (constant_dir / "result.json").stat().st_mtime_ns
    launch([*base, "debug=fdr"], check=True)  # a debug run always trains again
    assert (constant_dir / "result.json").stat().st_mtime_ns != stamp


@pytest.mark.slow  # 30 epochs
def test_debug_overfit_says_whether_a_few_batches_were_learnt(results_root):
    quick = [o for o in QUICK if not o.startswith("train.epochs")]  # the preset's own 30 epochs
    launch([*quick, "model.width=4", f"results_root={results_root}", "debug=overfit"], check=True)
    ((folder, record),) = results(results_root).items()
    assert record["epochs"] == 30 and record["steps"] == 60
    log = (folder / "run.log").read_text()
    assert "overfit check passed" in log or "overfit check FAILED" in log
    assert ("passed" in log) == (record["train_error"] < 1.0)


@pytest.mark.slow
def test_debug_profile_writes_a_trace_and_an_operator_table(results_root):
    launch([*QUICK, "model.width=4", f"results_root={results_root}", "debug=profile"], check=True)
    ((folder, record),) = results(results_root).items()
    trace = json.loads((folder / "profile" / "trace.json").read_text())
    assert any("conv" in str(event.get("name", "")).lower() for event in trace["traceEvents"])
    assert "Self CPU" in (folder / "profile" / "ops.txt").read_text()


def test_debug_values_are_checked_at_validation():
    from omegaconf import OmegaConf

    from runner.training.debug import problems

    def cfg(loader: str = "device", **debug):
        settings = {"train_batches": 2, "test_batches": 2, "overfit_check": False, "profile": False, **debug}
        return OmegaConf.create({"dataset": {"loader": loader}, "debug": settings})

    assert problems(cfg()) == [] and problems(OmegaConf.create({"dataset": {"loader": "device"}})) == []
    assert problems(cfg(train_batches=0)) == ["debug.train_batches=0 must be an integer >= 1 (or null: no cut)"]
    assert problems(cfg(profile="yes")) == ["debug.profile='yes' must be true or false"]
    assert "in-memory datasets only" in problems(cfg("torchvision"))[0]
    assert problems(cfg("torchvision", train_batches=None, test_batches=None)) == []
