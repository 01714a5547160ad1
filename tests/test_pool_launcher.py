"""`hydra/launcher=pool`: cells in long-lived worker processes, each worker running cell after cell.

A worker that has already trained a cell must train the next one exactly as a fresh
process would: no RNG, BatchNorm, optimizer, data or backend state may carry over from
one cell to the next. Checked with one worker (every cell after the first runs in a
used process) against the local launcher (every cell its own process), record by record.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import FAST, QUICK, interrupt_sweep, launch

CELLS = ["optimizer=sgd,gsam", "schedule=constant,batch", "cpu_threads=1"]
COMPARED = ("status", "test_error", "test_loss", "train_error", "train_loss", "sharpness", "steps")


def records(root: Path) -> dict[str, dict]:
    """Each cell's result.json below root, by its folder relative to root, without the measures' wall times."""
    found = {}
    for path in sorted(root.rglob("result.json")):
        record = json.loads(path.read_text())
        for measure in (record.get("sharpness") or {}).values():
            measure.pop("wall_time_s", None)
        found[str(path.parent.relative_to(root))] = record
    return found


def test_cells_in_a_used_worker_match_cells_in_their_own_process(tmp_path):
    pooled = launch(
        ["-m", *FAST, *CELLS, f"results_root={tmp_path / 'pool'}", "hydra/launcher=pool", "hydra.launcher.n_jobs=1"]
    )
    assert pooled.returncode == 0, pooled.stdout + pooled.stderr
    alone = launch(["-m", *FAST, *CELLS, f"results_root={tmp_path / 'local'}", "hydra/launcher=local"])
    assert alone.returncode == 0, alone.stdout + alone.stderr

    in_pool, in_own_process = records(tmp_path / "pool"), records(tmp_path / "local")
    assert len(in_pool) == 4 and in_pool.keys() == in_own_process.keys()
    for cell, record in in_pool.items():
        assert record["status"] == "completed", cell
        assert record["sharpness"], cell  # the measure ran, so its numbers are compared too
        for key in COMPARED:
            assert record[key] == in_own_process[cell][key], (
                f"{cell}: {key} {record[key]} != {in_own_process[cell][key]}"
            )


def test_a_pool_sweep_relaunched_launches_nothing(tmp_path):
    args = ["-m", *QUICK, "optimizer=sgd,sam", f"results_root={tmp_path}", "hydra/launcher=pool"]
    first = launch(args)
    assert first.returncode == 0 and "completed: 2" in first.stdout, first.stdout + first.stderr
    again = launch(args)
    assert again.returncode == 0 and "skipped: 2" in again.stdout, again.stdout + again.stderr


def test_pool_settings_that_would_fail_or_share_a_process_are_refused_before_anything(tmp_path):
    """joblib would fail at the first dispatch, or run cells as threads sharing torch's global RNG."""
    named = {
        "hydra.launcher.n_jobs=0": "hydra.launcher.n_jobs=0: the pool's worker count is a whole number >= 1",
        "hydra.launcher.batch_size=0": "hydra.launcher.batch_size='0': cells per dispatch",
        "hydra.launcher.prefer=threads": "hydra.launcher.prefer='threads': cells must run in processes",
        "hydra.launcher.require=sharedmem": "hydra.launcher.require='sharedmem': shared memory",
        "hydra.launcher.backend=threading": "hydra.launcher.backend='threading': the pool runs cells in loky",
    }
    root = tmp_path / "results"
    refused = launch(["-m", *QUICK, "seed=0,1", f"results_root={root}", "hydra/launcher=pool", *named])
    assert refused.returncode == 2, refused.stdout + refused.stderr
    errors = [line.removeprefix("error: ") for line in refused.stderr.splitlines() if line.startswith("error:")]
    for setting, line in named.items():
        assert [e for e in errors if e.startswith(line)], f"{setting} not refused:\n{refused.stderr}"
    assert errors[-1] == "nothing was launched (5 problem(s) in the sweep itself, none in its cells)", refused.stderr
    assert len(errors) == 6, refused.stderr
    assert not root.exists(), sorted(root.rglob("*"))


def _live_members(group: int) -> list[str]:
    """Processes of a process group that still run (exited ones waiting for init to reap them do not)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # ended while being read
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == group and state != "Z":
            found.append(stat.parent.name)
    return found


@pytest.mark.parametrize("reaches", ["group", "launcher", "terminate"])
def test_ctrl_c_of_a_pool_sweep_is_one_line_and_stops_every_worker(tmp_path, reaches):
    """As with a process per cell: status 130, one line, no traceback, no worker left, no cell finished."""
    sweep = [*QUICK, "train.epochs=100000", "seed=0,1,2", "hydra/launcher=pool", "cpu_threads=1"]
    process = interrupt_sweep(sweep, tmp_path, reaches)
    deadline = time.time() + 10
    while _live_members(process.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _live_members(process.pid), "a worker outlived the interrupted sweep"
    assert not list(tmp_path.rglob("result.json")), "an interrupted cell must stay unfinished, to resume"
