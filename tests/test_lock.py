"""The per-cell lock: one winner among racing processes, stale locks taken over, live ones refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runner.sweep.lock import LOCK_FILE, CellBusy, CellLock, lock_holder

LOCK_MODULE = Path(__file__).resolve().parents[1] / "runner" / "sweep" / "lock.py"

# A contender: loads runner/sweep/lock.py alone (no torch import, so it starts fast), waits for the start
# signal, tries the lock once, reports, and keeps a won lock until told to let go.
CONTENDER = textwrap.dedent("""
    import importlib.util, os, sys, time
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("celllock", sys.argv[1])
    lock = importlib.util.module_from_spec(spec); spec.loader.exec_module(lock)
    cell, signals = Path(sys.argv[2]), Path(sys.argv[3])
    (signals / f"ready-{os.getpid()}").touch()
    while not (signals / "go").exists():
        time.sleep(0.001)
    try:
        held = lock.CellLock(cell).acquire()
    except lock.CellBusy as busy:
        print("busy:", busy, flush=True)
        sys.exit(3)
    print("won", flush=True)
    while not (signals / "done").exists():
        time.sleep(0.01)
    held.release()
""")


def _dead_pid() -> int:
    """The pid of a process that ran and has been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _write_lock(run_dir: Path, name: str = LOCK_FILE, **fields) -> dict:
    record = {
        "host": socket.gethostname(),
        "pid": _dead_pid(),
        "slurm_job_id": None,
        "started": time.time() - 60,
        "token": "a1b2c3d4",
        **fields,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / name).write_text(json.dumps(record))
    return record


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests decide which SLURM job they run in (none unless they say so)."""
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)


def _race(cell: Path, signals: Path, contenders: int) -> list[subprocess.CompletedProcess]:
    signals.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(LOCK_MODULE), str(cell), str(signals)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(contenders)
    ]
    deadline = time.time() + 60
    while len(list(signals.glob("ready-*"))) < contenders and time.time() < deadline:
        time.sleep(0.01)
    (signals / "go").touch()
    # Losers exit at once; the winner waits for "done", so it still holds while the others try.
    deadline = time.time() + 60
    while sum(p.poll() is not None for p in procs) < contenders - 1 and time.time() < deadline:
        time.sleep(0.01)
    (signals / "done").touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def test_racing_processes_exactly_one_wins(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    results = _race(cell, tmp_path / "signals", contenders=4)
    assert [r.stdout.strip() for r in results].count("won") == 1, [(r.stdout, r.stderr) for r in results]
    assert sorted(r.returncode for r in results) == [0, 3, 3, 3], [r.stderr for r in results]
    assert all("is being trained by pid" in r.stdout for r in results if r.returncode == 3)
    assert not (cell / LOCK_FILE).exists()  # the winner released it
    assert os.listdir(cell) == []  # no claim or marker files left behind


def test_racing_takers_of_a_stale_lock_exactly_one_wins(tmp_path: Path) -> None:
    cell = tmp_path / "cell"
    _write_lock(cell)  # its process is gone: every contender wants to take it over
    results = _race(cell, tmp_path / "signals", contenders=4)
    assert [r.stdout.strip() for r in results].count("won") == 1, [(r.stdout, r.stderr) for r in results]
    assert sorted(r.returncode for r in results) == [0, 3, 3, 3], [r.stderr for r in results]
    assert os.listdir(cell) == []


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    stale = _write_lock(tmp_path)
    assert lock_holder(tmp_path) is None
    with CellLock(tmp_path):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["token"] != stale["token"]
        assert record["host"] == socket.gethostname() and record["started"] <= time.time()
        assert lock_holder(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / LOCK_FILE).exists()


def test_live_lock_refuses_with_one_line(tmp_path: Path) -> None:
    holder = subprocess.Popen(["sleep", "30"])
    try:
        _write_lock(tmp_path, pid=holder.pid, slurm_job_id=None)
        with pytest.raises(CellBusy) as caught:
            CellLock(tmp_path).acquire()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith(
            f"{tmp_path.resolve()} is being trained by pid {holder.pid} on host {socket.gethostname()} since "
        )
        assert message.endswith(f"; wait for it, or delete {tmp_path.resolve() / LOCK_FILE} if that process is gone")
        assert lock_holder(tmp_path)["pid"] == holder.pid
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid  # untouched
    finally:
        holder.kill()
        holder.wait()
    with CellLock(tmp_path):  # the holder is gone now
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_waiting_gets_the_lock_when_the_holder_finishes(tmp_path: Path) -> None:
    holder = subprocess.Popen(["sleep", "0.5"])
    _write_lock(tmp_path, pid=holder.pid)
    started = time.monotonic()
    with CellLock(tmp_path, wait_s=20, poll_s=0.1):
        assert time.monotonic() - started >= 0.3
    holder.wait()


def test_message_names_the_slurm_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # CI runs a real SLURM; a squeue that cannot reach its controller leaves the lock undecidable.
    _fake_squeue(tmp_path / "bin", UNREACHABLE_SQUEUE, monkeypatch)
    _write_lock(tmp_path / "cell", host="some-other-node", pid=1234, slurm_job_id="777_3")
    with pytest.raises(CellBusy, match=r"by pid 1234 on host some-other-node \(SLURM job 777_3\) since "):
        CellLock(tmp_path / "cell").acquire()  # squeue cannot say: it counts as live


def test_requeued_slurm_job_takes_over_its_own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_squeue(tmp_path / "bin", UNREACHABLE_SQUEUE, monkeypatch)
    tmp_path = tmp_path / "cell"
    _write_lock(tmp_path, host="node-that-ran-it-first", pid=4321, slurm_job_id="9001", slurm_restart_count=0)
    monkeypatch.setenv("SLURM_JOB_ID", "9001")
    with pytest.raises(CellBusy):  # same job, same run of it (another step or rank): live
        CellLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued: the old run is over
    with CellLock(tmp_path):
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["slurm_job_id"] == "9001" and record["slurm_restart_count"] == 1
        assert record["pid"] == os.getpid()


def test_array_task_is_named_array_id_underscore_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "5008")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "5000")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "8")
    with CellLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["slurm_job_id"] == "5000_8"


UNREACHABLE_SQUEUE = 'echo "slurm_load_jobs error: Unable to contact slurm controller" >&2\nexit 1\n'


def _fake_squeue(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `squeue` on PATH that answers as the real one does for the job states under test."""
    folder.mkdir()
    squeue = folder / "squeue"
    squeue.write_text("#!/bin/sh\n" + script)
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.parametrize(
    "script, live",
    [
        ('[ "$3" = 555 ] && echo RUNNING\n', True),
        ('[ "$3" = 555 ] && echo PENDING\n', True),
        ('[ "$3" = 555 ] && echo COMPLETED\n', False),
        ("exit 0\n", False),  # squeue knows no such job: it finished long ago
        ('echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1\n', False),
        ('echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1\n', True),
    ],
)
def test_other_jobs_lock_follows_squeue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, live: bool
) -> None:
    cell = tmp_path / "cell"
    _write_lock(cell, host="another-node", pid=99, slurm_job_id="555")
    _fake_squeue(tmp_path / "bin", script, monkeypatch)
    assert (lock_holder(cell) is not None) == live
    if live:
        with pytest.raises(CellBusy, match="SLURM job 555"):
            CellLock(cell).acquire()
    else:
        with CellLock(cell):
            assert json.loads((cell / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_other_host_without_slurm_counts_as_live(tmp_path: Path) -> None:
    _write_lock(tmp_path, host="another-node", pid=99)
    assert lock_holder(tmp_path)["host"] == "another-node"
    with pytest.raises(CellBusy):
        CellLock(tmp_path).acquire()


def test_release_keeps_someone_elses_lock(tmp_path: Path) -> None:
    lock = CellLock(tmp_path).acquire()
    other = _write_lock(tmp_path, host="another-node", pid=99, token="0therholder")  # replaced meanwhile
    lock.release()
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == other


def test_reentrant_in_the_holding_process(tmp_path: Path) -> None:
    with CellLock(tmp_path):
        token = json.loads((tmp_path / LOCK_FILE).read_text())["token"]
        with CellLock(tmp_path):  # e.g. a helper that takes the lock itself
            assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == token
        assert (tmp_path / LOCK_FILE).exists()  # the outer use still holds it
    assert not (tmp_path / LOCK_FILE).exists()
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        CellLock(tmp_path).release()


def test_lock_left_by_a_dead_process_with_our_pid_is_stale(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=os.getpid())  # containers reuse pids across restarts
    assert lock_holder(tmp_path) is None
    with CellLock(tmp_path):
        pass


def test_unreadable_lock_file_is_taken_over(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_bytes(b"\x00not json")
    assert lock_holder(tmp_path) is None
    with CellLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_marker_of_a_taker_killed_half_way_is_taken_over(tmp_path: Path) -> None:
    stale = _write_lock(tmp_path)
    _write_lock(tmp_path, name=f".lock-takeover-{stale['token']}", token="deadtaker1")
    with CellLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
        assert sorted(os.listdir(tmp_path)) == [LOCK_FILE]


def test_live_taker_in_progress_means_busy(tmp_path: Path) -> None:
    stale = _write_lock(tmp_path)
    holder = subprocess.Popen(["sleep", "30"])
    try:
        _write_lock(tmp_path, name=f".lock-takeover-{stale['token']}", token="livetaker1", pid=holder.pid)
        with pytest.raises(CellBusy, match=f"pid {holder.pid}"):
            CellLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
