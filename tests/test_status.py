"""`python -m runner.sweep.status`: every cell's state, epoch, timing and SLURM job, from the files runs write.

The sweep folders are written by hand, file by file, as the runner and the
launcher write them (contracts in docs/architecture.md), so each state is
pinned without training anything. Nothing here asks a real scheduler: the SLURM
cases hand `collect` the job states a scheduler would answer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO

from runner.sweep import status as st

EPOCHS = 5
COMPLETED = "digits-resnet18/sgd-constant/seed=0"
FAILED = "digits-resnet18/sam-constant/seed=0"
RUNNING = "digits-resnet18/gsam-constant/seed=0"
UNFINISHED = "digits-resnet18/sgd-batch/seed=0"
STALE_LOCK = "digits-resnet18/sam-batch/seed=0"
PENDING = "digits-resnet18/gsam-batch/seed=0"


def _metrics(walls: list[float], batch_size: int = 32) -> str:
    """metrics.csv with one row per epoch; every second epoch tested; cumulative wall times."""
    lines = ["epoch,stage,batch_size,lr,rho,train_loss,train_error,test_loss,test_error,grad_norm,wall_time_s"]
    for epoch, wall in enumerate(walls, start=1):
        test = f"{1.0 / epoch:.4f},{40.0 / epoch:.2f}" if epoch % 2 == 0 or epoch == EPOCHS else ","
        lines.append(f"{epoch},0,{batch_size},0.1,0.05,{0.5 / epoch:.4f},{20.0 / epoch:.2f},{test},,{wall}")
    return "\n".join(lines) + "\n"


def _config(epochs: int = EPOCHS) -> str:
    # As runner.training.run writes it: the resolved config, plain YAML.
    return (
        f"experiment_name: demo\nseed: 0\ntrain:\n  epochs: {epochs}\n  batch_size: 32\nschedule:\n  name: constant\n"
    )


def _result(status: str, **extra) -> str:
    record = {
        "schema_version": 2,
        "status": status,
        "epochs": EPOCHS,
        "wall_time_s": 50.0,
        "test_error": 6.5,
        "test_loss": 0.25,
        "train_error": 0.5,
        "train_loss": 0.02,
        "variant": "",
        "variant_values": {},
        "error": None,
        **extra,
    }
    return json.dumps(record)


def _write(path: Path, text: str, mtime: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _lock(pid: int, host: str | None = None, job: str | None = None) -> str:
    return json.dumps(
        {"host": host or socket.gethostname(), "pid": pid, "slurm_job_id": job, "started": time.time() - 30}
    )


def _plan(
    sweep: Path,
    cells: list[tuple[str, int | None, str]],
    launcher: str = "basic",
    sweep_id: str = "20261202-150102-ab12cd34",
    created: float | None = None,
) -> None:
    _write(
        sweep / "sweep_plan.json",
        json.dumps(
            {
                "schema_version": 1,
                "sweep_id": sweep_id,
                "created": created or time.time() - 600,
                "launcher": launcher,
                "sweep_dir": str(sweep),
                "cells": [
                    {
                        "index": i,
                        "job_num": job_num,
                        "run_dir": str(sweep / cell),
                        "cell": cell,
                        "overrides": [],
                        "variant": "",
                        "action": action,
                    }
                    for i, (cell, job_num, action) in enumerate(cells)
                ],
            }
        ),
    )


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A sweep of six cells: completed, failed, running (live lock), unfinished, stale lock, not started."""
    sweep = tmp_path_factory.mktemp("results") / "demo"
    old = time.time() - 300
    _plan(
        sweep,
        [
            (COMPLETED, None, "skip-finished"),
            (FAILED, 0, "launch"),
            (RUNNING, 1, "launch"),
            (UNFINISHED, 2, "launch"),
            (STALE_LOCK, 3, "launch"),
            (PENDING, 4, "launch"),
        ],
    )

    cell = sweep / COMPLETED
    _write(cell / "config.yaml", _config(), old)
    _write(cell / "metrics.csv", _metrics([10, 20, 30, 40, 50]), old)
    _write(cell / "result.json", _result("completed"), old + 5)

    cell = sweep / FAILED
    _write(cell / "config.yaml", _config(), old)
    _write(cell / "metrics.csv", _metrics([12.0]), old)
    _write(cell / "checkpoint.pt", "not a checkpoint: runner.sweep.status must never load it", old)
    _write(cell / "result.json", _result("failed", error="RuntimeError: CUDA error: an illegal memory access"), old + 5)

    cell = sweep / RUNNING  # 2 of 5 epochs of 10 s each, the last one written just now
    _write(cell / "config.yaml", _config(), old)
    _write(cell / "checkpoint.pt", "not a checkpoint")
    _write(cell / "metrics.csv", _metrics([10.0, 20.0]))
    _write(cell / ".lock", _lock(os.getpid()))

    cell = sweep / UNFINISHED  # killed after 3 epochs; nobody works on it
    _write(cell / "config.yaml", _config(), old)
    _write(cell / "checkpoint.pt", "not a checkpoint", old)
    _write(cell / "metrics.csv", _metrics([8.0, 16.0, 24.0]), old)

    cell = sweep / STALE_LOCK  # its holder died without removing the lock
    _write(cell / "config.yaml", _config(), old)
    _write(cell / "checkpoint.pt", "not a checkpoint", old)
    _write(cell / "metrics.csv", _metrics([8.0]), old)
    _write(cell / ".lock", _lock(_dead_pid()))
    # PENDING: nothing written yet.
    return sweep


