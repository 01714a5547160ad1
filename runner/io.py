"""Atomic file writes, so a crash or a preemption never leaves a half-written record.

Every file the project writes for later reading (result.json, metrics.csv,
checkpoints) goes to a temporary file in the same folder first and is then
moved into place with `os.replace`, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the new one."""
    _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 `text` to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON atomically; NaN/inf are refused so records stay valid JSON."""
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=False, default=str)
    atomic_write_text(path, text + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """`torch.save` through a temporary file, for checkpoints that must survive a kill."""
    _atomic_write(path, lambda handle: torch.save(obj, handle))


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by `atomic_write_json`."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
