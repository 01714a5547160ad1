"""The launcher's live view (runner/sweep/live.py, live_text.py) and one summary line for a job killed early.

The event and table tests write cell folders by hand, as the runner writes them; the
others run real multiruns through `launch.py -m`: in a pipe (one line per event), on a
pseudo-terminal (the table redrawn in place), and with a local job killed. A SLURM job
cancelled by `scancel` is tests/test_slurm.py's.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUICK, REPO, launch

from runner.sweep import live, live_text
from runner.sweep import status as st

CELL = "digits-resnet18/sgd-constant/seed=0"
OTHER = "digits-resnet18/sam-constant/seed=0"
HEADER = "epoch,stage,batch_size,lr,rho,train_loss,train_error,test_loss,test_error,grad_norm,wall_time_s\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _plan(sweep: Path, cells: list[str]) -> None:
    entries = [
        {"index": i, "job_num": i, "run_dir": str(sweep / c), "cell": c, "overrides": [], "action": "launch"}
        for i, c in enumerate(cells)
    ]
    record = {"schema_version": 1, "sweep_id": "s1", "created": time.time(), "launcher": "basic", "cells": entries}
    _write(sweep / "sweep_plan.json", json.dumps({**record, "sweep_dir": str(sweep)}))


def _epochs(run_dir: Path, count: int) -> None:
    rows = [f"{k},0,32,0.1,0,0.5,{50 - k}.0,0.6,{60 - k}.0,,{10.0 * k}\n" for k in range(1, count + 1)]
    _write(run_dir / "metrics.csv", HEADER + "".join(rows))
    _write(run_dir / "config.yaml", "train:\n  epochs: 2\n")


def _cells(sweep: Path) -> list[dict]:
    return live_text.launched_cells(st.collect(sweep, scheduler=lambda ids: None))


def test_events_say_each_start_epoch_and_end_once(tmp_path):
    sweep = tmp_path / "demo"
    _plan(sweep, [CELL, OTHER])
    log = live_text.EventLog()
    log.start(_cells(sweep))
    assert log.lines(_cells(sweep)) == []  # both pending

    # The job of CELL has begun: the summary's outcome record says so before the cell holds its lock.
    _write(sweep / ".outcomes" / "s1" / "0.json", json.dumps({"status": "unfinished", "job_num": 0}))
    assert log.lines(_cells(sweep)) == [f"{CELL}: started"]
    # Two epochs appear between two looks: both are said, from metrics.csv.
    _epochs(sweep / CELL, 2)
    _write(sweep / CELL / "result.json", json.dumps({"status": "completed", "test_error": 58.0, "wall_time_s": 20.0}))
    assert log.lines(_cells(sweep)) == [
        f"{CELL}: epoch 1/2 done (train err 49.0%, test err 59.0%)",
        f"{CELL}: epoch 2/2 done (train err 48.0%, test err 58.0%)",
        f"{CELL}: completed (test err 58.0%, 20s)",
    ]
    assert log.lines(_cells(sweep)) == []  # nothing new, nothing said

    # OTHER trains one epoch, then its process dies (no lock, no result).
    _write(sweep / ".outcomes" / "s1" / "1.json", json.dumps({"status": "unfinished", "job_num": 1, "log": "/x.err"}))
    _epochs(sweep / OTHER, 1)
    lines = log.lines(_cells(sweep))
    assert lines[:2] == [f"{OTHER}: started", f"{OTHER}: epoch 1/2 done (train err 49.0%, test err 59.0%)"]
    assert lines[2] == f"{OTHER}: stopped before the end (unfinished; a relaunch resumes it); log: /x.err"


def test_cells_as_they_were_before_the_launch_are_not_news(tmp_path):
    sweep = tmp_path / "demo"
    _plan(sweep, [CELL])
    _epochs(sweep / CELL, 1)  # an earlier launch trained one epoch and stopped
    log = live_text.EventLog()
    log.start(_cells(sweep))
    assert log.lines(_cells(sweep)) == []
    # A job that never got further: only once the launcher returned is it said to have stopped.
    assert log.lines(_cells(sweep), final=True) == []
    _write(sweep / ".outcomes" / "s1" / "0.json", json.dumps({"status": "failed", "job_num": 0, "error": "boom"}))
    assert log.lines(_cells(sweep), final=True) == [
        f"{CELL}: started (from epoch 1/2)",
        f"{CELL}: FAILED: boom; log: {sweep / CELL / 'run.log'}",
    ]


def test_a_job_that_began_is_starting_until_the_launcher_returns(tmp_path):
    sweep = tmp_path / "demo"
    _plan(sweep, [CELL])
    log = live_text.EventLog()
    log.start(_cells(sweep))
    _write(sweep / ".outcomes" / "s1" / "0.json", json.dumps({"status": "unfinished", "job_num": 0}))
    status = st.collect(sweep, scheduler=lambda ids: None)
    assert "starting" in live_text.render_table(status, 80, 24)[-1]
    assert log.lines(_cells(sweep)) == [f"{CELL}: started"]
    final = log.lines(_cells(sweep), final=True)
    assert len(final) == 1 and "stopped before the end" in final[0]
    assert "unfinished" in live_text.render_table(status, 80, 24, final=True)[-1]


def test_the_table_fits_the_terminal_and_keeps_running_cells(tmp_path):
    sweep = tmp_path / "study"
    variant = "epochs=20,increasing_batch_sizes=8-16-32-64,width=4"
    cells = [
        f"digits-resnet18/{o}-{s}/{variant}/seed={k}"
        for o in ("sgd", "sam", "gsam")
        for s in ("constant", "batch")
        for k in (0, 1)
    ]
    _plan(sweep, cells)
    _epochs(sweep / cells[-1], 1)
    _write(sweep / cells[2] / "result.json", json.dumps({"status": "failed", "error": "RuntimeError: out of memory"}))
    status = st.collect(sweep, scheduler=lambda ids: None)
    table = live_text.render_table(status, 80, 24)
    assert all(len(line) < 80 for line in table), table
    assert table[0].startswith("12 cells: 10 pending, 1 unfinished, 1 failed")
    assert table[1] == f"cells: digits-resnet18/*/{variant}/*"
    assert table[3].split()[:2] == ["sgd-constant/seed=0", "pending"]
    assert table[-1].startswith("failed sgd-batch/seed=0: RuntimeError: out of memory (log: ")
    short = live_text.render_table(status, 80, 8)  # 8 lines: the failed and unfinished rows stay
    assert len(short) <= 8 and "... and" in short[-2] and any("failed" in line for line in short[3:-2]), short


def test_auto_is_a_table_on_a_terminal_only(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert live.resolve_mode("auto", Terminal()) == "table"
    assert live.resolve_mode("auto", open(os.devnull, "w")) == "lines"
    monkeypatch.setenv("TERM", "dumb")
    assert live.resolve_mode("auto", Terminal()) == "lines"
    with pytest.raises(ValueError, match="'loud' is not one of auto, table, lines, off"):
        live.resolve_mode("loud", Terminal())


# ------------------------------------------------------------------ real multiruns

SWEEP = ["-m", *QUICK, "model.width=4", "train.epochs=1", "dataset.train_size=128", "optimizer=sgd,sam"]


def _cell_lines(out: str, optimizer: str) -> list[str]:
    """The live view's event lines (`[HH:MM:SS] <cell>: <event>`) of one optimizer's cell."""
    found = (re.fullmatch(r"\[\d\d:\d\d:\d\d\] (\S+): (.*)", line) for line in out.splitlines())
    return [m[2] for m in found if m and f"/{optimizer}-constant/" in m[1]]


def test_in_a_pipe_every_cell_event_is_one_line(results_root):
    result = launch([*SWEEP, f"results_root={results_root}", "hydra.sweeper.live_every=0.2"])
    assert result.returncode == 0, result.stdout + result.stderr
    for optimizer in ("sgd", "sam"):
        events = _cell_lines(result.stdout, optimizer)
        assert events[0] == "started" and events[-1].startswith("completed (test err "), result.stdout
        assert [e for e in events if e.startswith("epoch")] == [events[1]] and events[1].startswith("epoch 1/1 done")
    assert "\033[" not in result.stdout and "it/s" not in result.stderr
    assert result.stdout.index("Sweep summary") > max(result.stdout.rfind("completed (test err"), 0)


def test_off_prints_no_events(results_root):
    result = launch([*SWEEP, "optimizer=sgd", f"results_root={results_root}", "hydra.sweeper.live=off"])
    assert result.returncode == 0 and "started" not in result.stdout, result.stdout


def test_a_bad_live_setting_is_one_line_before_anything_runs(results_root):
    result = launch([*SWEEP, f"results_root={results_root}", "hydra.sweeper.live=loud"])
    assert result.returncode == 2 and "error: hydra.sweeper.live='loud'" in result.stderr, result.stderr
    assert not list(results_root.rglob("*"))


def _read_pty(fd: int, process: subprocess.Popen, timeout: float) -> bytes:
    out = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    return out


def test_on_a_terminal_the_table_is_redrawn_in_place_below_the_log(results_root):
    """The basic launcher trains in this process: its log lines go above the table, and no progress bar shows."""
    primary, secondary = pty.openpty()
    os.set_blocking(primary, True)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))  # 30 rows, 80 columns
    args = [a for a in SWEEP if a != "progress=false"] + [
        f"results_root={results_root}",
        "hydra.sweeper.live_every=0.2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TERM": "xterm", "HYDRA_FULL_ERROR": "0"}
    child = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=REPO,
        env=env,
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    try:
        raw = _read_pty(primary, child, timeout=600).decode("utf-8", "replace")
        assert child.wait(timeout=60) == 0, raw[-3000:]
    finally:
        os.close(primary)
        if child.poll() is None:
            child.kill()
    redraws = re.findall(r"\r\033\[(\d+)A\033\[J", raw)
    assert len(redraws) >= 2, raw[-3000:]
    # What the table left on screen at the end: the header, both rows completed, nothing wider than 80 columns.
    final = raw[raw.rindex("\033[J") + 3 :].replace("\r", "")
    table = final[: final.index("Sweep summary")].splitlines()
    assert table[0].startswith("2 cells: 2 completed"), final
    rows = {line.split()[0]: line.split()[1:3] for line in table[3:] if line.strip()}
    assert rows == {"sgd-constant": ["completed", "1/1"], "sam-constant": ["completed", "1/1"]}, table
    assert max(len(line) for line in table) < 80
    # The cells' log lines came through, each erased the table first; no progress bar was drawn.
    assert "epoch 1/1 stage 0" in raw and "%|" not in raw and "epoch/s" not in raw and "s/epoch" not in raw
    assert all(int(n) == 5 for n in redraws), set(redraws)  # header, shared parts, column titles, 2 rows


# ------------------------------------------------------------------ a job that ends early: one summary line

LONG = [*QUICK, "model.width=4", "train.epochs=6", "dataset.train_size=2048", "optimizer=sgd,sam"]
SAM_CELL = "synthetic-resnet18/sam-constant/batch_size=32,epochs=6,train_size=2048,width=4/seed=0"


def _wait_for(condition, timeout: float, what: str, process: subprocess.Popen, output: Path):
    deadline = time.time() + timeout
    while (found := condition()) is None:
        if process.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{output.read_text()[-4000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{output.read_text()[-4000:]}")
        time.sleep(0.2)
    return found


def _summary_of_a_sweep_with_one_job_ended(output: Path, process: subprocess.Popen, end_job) -> tuple[int, str]:
    """Waits for the SAM cell to train, ends its job with `end_job(run_dir)`, returns exit status and output."""
    run_dir = output.parent / "results" / "adhoc" / SAM_CELL
    _wait_for(lambda: True if (run_dir / ".lock").exists() else None, 300, "the SAM cell's lock", process, output)
    end_job(run_dir)
    try:
        process.wait(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the sweep hung:\n{output.read_text()[-4000:]}") from None
    return process.returncode, output.read_text()


@pytest.mark.slow
def test_a_killed_local_job_is_one_line_of_the_summary(tmp_path):
    output = tmp_path / "sweep.out"
    args = [*LONG, f"results_root={tmp_path / 'results'}", "hydra/launcher=local", "hydra.sweeper.live_every=0.5"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
    with open(output, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "launch.py"), "-m", *args], cwd=REPO, env=env, stdout=handle, stderr=handle
        )

    def kill(run_dir: Path) -> None:
        os.kill(json.loads((run_dir / ".lock").read_text())["pid"], signal.SIGKILL)

    code, out = _summary_of_a_sweep_with_one_job_ended(output, process, kill)
    assert code == 1, out
    assert "Traceback" not in out and "UncompletedJobError" not in out, out
    (line,) = [line for line in out.splitlines() if line.startswith("  UNFINISHED ")]
    assert re.fullmatch(
        rf"  UNFINISHED {re.escape(SAM_CELL)}: job \d+ was killed before the run returned \(log: /\S+_log\.err\)", line
    ), line
    summary = json.loads((tmp_path / "results" / "adhoc" / "sweep_summary.json").read_text())
    assert (summary["counts"]["completed"], summary["counts"]["unfinished"]) == (1, 1)
    assert f"{SAM_CELL}: stopped before the end (unfinished; a relaunch resumes it)" in out


def test_a_job_cancelled_before_it_started_is_still_a_line_of_the_summary(tmp_path):
    """Job 1 was cancelled while queued: it left no outcome record, only the launcher saw it end."""
    from runner.sweep import summary as sweep_summary

    sweep = tmp_path / "adhoc"
    done = {"status": "completed", "job_num": 0, "run_dir": str(sweep / CELL), "log": "a.log"}
    _write(sweep / ".outcomes" / "s1" / "0.json", json.dumps(done))
    ended = {
        "status": "unfinished",
        "job_num": 1,
        "job_id": "7_1",
        "run_dir": str(sweep / OTHER),
        "log": "/r/.submitit/7_1/7_1_0_log.err",
        "error": "SLURM job 7_1 was cancelled before the run returned",
    }
    summary = sweep_summary.summarize(sweep, "s1", ended=[ended])
    assert summary["counts"]["completed"] == 1 and summary["counts"]["unfinished"] == 1
    text = sweep_summary.format_summary(summary)
    assert (
        f"  UNFINISHED {OTHER}: SLURM job 7_1 was cancelled before the run returned "
        "(log: /r/.submitit/7_1/7_1_0_log.err)" in text.splitlines()
    ), text
    # A cell that recorded its own failure keeps it: the launcher's view does not replace it.
    failed = {**done, "status": "failed", "error": "RuntimeError: boom"}
    _write(sweep / ".outcomes" / "s1" / "0.json", json.dumps(failed))
    summary = sweep_summary.summarize(sweep, "s1", ended=[{**ended, "job_num": 0}])
    assert [f["error"] for f in summary["failures"]] == ["RuntimeError: boom"]
    assert sweep_summary.exit_status(summary) == 1


def test_a_requeued_cell_says_so_and_resumes(tmp_path):
    sweep = tmp_path / "demo"
    _plan(sweep, [CELL])
    log = live_text.EventLog()
    log.start(_cells(sweep))
    _write(sweep / ".outcomes" / "s1" / "0.json", json.dumps({"status": "unfinished", "job_num": 0}))
    _epochs(sweep / CELL, 1)
    assert log.lines(_cells(sweep))[:2] == [
        f"{CELL}: started",
        f"{CELL}: epoch 1/2 done (train err 49.0%, test err 59.0%)",
    ]
    # Preempted and requeued: the scheduler says the cell's job waits again.
    cells = _cells(sweep)
    cells[0]["state"] = "pending"
    assert log.lines(cells) == [f"{CELL}: pending again (requeued); it resumes from its checkpoint"]
    assert log.lines(cells) == []
    cells[0]["state"] = "running"
    assert log.lines(cells) == [f"{CELL}: running again"]


def test_on_slurm_the_table_shows_each_cells_job_and_its_state(tmp_path):
    sweep = tmp_path / "demo"
    _plan(sweep, [CELL, OTHER])
    plan = json.loads((sweep / "sweep_plan.json").read_text())
    _write(sweep / "sweep_plan.json", json.dumps({**plan, "launcher": "slurm"}))
    for task in ("7_0", "7_1"):
        (sweep / ".submitit" / task).mkdir(parents=True)
    _epochs(sweep / OTHER, 1)
    status = st.collect(sweep, scheduler=lambda ids: {"7_0": "PENDING", "7_1": "CANCELLED"})
    table = live_text.render_table(status, 80, 24)
    rows = {line.split()[0]: line.split() for line in table[3:]}
    assert rows["sgd-constant"][-2:] == ["7_0", "PD"] and rows["sgd-constant"][1] == "pending", table
    assert rows["sam-constant"][-2:] == ["7_1", "CA"] and rows["sam-constant"][1] == "unfinished", table
    assert table[0].startswith("2 cells: 1 pending, 1 unfinished; ETA "), table
