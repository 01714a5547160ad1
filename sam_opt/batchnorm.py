"""Keep BatchNorm running statistics out of SAM's second forward pass.

The pass at w + e normalises with batch statistics, but running statistics
must end the step as one forward pass at w left them: `frozen_bn_stats`
snapshots and restores them (docs/sam_opt.md, "BatchNorm statistics", says
why restoring rather than toggling momentum).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from sam_opt.foreach import clones, group_by_device_dtype

_RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")


def running_stat_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The running-statistics buffers of every normalisation layer in `model` that tracks them."""
    buffers = []
    for module in model.modules():
        # Plain attributes and registered buffers, read without nn.Module.__getattr__ (slow on a miss).
        if not module.__dict__.get("track_running_stats", False):
            continue
        for name in _RUNNING_STATS:
            buffer = module._buffers.get(name)
            if isinstance(buffer, torch.Tensor):
                buffers.append(buffer)
    return buffers


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module | None) -> Iterator[None]:
    """Run the body with BatchNorm running statistics restored afterwards.

    Forward passes inside still normalise with batch statistics (in training
    mode), but on exit every running mean, variance and batch counter is back
    to its value at entry. The backward pass of the body needs no special care.
    `model=None` makes this a no-op, so callers need not branch.
    """
    buffers = running_stat_buffers(model) if model is not None else []
    buckets = [bucket[0] for bucket in group_by_device_dtype(buffers)]
    with torch.no_grad():
        saved = [clones(bucket) for bucket in buckets]
    try:
        yield
    finally:
        with torch.no_grad():
            for bucket, snapshot in zip(buckets, saved):
                torch._foreach_copy_(bucket, snapshot)