def _status(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "runner.sweep.status", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _rows(table: str) -> dict[str, list[str]]:
    """The table's rows by full cell path, split into columns (two or more spaces apart).

    The fixture's cells share `digits-resnet18/*/seed=0`, which the table says once
    and leaves out of the rows; the rows are keyed by the full path again here.
    """
    assert "cells: digits-resnet18/*/seed=0" in table, table
    rows = {}
    for line in table.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and re.fullmatch(r"(sgd|sam|gsam)-(constant|batch)", cells[0]):
            rows[f"digits-resnet18/{cells[0]}/seed=0"] = cells
    return rows


def test_the_table_shows_every_state_and_epoch(sweep):
    done = _status(str(sweep))
    assert done.returncode == 0, done.stderr
    rows = _rows(done.stdout)
    assert set(rows) == {COMPLETED, FAILED, RUNNING, UNFINISHED, STALE_LOCK, PENDING}, done.stdout
    expected = {
        COMPLETED: ("completed", "5/5"),
        FAILED: ("failed", "1/5"),
        RUNNING: ("running", "2/5"),
        UNFINISHED: ("unfinished", "3/5"),
        STALE_LOCK: ("unfinished", "1/5"),
        PENDING: ("pending", "-"),
    }
    for cell, (state, epoch) in expected.items():
        assert rows[cell][1:3] == [state, epoch], (cell, rows[cell])
    # The running cell's last train error (20 / 2) and last tested error (40 / 2); the completed one's record.
    assert rows[RUNNING][3:5] == ["10.0%", "20.0%"]
    assert rows[COMPLETED][3:5] == ["0.5%", "6.5%"]
    assert max(len(line) for line in done.stdout.splitlines()) <= 100
    assert "6 cells: 1 running, 1 pending, 2 unfinished, 1 completed, 1 failed" in done.stdout
    assert "failed sam-constant: RuntimeError: CUDA error" in done.stdout
    assert "2 unfinished: nobody works on them" in done.stdout


def test_json_gives_states_epochs_and_eta(sweep):
    done = _status(str(sweep), "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    cells = {c["cell"]: c for c in status["cells"]}
    assert {cell: c["state"] for cell, c in cells.items()} == {
        COMPLETED: "completed",
        FAILED: "failed",
        RUNNING: "running",
        UNFINISHED: "unfinished",
        STALE_LOCK: "unfinished",
        PENDING: "pending",
    }
    running = cells[RUNNING]
    assert (running["epoch"], running["epochs"]) == (2, EPOCHS)
    assert running["train_loss"] == pytest.approx(0.25) and running["test_error"] == pytest.approx(20.0)
    assert running["lock"]["pid"] == os.getpid() and running["lock"]["live"] is True
    assert cells[STALE_LOCK]["lock"]["live"] is False
    # 3 epochs left at 10 s each, less the seconds since the last epoch was written.
    since = status["generated_at"] - (sweep / RUNNING / "metrics.csv").stat().st_mtime
    assert running["eta_s"] == pytest.approx(max(30.0 - since, 0.0), abs=0.01) and not running["eta_estimated"]
    assert running["wall_time_s"] == pytest.approx(20.0 + since, abs=0.01)
    # Not started: it waits for the one worker, then runs as long as the mean full run of the
    # timed cells (50, 12*5, 10*5, 8*5, 8*5 s).
    assert cells[PENDING]["eta_s"] == pytest.approx(running["eta_s"] + 48.0) and cells[PENDING]["eta_estimated"]
    # Unfinished cells (nobody on them) and failed ones have no ETA.
    assert [cells[c]["eta_s"] for c in (UNFINISHED, STALE_LOCK, FAILED)] == [None, None, None]
    assert cells[COMPLETED]["action"] == "skip-finished" and cells[COMPLETED]["job_num"] is None
    assert cells[FAILED]["error"].startswith("RuntimeError")
    assert status["counts"] == {
        "running": 1,
        "busy": 0,
        "pending": 1,
        "unfinished": 2,
        "completed": 1,
        "failed": 1,
        "diverged": 0,
    }
    # One worker: the running cell's rest, then the pending cell.
    assert status["eta_s"] == pytest.approx(running["eta_s"] + 48.0)
    assert status["plan"]["sweep_id"] == "20261202-150102-ab12cd34" and status["scheduler"] is False


def test_newer_progress_than_the_result_is_unfinished_work(tmp_path):
    """A failed cell resumed by a relaunch that was killed again: the old record no longer says it all."""
    cell = tmp_path / "demo" / FAILED
    _write(cell / "config.yaml", _config())
    _write(cell / "result.json", _result("failed", error="RuntimeError: x"), time.time() - 100)
    _write(cell / "metrics.csv", _metrics([10.0, 20.0, 30.0]))
    status = st.collect(tmp_path / "demo")
    (row,) = status["cells"]
    assert (row["state"], row["epoch"], row["cell"]) == ("unfinished", 3, FAILED)


def test_a_copied_sweep_folder_finds_its_cells_by_their_relative_path(tmp_path):
    """The plan's absolute run_dirs name where the sweep was launched; a copy elsewhere still reads right."""
    sweep = tmp_path / "copy"
    _plan(sweep, [(COMPLETED, None, "skip-finished"), (PENDING, 0, "launch")])
    plan = json.loads((sweep / "sweep_plan.json").read_text())
    plan["sweep_dir"] = "/cluster/scratch/results/demo"
    for cell in plan["cells"]:
        cell["run_dir"] = f"/cluster/scratch/results/demo/{cell['cell']}"
    _write(sweep / "sweep_plan.json", json.dumps(plan))
    _write(sweep / COMPLETED / "result.json", _result("completed"))
    status = st.collect(sweep)
    assert [(c["cell"], c["state"], c["in_plan"]) for c in status["cells"]] == [
        (COMPLETED, "completed", True),
        (PENDING, "pending", True),
    ]


def test_a_folder_without_a_plan_finds_its_cells(tmp_path, capsys):
    sweep = tmp_path / "older_sweep"
    _write(sweep / COMPLETED / "result.json", _result("completed", config={"train": {"epochs": 4}}))
    _write(sweep / COMPLETED / "metrics.csv", _metrics([5.0, 10.0, 15.0, 20.0]), time.time() - 60)
    _write(sweep / UNFINISHED / "checkpoint.pt", "not a checkpoint")
    _write(sweep / UNFINISHED / "config.yaml", _config())
    _write(sweep / UNFINISHED / ".hydra" / "config.yaml", "hydra: {}\n")  # Hydra's copy is not a cell
    _write(sweep / "diverged_one" / "result.json", _result("diverged", error="Diverged: loss is nan at step 7"))

    assert st.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "no sweep_plan.json" in out
    rows = {parts[0]: parts[1:3] for parts in (re.split(r"\s{2,}", line.strip()) for line in out.splitlines())}
    assert rows[COMPLETED] == ["completed", "4/4"]
    assert rows[UNFINISHED] == ["unfinished", "0/5"]
    assert "diverged diverged_one: Diverged: loss is nan at step 7" in out

    # A single run's folder is a sweep of one cell.
    status = st.collect(sweep / COMPLETED)
    assert [(c["cell"], c["state"]) for c in status["cells"]] == [(".", "completed")]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: tmp / "does_not_exist", "does not exist"),
        (lambda tmp: tmp, "is not a sweep folder"),
    ],
)
def test_bad_folders_exit_2_with_one_line(tmp_path, capsys, make, message):
    assert st.main([str(make(tmp_path))]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and message in captured.err


def test_a_nonexistent_folder_from_the_command_line(tmp_path):
    done = _status(str(tmp_path / "nope"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"runner.sweep.status: {tmp_path / 'nope'} does not exist; "
        "give a sweep folder such as results/<experiment_name>"
    ]


@pytest.mark.parametrize("args", [["--watch", "0"], ["--watch", "soon"], ["--json", "--watch"], []])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exit_:
        st.main(args)
    assert exit_.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_broken_plan_is_named(tmp_path, capsys):
    _write(tmp_path / "sweep_plan.json", "{not json")
    assert st.main([str(tmp_path)]) == 2
    assert "sweep_plan.json is not a sweep plan" in capsys.readouterr().err


def test_watch_redraws_until_ctrl_c(sweep, tmp_path):
    out = tmp_path / "out.txt"
    with open(out, "w") as handle:
        child = subprocess.Popen(
            [sys.executable, "-m", "runner.sweep.status", str(sweep), "--watch", "0.2"],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "100"},
            # A shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.time() + 120
        while out.read_text().count("6 cells:") < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert out.read_text().count("6 cells:") >= 2, out.read_text()
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=120) == 0  # generous: a loaded machine may take a while to deliver it
    text = out.read_text()
    assert text.count("\033[H\033[2J") >= 2 and "Ctrl-C to stop" in text and "Traceback" not in text


def test_a_long_table_fits_100_columns(tmp_path):
    sweep = tmp_path / "study"
    long_cell = "tiny_imagenet-wrn28_10/gsam-batch/alpha=0.02,lr=0.05,rho=0.1,train.epochs=200+0a1b2c3d/seed=2"
    _plan(sweep, [(long_cell, 0, "launch")])
    _write(sweep / long_cell / "config.yaml", _config())
    _write(sweep / long_cell / "metrics.csv", _metrics([10.0]), time.time() - 50)
    status = st.collect(sweep)
    table = st.format_table(status, width=100)
    lines = table.splitlines()
    assert max(len(line) for line in lines[2:]) <= 100
    row = next(line for line in lines if line.startswith("tiny_imagenet"))
    assert row.split()[0].endswith("/seed=2") and "..." in row.split()[0]
    wide = st.format_table(status, width=200)
    assert long_cell in wide and "train loss" in wide


# ------------------------------------------------------------------ SLURM (a scheduler's answers handed in)


def test_slurm_cells_map_to_the_newest_array_and_its_states(tmp_path):
    sweep = tmp_path / "demo"
    created = time.time() - 120
    cells = [f"digits-resnet18/{opt}/seed=0" for opt in ("sgd-constant", "sam-constant", "gsam-constant", "sgd-batch")]
    _plan(
        sweep,
        [(cells[0], 0, "launch"), (cells[1], 1, "launch"), (cells[2], 2, "launch"), (cells[3], 3, "launch")],
        launcher="slurm",
        created=created,
    )  # hydra/launcher=slurm
    for name, mtime in (
        ("100_0", created - 3600),
        ("100_1", created - 3600),
        ("205_0", None),
        ("205_1", None),
        ("205_2", None),
        ("205_3", None),
    ):
        (sweep / ".submitit" / name).mkdir(parents=True)
        if mtime:
            os.utime(sweep / ".submitit" / name, (mtime, mtime))
    # Job 1 started and recorded its id; it writes no lock (a run from before lock files).
    _write(
        sweep / ".outcomes" / "20261202-150102-ab12cd34" / "1.json",
        json.dumps({"status": "unfinished", "job_id": "205_1", "job_num": 1, "run_dir": str(sweep / cells[1])}),
    )
    _write(sweep / cells[1] / "checkpoint.pt", "x")
    _write(sweep / cells[1] / "metrics.csv", _metrics([30.0]))
    _write(sweep / cells[2] / "checkpoint.pt", "x")  # its job was cancelled: nobody works on it
    # Job 3 found its cell held by a job on another node, which the scheduler says still runs.
    _write(sweep / cells[3] / ".lock", _lock(12345, host="node-elsewhere", job="300"))
    _write(
        sweep / ".outcomes" / "20261202-150102-ab12cd34" / "3.json",
        json.dumps({"status": "busy", "job_id": "205_3", "job_num": 3, "run_dir": str(sweep / cells[3])}),
    )
    answers = {
        "205_0": "PENDING",
        "205_1": "RUNNING",
        "205_2": "CANCELLED",
        "205_3": "COMPLETED",
        "300": "RUNNING",
        "100_0": "RUNNING",
    }
    asked: list[str] = []

    def scheduler(ids):
        asked.extend(ids)
        return {i: answers[i] for i in ids if i in answers}

    status = st.collect(sweep, scheduler=scheduler)
    rows = {c["cell"]: c for c in status["cells"]}
    assert sorted(asked) == ["205_0", "205_1", "205_2", "205_3", "300"]  # never the old array
    assert [(rows[c]["state"], rows[c]["job_id"], rows[c]["scheduler_state"]) for c in cells] == [
        ("pending", "205_0", "PENDING"),
        ("running", "205_1", "RUNNING"),
        ("unfinished", "205_2", "CANCELLED"),
        ("busy", "205_3", "COMPLETED"),
    ]
    assert rows[cells[3]]["lock"]["verified"] is True
    table = st.format_table(status)
    assert re.search(r"^sgd-constant\s+pending .* 205_0\s+PD", table, re.M) and re.search(r"205_1\s+R$", table, re.M)

    # The holder's job was requeued: it will resume the cell.
    answers["300"] = "PENDING"
    rows = {c["cell"]: c for c in st.collect(sweep, scheduler=scheduler)["cells"]}
    assert rows[cells[3]]["state"] == "pending"
    # The lock's job has ended: the lock is stale and nobody works on the cell.
    answers["300"] = "TIMEOUT"
    rows = {c["cell"]: c for c in st.collect(sweep, scheduler=scheduler)["cells"]}
    assert rows[cells[3]]["state"] == "unfinished" and rows[cells[3]]["lock"]["live"] is False
    # No scheduler answers (squeue and sacct missing or failing): no scheduler column, files decide.
    status = st.collect(sweep, scheduler=lambda ids: None)
    rows = {c["cell"]: c for c in status["cells"]}
    assert status["scheduler"] is False and "slurm" not in st.format_table(status).splitlines()[3]
    assert [rows[c]["state"] for c in cells] == ["pending", "unfinished", "unfinished", "busy"]
    assert rows[cells[3]]["lock"]["verified"] is False


def test_busy_when_another_process_holds_a_skipped_cell(tmp_path):
    sweep = tmp_path / "demo"
    _plan(sweep, [(RUNNING, None, "skip-running")])
    _write(sweep / RUNNING / "config.yaml", _config())
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write(sweep / RUNNING / ".lock", _lock(holder.pid))
        (row,) = st.collect(sweep)["cells"]
        assert (row["state"], row["epoch"], row["lock"]["pid"]) == ("busy", 0, holder.pid)
    finally:
        holder.kill()
        holder.wait()
    (row,) = st.collect(sweep)["cells"]  # the holder is gone: its lock is stale
    assert (row["state"], row["lock"]["live"]) == ("unfinished", False)


def test_scheduler_output_is_parsed_to_base_states():
    squeue = "205_0|PENDING\n205_1|RUNNING\n301|COMPLETING\n"
    sacct = "JobID|State\n205_2|CANCELLED by 1000\n205_3|COMPLETED\n"
    assert st.parse_job_states(squeue + sacct) == {
        "205_0": "PENDING",
        "205_1": "RUNNING",
        "301": "COMPLETING",
        "205_2": "CANCELLED",
        "205_3": "COMPLETED",
    }


def test_durations_stay_short():
    assert [st.format_duration(s) for s in (None, 4, 545, 11220, 191000)] == ["-", "4s", "9m05s", "3h07m", "2d05h"]


def test_no_scheduler_commands_means_no_scheduler_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither squeue nor sacct
    assert st.query_scheduler(["205_0"]) is None
    assert st.query_scheduler([]) == {}


# ------------------------------------------------------------------ 80 columns and ETAs of resumed cells


def test_short_names_drop_what_every_cell_shares():
    same_depth = [
        "digits-resnet18/sgd-constant/epochs=20,width=4/seed=0",
        "digits-resnet18/sam-batch/epochs=20,width=4/seed=1",
    ]
    assert st.short_names(same_depth) == (
        ["sgd-constant/seed=0", "sam-batch/seed=1"],
        "digits-resnet18/*/epochs=20,width=4/*",
    )
    # The preset's cell has no variant segment: only the shared leading and trailing parts go.
    study = ["demo/sam-constant/seed=0", "demo/sam-constant/rho=0.02/seed=0", "demo/sam-constant/rho=0.1/seed=0"]
    assert st.short_names(study) == (["seed=0", "rho=0.02/seed=0", "rho=0.1/seed=0"], "demo/sam-constant/*")
    two_columns = ["demo/sgd-constant/seed=0", "demo/sam-constant/rho=0.1/seed=0"]
    assert st.short_names(two_columns) == (["sgd-constant", "sam-constant/rho=0.1"], "demo/*/seed=0")
    # One cell, or names that share nothing, stay whole.
    assert st.short_names(["a/b/seed=0"]) == (["a/b/seed=0"], None)
    assert st.short_names(["a/seed=0", "b/seed=1"]) == (["a/seed=0", "b/seed=1"], None)


def test_an_80_column_table_keeps_the_part_that_tells_cells_apart(tmp_path):
    sweep = tmp_path / "digits_study"
    variant = "epochs=20,increasing_batch_sizes=8-16-32-64,width=4"
    cells = [f"digits-resnet18/{o}-{s}/{variant}/seed=0" for o in ("sgd", "sam", "gsam") for s in ("constant", "batch")]
    _plan(sweep, [(cell, i, "launch") for i, cell in enumerate(cells)])
    for cell in cells:
        _write(sweep / cell / "config.yaml", _config())
        _write(sweep / cell / "metrics.csv", _metrics([10.0]), time.time() - 50)
    table = st.format_table(st.collect(sweep), width=80)
    assert max(len(line) for line in table.splitlines()) <= 80, table
    rows = [line.split()[0] for line in table.splitlines() if "unfinished" in line.split()[1:2]]
    assert rows == ["sgd-constant", "sgd-batch", "sam-constant", "sam-batch", "gsam-constant", "gsam-batch"], table
    assert "  cells: digits-resnet18/*/epochs=20," in table and "seed=0" in table


def test_a_resumed_cell_does_not_count_the_idle_gap(tmp_path):
    """Killed after 1 of 5 epochs (10 s each) an hour ago; resumed by a process that started 3 s ago."""
    sweep = tmp_path / "demo"
    now = time.time()
    _plan(sweep, [(RUNNING, 0, "launch"), (UNFINISHED, 1, "launch")])
    _write(sweep / RUNNING / "config.yaml", _config(), now - 3600)
    _write(sweep / RUNNING / "metrics.csv", _metrics([10.0]), now - 3600)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # a live lock holder
    try:
        lock = json.loads(_lock(holder.pid))
        _write(sweep / RUNNING / ".lock", json.dumps({**lock, "started": now - 3}))
        _write(sweep / UNFINISHED / "config.yaml", _config(), now - 3600)
        _write(sweep / UNFINISHED / "metrics.csv", _metrics([10.0, 20.0]), now - 3600)
        cells = {c["cell"]: c for c in st.collect(sweep, now=now)["cells"]}
    finally:
        holder.kill()
        holder.wait()
    running = cells[RUNNING]
    assert running["state"] == "running"
    assert running["wall_time_s"] == pytest.approx(13.0, abs=0.01)  # 10 s trained before, 3 s since the resume
    assert running["eta_s"] == pytest.approx(37.0, abs=0.01)  # 4 epochs of 10 s, 3 s of them done
    assert cells[UNFINISHED]["state"] == "unfinished" and cells[UNFINISHED]["eta_s"] is None


def test_a_rewritten_config_is_read_again_and_an_object_tag_is_refused(tmp_path):
    """The live view caches each config.yaml it parses; a new version of the file is parsed afresh."""
    cell = tmp_path / "cell"
    cell.mkdir()
    config = cell / "config.yaml"
    config.write_text("train:\n  epochs: 40\n", encoding="utf-8")
    assert st.total_epochs(cell, None) == 40
    config.write_text("train:\n  epochs: 7\n  batch_size: 64\n", encoding="utf-8")
    assert st.total_epochs(cell, None) == 7
    # A file from elsewhere is data: a tag that would build a Python object is no config at all.
    config.write_text("train: !!python/object/apply:os.getcwd []\n", encoding="utf-8")
    assert st.total_epochs(cell, {"epochs": 3}) == 3
