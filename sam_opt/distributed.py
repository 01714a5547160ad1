"""DistributedDataParallel support: local passes, then one average of the final direction.

Both passes run under `no_sync()` (each worker perturbs with its own gradient),
and the directions are averaged once before the base step: one all-reduce per
step, as plain DDP (docs/sam_opt.md).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sam_opt.foreach import group_by_device_dtype

BUCKET_BYTES = 32 * 2**20  # all-reduce in flat buffers of about this size, like DDP's buckets


def find_ddp(model: nn.Module | None) -> DistributedDataParallel | None:
    """The DDP wrapper of `model`, looking through `torch.compile`'s wrapper; None without DDP."""
    while model is not None and not isinstance(model, DistributedDataParallel):
        model = getattr(model, "_orig_mod", None)
    return model


def local_gradients(model: nn.Module | None) -> contextlib.AbstractContextManager:
    """`model.no_sync()` for a DDP model (gradients stay per worker), else a no-op."""
    ddp = find_ddp(model)
    return ddp.no_sync() if ddp is not None else contextlib.nullcontext()


def _flat_buckets(tensors: list[torch.Tensor], bucket_bytes: int) -> list[list[torch.Tensor]]:
    buckets = []
    for same_kind in group_by_device_dtype(tensors):
        current: list[torch.Tensor] = []
        size = 0
        for tensor in same_kind[0]:
            nbytes = tensor.numel() * tensor.element_size()
            if current and size + nbytes > bucket_bytes:
                buckets.append(current)
                current, size = [], 0
            current.append(tensor)
            size += nbytes
        if current:
            buckets.append(current)
    return buckets


def all_reduce_mean_(
    tensors: list[torch.Tensor],
    group: dist.ProcessGroup | None = None,
    bucket_bytes: int = BUCKET_BYTES,
) -> None:
    """Replace each tensor by its mean over the workers of `group`, in place.

    Tensors are packed into flat buffers (one collective per ~32 MiB instead of
    one per parameter) and summed; the division by the world size happens once
    per buffer. Every worker must pass the same tensors in the same order.
    """
    world_size = dist.get_world_size(group)
    if world_size == 1:
        return
    for bucket in _flat_buckets(tensors, bucket_bytes):
        flat = torch.cat([tensor.reshape(-1) for tensor in bucket])
        dist.all_reduce(flat, group=group)
        flat.div_(world_size)
        chunks = flat.split([tensor.numel() for tensor in bucket])
        torch._foreach_copy_(bucket, [chunk.view_as(tensor) for chunk, tensor in zip(chunks, bucket)])
