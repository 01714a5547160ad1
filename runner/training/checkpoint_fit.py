"""Whether a readable checkpoint belongs to the cell about to resume from it.

`checkpoint.read_checkpoint` guarantees plain data with the right top-level
keys; a file of plain data can still hold anything (copied from another cell,
edited by hand, crafted). Before any of it is loaded, its contents are checked
against the cell: the weights' names and shapes, the optimizer's groups and
per-parameter state, the counters within the schedule (an `epoch` of 999 in a
one-epoch cell would otherwise be recorded as a finished run), the metrics,
the running sums of a mid-epoch checkpoint and the RNG states. `mismatch`
returns the first reason it does not fit, for `CorruptCheckpoint`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from sharpness.model_state import unwrap

_SUM_KEYS = ("loss", "errors", "first_bad", "examples", "steps")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _weights(state: Any, model: nn.Module) -> str | None:
    if not isinstance(state, Mapping):
        return "its model weights are not a mapping"
    expected = unwrap(model).state_dict()
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        named = (missing or extra)[0]
        return f"its weights do not fit this cell's model ({'no' if missing else 'an unknown'} tensor {named!r})"
    for key, tensor in expected.items():
        stored = state[key]
        if not isinstance(stored, torch.Tensor) or stored.shape != tensor.shape:
            shape = tuple(stored.shape) if isinstance(stored, torch.Tensor) else type(stored).__name__
            return f"its weight {key!r} is {shape}, this cell's model has {tuple(tensor.shape)}"
    return None


def _optimizer(state: Any, optimizer: torch.optim.Optimizer) -> str | None:
    if not isinstance(state, Mapping) or not isinstance(state.get("param_groups"), list):
        return "its optimizer state has no parameter groups"
    groups = state["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        return f"its optimizer has {len(groups)} parameter groups, this cell's {len(optimizer.param_groups)}"
    shapes: dict[int, torch.Size] = {}
    for group, ours in zip(groups, optimizer.param_groups):
        if not isinstance(group, Mapping) or not isinstance(group.get("params"), list):
            return "its optimizer groups list no parameters"
        if len(group["params"]) != len(ours["params"]):
            return "its optimizer groups hold other parameters than this cell's"
        shapes.update(zip(group["params"], (p.shape for p in ours["params"])))
    per_parameter = state.get("state", {})
    if not isinstance(per_parameter, Mapping):
        return "its optimizer's per-parameter state is not a mapping"
    for index, entry in per_parameter.items():
        if index not in shapes or not isinstance(entry, Mapping):
            return f"its optimizer holds state for parameter {index!r}, which this cell does not have"
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shapes[index]:
                return (
                    f"its optimizer's {name} of parameter {index} is {tuple(value.shape)}, not {tuple(shapes[index])}"
                )
    return None


def _counters(state: Mapping[str, Any], schedule: Any) -> str | None:
    epoch, step, wall = state["epoch"], state["step"], state["wall_time_s"]
    if not _count(epoch) or epoch > schedule.epochs:
        return f"epoch={epoch!r} is not an epoch of this cell's {schedule.epochs}"
    if not _count(step):
        return f"step={step!r} is not a step count"
    ranks = state.get("epoch_in_progress")
    start = schedule.epoch_start_step(epoch) if epoch < schedule.epochs else schedule.total_steps
    if ranks is None and step != start:
        return f"step={step} does not match epoch={epoch} (which ends at step {start})"
    if ranks is not None:
        # A signal during an epoch's last step stops after it: the step may be the epoch's end.
        if epoch >= schedule.epochs or not start <= step <= start + schedule.steps_in_epoch(epoch):
            return f"step={step} is not inside epoch {epoch + 1} of this cell"
        problem = _sums(ranks)
        if problem:
            return problem
        if any(sums["steps"] != step - start for sums in ranks):
            return f"epoch_in_progress counts other steps than step={step} (epoch {epoch + 1} starts at {start})"
    if not isinstance(wall, (int, float)) or isinstance(wall, bool) or not math.isfinite(wall) or wall < 0:
        return f"wall_time_s={wall!r} is not a duration"
    metrics = state["metrics"]
    if not isinstance(metrics, list) or len(metrics) != epoch or not all(isinstance(m, Mapping) for m in metrics):
        return f"its metrics are not one row per finished epoch ({epoch})"
    return None


def _sums(ranks: Any) -> str | None:
    if not isinstance(ranks, list) or not ranks:
        return "epoch_in_progress is not a list of per-rank sums"
    for sums in ranks:
        if not isinstance(sums, Mapping) or any(key not in sums for key in _SUM_KEYS):
            return f"epoch_in_progress lacks the running sums ({', '.join(_SUM_KEYS)})"
        if not all(isinstance(sums[key], torch.Tensor) and sums[key].dim() == 0 for key in _SUM_KEYS[:3]):
            return "epoch_in_progress holds sums that are not single numbers"
        if not (_count(sums["examples"]) and _count(sums["steps"])):
            return "epoch_in_progress holds counts that are not counts"
    return None


def _rng(states: Any) -> str | None:
    reference = torch.get_rng_state()
    try:
        python, numpy = states["python"], states["numpy"]
        ok = (
            isinstance(python["version"], int)
            and isinstance(python["state"], torch.Tensor)
            and python["state"].shape == (625,)
            and isinstance(numpy["kind"], str)
            and isinstance(numpy["keys"], torch.Tensor)
            and numpy["keys"].shape == (624,)
            and _count(numpy["pos"])
            and isinstance(states["torch"], torch.Tensor)
            and states["torch"].shape == reference.shape
            and states["torch"].dtype == reference.dtype
        )
    except (KeyError, TypeError, IndexError):
        ok = False
    return None if ok else "its RNG states are not those of a run (python, numpy, torch)"


def mismatch(state: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any) -> str | None:
    """The first reason `state` (a checkpoint read weights-only) does not belong to this cell, or None."""
    for problem in (
        _counters(state, schedule),
        _weights(state["model"], model),
        _optimizer(state["optimizer"], optimizer),
        _rng(state["rng"]),
    ):
        if problem:
            return problem
    return None
