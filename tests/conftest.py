"""Shared test helpers: the repository root, fast overrides and a `launch.py` runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Two cores in CI: one intra-op thread per process keeps concurrent runs from thrashing.
torch.set_num_threads(1)

# A tiny cell: synthetic 8x8 images, ResNet-18 of width 8, a few epochs, a small sharpness measure.
FAST = [
    "dataset=synthetic",
    "model.width=8",
    "train.epochs=2",
    "train.batch_size=32",
    "train.increasing_batch_sizes=[32,64]",
    "train.eval_batch_size=128",
    "sharpness.worst_linf.examples=64",
    "sharpness.worst_linf.batch_size=32",
    "sharpness.worst_linf.iterations=3",
    "progress=false",
    "device=cpu",
]

# FAST without the sharpness measure, for tests about the runner rather than the measure.
QUICK = [*(o for o in FAST if not o.startswith("sharpness")), "sharpness=none"]


def launch(
    args: list[str], *, cwd: Path = REPO, timeout: float = 600, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """Run `python launch.py ARGS` in a subprocess, as a user would."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    result = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"launch.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def json_of_a_fresh_process(script: str) -> Any:
    """The JSON a `python -c SCRIPT` prints last, run in the repository by a process of its own.

    For code that behaves differently with other threads running (a fork copies only the calling
    thread), which pytest-xdist's workers always have.
    """
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def results_root(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    root.mkdir()
    return root


# The files that take longest (each several minutes on two cores), started first: with the test
# files spread over processes (`make test`), a long file picked up last would leave the other
# processes idle until it ends.
LONGEST_FIRST = ("test_hostile.py", "test_slurm.py", "test_runner.py", "test_sweeps.py", "test_extensions.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside a file, and of the other files, is kept


def interrupt_sweep(args: list[str], results: Path, reaches: str) -> subprocess.Popen:
    """Start `launch.py -m ARGS` as a terminal's foreground job, and Ctrl-C it once two cells are training.

    `reaches="group"` signals the whole process group, as a terminal's Ctrl-C does; `"launcher"` only
    the launching process, as `kill -INT PID` does; `"terminate"` sends the launching process SIGTERM,
    as `kill PID` or `timeout` does. Returns the ended process, after checking that it ended as an
    interrupted command must: status 130 (143 after SIGTERM), an `interrupted:` line (`terminated:`),
    and no traceback.
    """
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "-m", *args, f"results_root={results}"],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"},
        start_new_session=True,  # its own group, as a terminal's foreground job; SIGINT at its default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300  # a loaded machine may take minutes to start both cells
    while len(list(results.rglob("metrics.csv"))) < 2 and time.time() < deadline:
        time.sleep(0.2)
    if len(list(results.rglob("metrics.csv"))) < 2:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("the cells never reached their first epoch")
    if reaches == "group":
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGTERM if reaches == "terminate" else signal.SIGINT)
    out, err = process.communicate(timeout=180)
    assert "Traceback" not in err and "Traceback" not in out, err[-3000:]
    status, word = (143, "terminated:") if reaches == "terminate" else (130, "interrupted:")
    assert process.returncode == status, err[-2000:]
    assert [line for line in err.splitlines() if line.startswith(word)], err[-2000:]
    return process
