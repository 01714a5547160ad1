"""Mixed precision on the CPU: bf16 autocast trains and is recorded; fp16 goes through the loss scaler."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import FAST, REPO
from hydra import compose, initialize_config_dir

import runner


def run_cell(overrides: list[str]) -> Path:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    outcome = runner.main(cfg)
    assert outcome["status"] == "completed", outcome
    return Path(outcome["run_dir"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_run_trains_and_records_its_precision(tmp_path, precision):
    run_dir = run_cell(
        [
            *FAST,
            "optimizer=gsam",
            # Small: CPU autocast in half precision is slow (width 8 on 512 examples took ~60 s a run).
            "model.width=4",
            "train.epochs=3",
            "dataset.train_size=256",
            "optimizer.lr=0.05",
            f"precision={precision}",
            f"results_root={tmp_path}",
        ]
    )
    record = json.loads((run_dir / "result.json").read_text())
    assert record["precision"] == precision
    assert record["config"]["precision"] == precision
    with open(run_dir / "metrics.csv") as handle:
        losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    assert losses[-1] < losses[0], losses


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path):
    """`compile=true` wraps the model in torch.compile; SAM's two passes and BN freezing still apply."""
    # Two steps: compiled kernels round differently, and early training amplifies that over many steps.
    common = [
        *(arg for arg in FAST if not arg.startswith("sharpness")),
        "optimizer=sam",
        "sharpness=none",
        "train.epochs=1",
        "train.batch_size=128",
    ]
    eager = json.loads((run_cell([*common, f"results_root={tmp_path / 'eager'}"]) / "result.json").read_text())
    compiled = json.loads(
        (run_cell([*common, "compile=true", f"results_root={tmp_path / 'compiled'}"]) / "result.json").read_text()
    )
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=1e-3)
    assert compiled["test_loss"] == pytest.approx(eager["test_loss"], rel=1e-3)
