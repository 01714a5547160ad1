"""Atomic file writes, so a crash or a preemption never leaves a half-written record.

Every file the project writes for later reading (result.json, metrics.csv,
checkpoints) goes to a temporary file in the same folder first and is then
moved into place with `os.replace`, which is atomic on POSIX file systems.
`atomic_write` takes any writer of a binary handle (runner.training.checkpoint
passes torch.save); nothing here imports torch, so the orchestration writes
its files with it too.

Results folders are often shared (a lab's network storage), so every file gets
the mode the umask gives, as `open()` would (0644 under umask 022, 0664 under
002): `mkstemp` creates its file 0600 whatever the umask, so the temporary file
is chmod-ed before it is moved into place.

A writer killed between creating its temporary file and the replace leaves
`.<name>.<8 random chars>.tmp` behind; `remove_stale_temporaries` deletes those.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

# mkstemp's names: prefix, 8 characters of its alphabet, suffix (what atomic_write creates, nothing else).
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def _umask_from_proc() -> int | None:
    """The umask as Linux reports it (no change to it needed); None where /proc cannot tell."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return None


def _umask_by_setting() -> int:
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it; put it back at once
    os.umask(mask)
    return mask


# Where /proc cannot tell, read once at import (setting it briefly), before other threads create files.
_UMASK_AT_IMPORT = _umask_from_proc()
if _UMASK_AT_IMPORT is None:
    _UMASK_AT_IMPORT = _umask_by_setting()


def current_umask() -> int:
    """The process's umask, read without changing it (Linux /proc), else the one it had at import."""
    mask = _umask_from_proc()
    return _UMASK_AT_IMPORT if mask is None else mask


def file_mode() -> int:
    """The mode `open()` would give a new file now: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through `write(handle)` on a temporary file beside it, then replace it; OSError names `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as error:  # name the file the user knows, not the temporary one
        _remove(tmp_name)
        if error.filename in (None, tmp_name):
            error.filename = str(path)
        raise
    except BaseException:
        _remove(tmp_name)
        raise


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the new one."""
    atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON atomically; NaN/inf are refused so records stay valid JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=str)
    atomic_write_text(path, text + "\n")


def remove_stale_temporaries(folder: str | os.PathLike, older_than_s: float = 0.0) -> list[Path]:
    """Delete the `.<name>.<random>.tmp` files killed writers left in `folder` (not below); returns them.

    Only names of exactly the pattern `atomic_write` creates are touched, and
    only regular files. The default age limit is zero because the runner calls
    this under the cell's lock, where no other writer of the cell's files
    exists; even so, removing a temporary file under a live writer only makes
    that writer's replace fail, never damages the file it was replacing.
    Callers without such a lock can pass `older_than_s` to spare files written
    in the last seconds. Files that cannot be removed are left (they are
    clutter, not worth failing a run for).
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if not _TEMPORARY.match(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if older_than_s > 0 and now - entry.stat(follow_symlinks=False).st_mtime < older_than_s:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by `atomic_write_json`."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def safe_load_yaml(stream: str | IO[str]) -> Any:
    """`yaml.safe_load` through libyaml's C parser where PyYAML was built with it.

    The same safe loader (plain data, never objects), about fifteen times faster: a
    sweep's live view reads every running cell's config.yaml every two seconds, and
    with the pure-Python parser that took an eighth of a core for a 54-cell sweep
    (bench/bench_live_poll.py).
    """
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(stream, Loader=loader)  # noqa: S506 (a safe loader, C or Python)
