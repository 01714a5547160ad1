"""Shared test helpers: the repository root, fast overrides and a `launch.py` runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
