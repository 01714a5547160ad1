"""`python -m sharpness`: re-measuring saved runs, merging into result.json, and refusing bad input before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import runner  # noqa: F401  (registers the config resolvers)
from runner.io import atomic_write_json
from runner.models import build_model
from runner.remeasure.cli import main

REPO = Path(__file__).resolve().parent.parent
# A small re-measure: 32 synthetic examples in batches of 16, 2 ascent steps.
QUICK = [
    "sharpness.worst_linf.examples=32",
    "sharpness.worst_linf.batch_size=16",
    "sharpness.worst_linf.iterations=2",
    "device=cpu",
]


def write_run(folder: Path, data_dir: Path, seed: int, *, status: str = "completed", weights: bool = True) -> Path:
    """A run folder as the runner leaves it: config.yaml, model.pt, result.json."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "dataset=synthetic",
                "model.width=2",
                f"seed={seed}",
                f"data_dir={data_dir}",
                f"results_root={folder.parent}",
            ],
        )
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    torch.manual_seed(seed)
    if weights:
        torch.save(build_model(cfg.model).state_dict(), folder / "model.pt")
    atomic_write_json(
        folder / "result.json",
        {
            "schema_version": 1,
            "status": status,
            "seed": seed,
            "test_error": 50.0,
            "sharpness": {"earlier": {"value": 1.5, "kind": "worst_case"}},
            "error": None,
        },
    )
    return folder


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "results"
    data = tmp_path / "data"
    return {
        "root": root,
        "a": write_run(root / "exp" / "synthetic-resnet18" / "sgd-constant" / "seed=0", data, 0),
        "b": write_run(root / "exp" / "synthetic-resnet18" / "sam-constant" / "seed=1", data, 1),
        "failed": write_run(
            root / "exp" / "synthetic-resnet18" / "gsam-constant" / "seed=0", data, 0, status="failed", weights=False
        ),
    }


def record(folder: Path) -> dict:
    return json.loads((folder / "result.json").read_text())


def records(runs: dict[str, Path]) -> dict[str, str]:
    return {name: (path / "result.json").read_text() for name, path in runs.items() if name != "root"}


def test_remeasures_every_run_below_a_root_and_keeps_what_was_there(runs, capsys):
    assert main([str(runs["root"]), "sharpness=worst_linf", *QUICK]) == 0
    for name in ("a", "b"):
        entry = record(runs[name])["sharpness"]
        assert entry["earlier"] == {"value": 1.5, "kind": "worst_case"}
        assert entry["worst_linf"]["value"] > 0
        assert entry["worst_linf"]["examples"] == 32 and entry["worst_linf"]["iterations"] == 2
        assert record(runs[name])["test_error"] == 50.0
    assert "worst_linf" not in record(runs["failed"])["sharpness"]  # a failed run is skipped
    out = capsys.readouterr().out
    assert "worst_linf=" in out and str(runs["a"]) in out
    assert not list(runs["a"].glob(".result.json.*"))  # no temporary files left behind


def test_already_measured_runs_are_skipped_unless_forced(runs):
    assert main([str(runs["a"]), *QUICK]) == 0
    before = (runs["a"] / "result.json").read_text()
    assert main([str(runs["a"]), *QUICK]) == 0
    assert (runs["a"] / "result.json").read_text() == before
    assert main([str(runs["a"]), *QUICK, "force=true"]) == 0
    earlier = json.loads(before)["sharpness"]["worst_linf"]
    assert record(runs["a"])["sharpness"]["worst_linf"]["value"] == earlier["value"]  # same seed, same value


def test_a_glob_selects_runs_and_several_measures_land_under_their_names(runs):
    pattern = str(runs["root"] / "exp" / "*" / "sam-*" / "seed=*")
    assert (
        main(
            [
                pattern,
                "sharpness=[worst_linf,average_linf]",
                *QUICK,
                "sharpness.average_linf.examples=32",
                "sharpness.average_linf.batch_size=16",
                "sharpness.average_linf.samples=1",
            ]
        )
        == 0
    )
    assert set(record(runs["b"])["sharpness"]) == {"earlier", "worst_linf", "average_linf"}
    assert set(record(runs["a"])["sharpness"]) == {"earlier"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["sharpness=sharpest"], "unknown sharpness measure 'sharpest'; options: average_l2"),
        (["sharpness.worst_linf.rho=-0.1"], "sharpness.worst_linf.rho=-0.1: must be a finite number >= 0"),
        (
            ["sharpness.worst_linf.batch_size=64", "sharpness.worst_linf.examples=32"],
            "batch_size=64: m = batch_size must not exceed examples=32",
        ),
        (["sharpness.worst_linf.examples=1024"], "examples=1024: the train split has only 256"),
        (["sharpness.hessian_eig.iterations=3"], "Could not override 'sharpness.hessian_eig.iterations'"),
        (["dataset.nonsense=1"], "has no key 'dataset.nonsense'"),
        (["device=gpu"], "device='gpu': expected auto, cpu, cuda"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(runs, capsys, args, message):
    before = records(runs)
    assert main([str(runs["root"]), *QUICK[:3], *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert records(runs) == before


def test_selecting_no_measure_is_refused(runs, capsys):
    assert main([str(runs["root"]), "sharpness=none"]) == 2
    assert "nothing to measure" in capsys.readouterr().err


def test_a_run_without_weights_is_refused_before_any_work(runs, capsys):
    (runs["b"] / "model.pt").unlink()
    before = records(runs)
    assert main([str(runs["root"]), *QUICK]) == 2
    assert "no model.pt; cannot re-measure a run folder without weights" in capsys.readouterr().err
    assert records(runs) == before  # run a, checked first, was not measured either


def test_targets_that_are_not_runs_are_refused(runs, capsys, tmp_path):
    assert main([str(tmp_path / "nowhere"), *QUICK]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main([str(runs["failed"]), *QUICK]) == 2
    assert "status is 'failed'" in capsys.readouterr().err
    assert main(QUICK) == 2
    assert "no run folder given" in capsys.readouterr().err


def test_relative_run_folders_with_equals_signs_are_targets(runs, monkeypatch):
    monkeypatch.chdir(runs["root"])
    assert main(["exp/synthetic-resnet18/sgd-constant/seed=0", *QUICK]) == 0
    assert "worst_linf" in record(runs["a"])["sharpness"]
    assert "worst_linf" not in record(runs["b"])["sharpness"]


def test_run_overrides_change_the_stored_config(runs, tmp_path):
    # The data moved: point the run's dataset at the new folder (synthetic data is generated, so any folder works).
    assert main([str(runs["a"]), *QUICK, f"dataset.root={tmp_path / 'moved'}"]) == 0
    assert "worst_linf" in record(runs["a"])["sharpness"]


def test_multirun_dispatches_one_job_per_run(runs, tmp_path):
    sweep = tmp_path / "sweep"
    assert main(["-m", str(runs["root"]), *QUICK, f"hydra.sweep.dir={sweep}"]) == 0
    for name in ("a", "b"):
        assert record(runs[name])["sharpness"]["worst_linf"]["value"] > 0
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


def test_python_dash_m_entry_point_reports_errors(runs):
    result = subprocess.run(
        [sys.executable, "-m", "sharpness", str(runs["root"]), "sharpness=sharpest"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown sharpness measure 'sharpest'")
