"""Checkpoints that make a resumed run bitwise equal to an uninterrupted one (on the CPU).

One is written at each epoch end and, when a preemption or timeout signal
arrives (`runner.training.preemption`), after the optimizer step it arrived in. It holds
everything the rest of the run depends on: weights and buffers, the optimizer
(base state such as momentum, and each group's lr/rho), the position in the
schedule (the global step), every RNG the run draws from, the metrics so far
and the config it was written under. The data order needs no state: the
pipelines derive each epoch's order from (seed, epoch) and can start an epoch
at any batch. A mid-epoch checkpoint adds, per rank, the running sums of the
epoch in progress (`epoch_in_progress`: loss and error sums, the first
non-finite step, examples and batches done), so the resumed epoch starts at
the next batch and reports the means of an epoch trained in one go.

Checkpoints sit in results folders that other people share, so they are data,
never code: everything is saved in forms `torch.load(weights_only=True)`
accepts (tensors, and dicts/lists/tuples of str, int, float, bool, None; the
Python and NumPy RNG states are converted to those), and every load uses
`weights_only=True`, whose unpickler refuses any other global. A file that
cannot be read that way (truncated, not a checkpoint, a pickle naming foreign
functions) raises `CorruptCheckpoint`; `quarantine` moves it aside so the run
can start over and the evidence stays.
"""

from __future__ import annotations

import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import torch.nn as nn

from runner.folder import CHECKPOINT_FILE, MODEL_FILE
from runner.io import atomic_write
from runner.sweep.cell_state import set_aside
from sharpness.model_state import unwrap  # one copy, in the library; the runner may import it

# The keys `load_checkpoint` needs; a readable file without them is not a checkpoint of this project.
_REQUIRED_KEYS = ("model", "optimizer", "epoch", "step", "wall_time_s", "metrics", "rng")


class CorruptCheckpoint(Exception):
    """A checkpoint file that cannot be loaded safely; one line naming the file and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: unreadable checkpoint ({reason}); move it aside or delete it to start the run over"
        )


@dataclass
class Progress:
    """Where a run stands: epochs finished, optimizer steps taken, and what it measured so far.

    `epoch_in_progress` is set when the checkpoint was written inside epoch
    `epoch` (0-based): one `EpochSums.state()` per rank, in rank order.
    """

    epoch: int = 0
    step: int = 0
    wall_time_s: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    epoch_in_progress: list[dict[str, Any]] | None = None


class _Recording:
    """A file handle that keeps what a failed write raised, which torch's zip writer would replace.

    The writer calls `write` from C++ and turns whatever it raises into `RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos`, naming nothing: a full disk (OSError), and also a Ctrl-C or a
    requeue's exit that Python delivers inside the call (KeyboardInterrupt, SystemExit). An interrupt
    turned into a RuntimeError would be recorded as a failed run instead of stopping it, so the
    original is kept here and raised again in its place.
    """

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except BaseException as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def _torch_save(obj: Any, handle: IO[bytes], path: Path) -> None:
    recording = _Recording(handle)
    try:
        torch.save(obj, recording)
        handle.flush()
    except OSError as error:
        error.filename = error.filename or str(path)
        raise
    except RuntimeError as error:
        if recording.error is None:
            # The interrupt can also land outside the recorded call: at the first instruction of
            # `write`, or in torch.save's own Python code, and the writer's exit then fails on the
            # half-written entry. Python keeps the interrupt as the RuntimeError's context.
            if isinstance(error.__context__, (KeyboardInterrupt, SystemExit)):
                raise error.__context__ from None
            raise
        if isinstance(recording.error, OSError):
            raise OSError(recording.error.errno, recording.error.strerror, str(path)) from None
        raise recording.error from None


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """`torch.save` through a temporary file, for checkpoints that must survive a kill.

    A write the disk refuses (full, over quota, over the file size limit) raises
    OSError naming `path` and the reason, not torch's zip writer's message.
    """
    atomic_write(path, lambda handle: _torch_save(obj, handle, Path(path)))


def _rng_states() -> dict[str, Any]:
    """Every RNG the run draws from, as tensors and plain numbers (what a weights-only load accepts)."""
    version, python_state, gauss_next = random.getstate()
    kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    states: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(python_state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(numpy_keys, dtype=np.int64)),
            "pos": int(numpy_pos),
            "has_gauss": int(numpy_has_gauss),
            "cached_gaussian": float(numpy_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    python = states["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), python["gauss_next"]))
    numpy = states["numpy"]
    np.random.set_state(
        (
            numpy["kind"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _plain(value: Any) -> Any:
    """`value` with NumPy scalars turned into Python numbers, so a weights-only load accepts it."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: Progress,
    config: dict,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> Path:
    path = Path(run_dir) / CHECKPOINT_FILE
    atomic_torch_save(
        path,
        {
            "model": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": progress.epoch,
            "step": progress.step,
            "wall_time_s": progress.wall_time_s,
            "metrics": _plain(progress.metrics),
            "rng": _rng_states(),
            "config": _plain(config),
            "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,
            "epoch_in_progress": progress.epoch_in_progress,
        },
    )
    return path


