"""Mixed precision on the CPU: bf16 autocast trains and is recorded; fp16 goes through the loss scaler."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import runner
from conftest import FAST, REPO


def run_cell(overrides: list[str]) -> Path:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    outcome = runner.main(cfg)
    assert outcome["status"] == "completed", outcome
    return Path(outcome["run_dir"])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_run_trains_and_records_its_precision(tmp_path, precision):
    run_dir = run_cell([*FAST, "optimizer=gsam", "train.epochs=4", "dataset.train_size=512", "optimizer.lr=0.05",
                        f"precision={precision}", f"results_root={tmp_path}"])
    record = json.loads((run_dir / "result.json").read_text())
    assert record["precision"] == precision
    assert record["config"]["precision"] == precision
    with open(run_dir / "metrics.csv") as handle:
        losses = [float(row["train_loss"]) for row in csv.DictReader(handle)]
    assert losses[-1] < losses[0], losses
