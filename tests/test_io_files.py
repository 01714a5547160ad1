"""Files for shared storage: the umask's mode on every writer, atomic replaces, killed writers' leftovers removed."""

from __future__ import annotations

import io as io_module
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from runner import io
from runner.training import checkpoint

WRITERS = {
    "text": lambda path: io.atomic_write_text(path, "hello\n"),
    "json": lambda path: io.atomic_write_json(path, {"a": 1}),
    "bytes": lambda path: io.atomic_write_bytes(path, b"\x00\x01"),
    "torch": lambda path: checkpoint.atomic_torch_save(path, {"w": torch.zeros(2)}),
}


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_and_replaced_files_get_the_umask_mode(
    tmp_path: Path, umask, writer: str, mask: int, expected: int
) -> None:
    umask(mask)
    path = tmp_path / f"out.{writer}"
    WRITERS[writer](path)
    assert _mode(path) == expected, oct(_mode(path))
    path.chmod(0o600)  # a file an older version wrote: replacing it gives the umask's mode too
    WRITERS[writer](path)
    assert _mode(path) == expected
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temporary file left


def test_umask_of_a_fresh_process_is_honoured(tmp_path: Path) -> None:
    """A job started under umask 002 (a group-shared results folder) writes group-writable records."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        import importlib.util
        spec = importlib.util.spec_from_file_location("rio", sys.argv[1])
        rio = importlib.util.module_from_spec(spec); spec.loader.exec_module(rio)
        rio.atomic_write_json(sys.argv[2], {{"status": "completed"}})
    """)
    target = tmp_path / "result.json"
    subprocess.run(
        ["sh", "-c", 'umask 002 && exec "$0" "$@"', sys.executable, "-c", script, str(Path(io.__file__)), str(target)],
        check=True,
        timeout=120,
    )
    assert _mode(target) == 0o664


def test_current_umask_reads_without_changing_it(umask) -> None:
    umask(0o027)
    assert io.current_umask() == 0o027
    assert os.umask(0o027) == 0o027  # still what it was
    assert io.file_mode() == 0o640


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.atomic_torch_save(path, {"epoch": 1})
    before = path.read_bytes()
    with pytest.raises(Exception):
        checkpoint.atomic_torch_save(path, {"epoch": 2, "bad": lambda: None})  # lambdas cannot be pickled
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


class _InterruptedFile(io_module.BytesIO):
    """A file whose `at`-th write is where Ctrl-C lands: Python's SIGINT handler raises KeyboardInterrupt there.

    Raised directly rather than through a real signal, whose disposition a test runner's worker may have
    changed (pytest-xdist's ignore SIGINT).
    """

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.writes = at, 0

    def write(self, data) -> int:
        self.writes += 1
        if self.writes == self.at:
            raise KeyboardInterrupt
        return super().write(data)


@pytest.mark.parametrize("at", range(1, 12))
def test_ctrl_c_while_a_checkpoint_is_written_stays_an_interrupt(tmp_path: Path, at: int) -> None:
    """torch's zip writer turns most exceptions of a write into `RuntimeError: unexpected pos`: a Ctrl-C
    landing there must still stop the run (not be recorded as a failed one)."""
    state = {f"layer{i}": torch.zeros(64) for i in range(4)}
    with pytest.raises(KeyboardInterrupt):
        checkpoint._torch_save(state, _InterruptedFile(at), tmp_path / "checkpoint.pt")


class _InterruptedOnEntry(checkpoint._Recording):
    """A recording file whose `at`-th write is interrupted before its first line runs, as when Python's
    signal check at a call's first instruction raises KeyboardInterrupt: outside the recorded call."""

    def __init__(self, handle, at: int) -> None:
        super().__init__(handle)
        self.at, self.writes = at, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes == self.at:
            raise KeyboardInterrupt
        return super().write(data)


@pytest.mark.parametrize("at", range(1, 12))
def test_ctrl_c_at_the_entry_of_a_write_stays_an_interrupt(tmp_path: Path, monkeypatch, at: int) -> None:
    """The zip writer's exit then fails on the half-written entry (`unexpected pos`) with the interrupt
    as its context only: the run must still stop, not be recorded as failed."""
    monkeypatch.setattr(checkpoint, "_Recording", lambda handle: _InterruptedOnEntry(handle, at))
    state = {f"layer{i}": torch.zeros(64) for i in range(4)}
    with pytest.raises(KeyboardInterrupt):
        checkpoint._torch_save(state, io_module.BytesIO(), tmp_path / "checkpoint.pt")


def _leftover_of_a_killed_writer(folder: Path, name: str) -> Path:
    """Start a writer in a real process, kill it inside the write, return the temporary file it left."""
    script = textwrap.dedent("""
        import os, sys, tempfile, time
        fd, name = tempfile.mkstemp(prefix=f".{sys.argv[2]}.", suffix=".tmp", dir=sys.argv[1])
        os.write(fd, b"half a checkpoint")
        print(name, flush=True)
        time.sleep(60)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script, str(folder), name], stdout=subprocess.PIPE, text=True)
    left = Path(writer.stdout.readline().strip())
    writer.kill()
    writer.wait()
    writer.stdout.close()
    return left


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path: Path) -> None:
    left = [_leftover_of_a_killed_writer(tmp_path, name) for name in ("checkpoint.pt", "metrics.csv")]
    assert all(path.exists() and io._TEMPORARY.match(path.name) for path in left)
    keep = [
        "checkpoint.pt",
        "result.json",
        ".lock",
        "notes.tmp",
        ".notes.tmp",
        ".x.abc.tmp",
        ".result.json.ABCDEFGH.tmp",
        ".lock-claim-0a1b2c",
    ]
    for name in keep:
        (tmp_path / name).write_text("keep")
    (tmp_path / ".folder.abcdefgh.tmp").mkdir()  # the pattern, but not a file
    removed = io.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(left)
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, ".folder.abcdefgh.tmp"])


def test_recent_temporaries_are_spared_when_asked(tmp_path: Path) -> None:
    old, fresh = tmp_path / ".metrics.csv.abcd1234.tmp", tmp_path / ".result.json.efgh5678.tmp"
    old.write_text("old")
    fresh.write_text("fresh")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert io.remove_stale_temporaries(tmp_path, older_than_s=60) == [old]
    assert fresh.exists() and not old.exists()
    assert io.remove_stale_temporaries(tmp_path / "missing") == []
