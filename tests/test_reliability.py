"""Hostile and unlucky states of a cell folder, through `launch.py` as users meet them."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time
from pathlib import Path

from conftest import QUICK, REPO, launch

SLOW_CELL = [*QUICK, "optimizer=sam", "dataset.train_size=2048", "model.width=16", "train.epochs=3"]


def records(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def numbers(record: dict) -> dict:
    """What a run computed and the config it computed it with (where it was written left out)."""
    config = {key: value for key, value in record["config"].items() if key not in ("results_root", "run_dir")}
    return {
        **{key: record[key] for key in ("test_error", "test_loss", "train_error", "train_loss", "steps")},
        "config": config,
    }


def _cell_dir(results_root: Path, args: list[str]) -> Path:
    """The folder `args` train in, as the launcher resolves it (nothing is run)."""
    shown = launch([*args, f"results_root={results_root}", "--cfg", "job", "--resolve"], check=True)
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("run_dir: ")]
    return Path(line.removeprefix("run_dir: ")).absolute()


class _Payload:
    """A pickle whose loading would create a file: what a crafted checkpoint.pt carries."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_two_launches_of_one_cell_train_it_once(results_root):
    args = [*SLOW_CELL, f"results_root={results_root / 'shared'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list((results_root / "shared").rglob(".lock")) and time.time() < deadline:
        time.sleep(0.05)
    second = launch(args)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 1 and "is being trained by pid" in second.stderr, second.stderr
    (record,) = records(results_root / "shared").values()
    clean = launch([*SLOW_CELL, f"results_root={results_root / 'clean'}"], check=True)
    (reference,) = records(results_root / "clean").values()
    assert numbers(record) == numbers(reference), clean.stderr
    assert not list((results_root / "shared").rglob(".lock"))


def test_concurrent_launches_with_different_lr_keep_their_own_numbers(results_root):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        lr: subprocess.Popen(
            [
                sys.executable,
                str(REPO / "launch.py"),
                *SLOW_CELL,
                f"optimizer.lr={lr}",
                f"results_root={results_root / 'both'}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lr in (0.05, 0.1)
    }
    for process in runs.values():
        assert process.wait(timeout=600) == 0, process.stderr.read()
    found = {r["config"]["optimizer"]["lr"]: r for r in records(results_root / "both").values()}
    assert set(found) == {0.05, 0.1}
    launch([*SLOW_CELL, "optimizer.lr=0.05", f"results_root={results_root / 'clean'}"], check=True)
    (reference,) = records(results_root / "clean").values()
    assert numbers(found[0.05]) == numbers(reference)


def test_a_crafted_checkpoint_runs_nothing_and_is_moved_aside(results_root, tmp_path):
    cell = _cell_dir(results_root, QUICK)
    cell.mkdir(parents=True)
    target = tmp_path / "pwned"
    (cell / "checkpoint.pt").write_bytes(pickle.dumps({"model": _Payload(target)}))
    result = launch([*QUICK, f"results_root={results_root}"], check=True)
    assert not target.exists()
    (record,) = records(results_root).values()
    assert record["status"] == "completed"
    moved = Path(record["checkpoint_quarantined"])
    assert moved.parent == cell and moved.name.startswith("checkpoint.pt.corrupt-"), result.stderr


def test_a_truncated_checkpoint_is_moved_aside_and_training_starts_over(results_root):
    args = [*QUICK, f"results_root={results_root}", "keep_checkpoint=true"]
    launch(args, check=True)
    (cell,) = records(results_root)
    (cell / "result.json").unlink()  # an interrupted run: a checkpoint, no record
    checkpoint = (cell / "checkpoint.pt").read_bytes()
    (cell / "checkpoint.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    (cell / ".metrics.csv.abcd1234.tmp").write_text("left by a killed writer")
    result = launch(args, check=True)
    (record,) = records(results_root).values()
    assert record["status"] == "completed" and "checkpoint_quarantined" in record, result.stderr
    assert list(cell.glob("checkpoint.pt.corrupt-*"))
    assert not (cell / ".metrics.csv.abcd1234.tmp").exists()
    assert "unreadable checkpoint" in (cell / "run.log").read_text()


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_read_only_finished_tree_is_skipped(results_root):
    sweep = ["-m", *QUICK, "optimizer=sgd,sam", f"results_root={results_root}"]
    assert launch(sweep).returncode == 0
    _read_only(results_root)
    try:
        before = _snapshot(results_root)
        again = launch(sweep)
        assert again.returncode == 0, again.stderr
        assert "skipped: 2" in again.stdout
        single = launch([*QUICK, "optimizer=sam", f"results_root={results_root}"])
        assert single.returncode == 0 and "nothing to do" in single.stdout, single.stderr
        cells = {k: v for k, v in _snapshot(results_root).items() if "seed=" in k}
        assert cells == {k: v for k, v in before.items() if "seed=" in k}
    finally:
        for path in [results_root, *results_root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_deeply_nested_record_does_not_crash_a_launch(results_root):
    cell = _cell_dir(results_root, QUICK)
    cell.mkdir(parents=True)
    (cell / "result.json").write_text("[" * 100_000 + "]" * 100_000)
    result = launch([*QUICK, f"results_root={results_root}"])
    assert result.returncode == 0, result.stderr
    assert "RecursionError" not in result.stderr
    assert json.loads((cell / "result.json").read_text())["status"] == "completed"