def _reason(error: Exception) -> str:
    """Why torch could not load a file, in a few words on one line."""
    text = str(error)
    foreign = re.search(r"GLOBAL ([\w.]+)", text)
    if foreign:
        return f"it names {foreign.group(1)}, which a checkpoint never holds; refused without running it"
    if "Weights only load failed" in text:
        detail = re.search(r"(Unsupported operand \w+|Unsupported class \S+)", text)
        return "a pickle that is not plain tensors and data" + (f" ({detail.group(1)})" if detail else "")
    if "central directory" in text or "zip archive" in text:
        return "truncated or not a torch file (its zip directory is unreadable)"
    if isinstance(error, OSError):  # torch's zip reader seeking past the end of a cut file, an I/O error
        return f"truncated or damaged ({error.strerror or error})"
    if "mmap can only be used" in text or isinstance(error, KeyError):
        return "not a torch zip file"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:120]}" if first else type(error).__name__


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at `path` as a dict, loaded weights-only; CorruptCheckpoint when it is not one.

    A missing file, a folder or a file without read permission raises its
    OSError: those are not corrupt, and moving them aside would not help.
    """
    path = Path(path)
    with open(path, "rb") as handle:  # OSErrors of a missing or unreadable file propagate here
        magic = handle.read(4)
    if magic != b"PK\x03\x04":  # torch.save writes zip files; older raw pickles are not fed to any unpickler
        raise CorruptCheckpoint(path, "not a torch zip file" + ("; it is empty" if not magic else ""))
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        raise
    except Exception as error:  # truncated zip, not a zip, refused globals, bad pickle opcodes, ...
        raise CorruptCheckpoint(path, _reason(error)) from None
    if not isinstance(state, dict):
        raise CorruptCheckpoint(path, f"it holds a {type(state).__name__}, not a checkpoint dict")
    missing = [key for key in _REQUIRED_KEYS if key not in state]
    if missing:
        raise CorruptCheckpoint(path, f"no {', '.join(missing)} in it; not a checkpoint of this project")
    return state


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> Progress:
    """Restore model, optimizer, loss scale and RNGs from `path`; returns where to continue.

    Raises CorruptCheckpoint (before touching model or optimizer) when the file cannot be read safely.
    """
    return restore(read_checkpoint(path), model, optimizer, grad_scaler)


def restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_scaler: torch.amp.GradScaler | None = None,
) -> Progress:
    """Load a checkpoint read by `read_checkpoint` into model, optimizer, loss scale and RNGs."""
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if grad_scaler is not None and state.get("grad_scaler"):
        grad_scaler.load_state_dict(state["grad_scaler"])
    _restore_rng_states(state["rng"])
    return Progress(
        state["epoch"], state["step"], state["wall_time_s"], list(state["metrics"]), state.get("epoch_in_progress")
    )


def checkpoint_config(path: Path) -> dict | None:
    """The config a checkpoint was written under; None when there is no checkpoint (or it stored none).

    Raises CorruptCheckpoint when the file exists but cannot be read safely.
    """
    try:
        return read_checkpoint(path, mmap=True).get("config")
    except FileNotFoundError:
        return None


def quarantine(path: str | os.PathLike) -> Path:
    """Move an unreadable checkpoint aside to `<name>.corrupt-<UTC time>`, keeping it for inspection."""
    return set_aside(Path(path))


def save_final_model(run_dir: Path, model: nn.Module) -> Path:
    path = Path(run_dir) / MODEL_FILE
    atomic_torch_save(path, unwrap(model).state_dict())
    return path
