"""`tags` label a run without moving it; the `debug` presets run a cell cut short, through launch.py."""

from __future__ import annotations

import json
from pathlib import Path

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
