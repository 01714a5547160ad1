"""Multi-tensor arithmetic for SAM and GSAM, without reading anything back to the host.

Every per-parameter operation of the optimizers goes through `torch._foreach_*`
kernels over lists of tensors that share one device and dtype, so a step costs
a fixed number of kernel launches per (param group, device, dtype) bucket
instead of several per parameter. Scalars that come from tensors (norms, inner
products, the perturbation scale) stay 0-dim tensors on the device: nothing
here calls `.item()` or turns a tensor into a Python number, so a step never
waits for the device and can be captured in a CUDA graph.
"""

from __future__ import annotations

import torch
from torch import Tensor

TensorList = list[Tensor]


def group_by_device_dtype(keys: TensorList, *others: TensorList) -> list[tuple[TensorList, ...]]:
    """Split parallel lists into buckets whose `keys` share a device and dtype.

    Foreach kernels take their fast multi-tensor path only for lists on one
    device with one dtype; mixed lists would fall back to one kernel per tensor.
    The order inside a bucket is the input order, so results are deterministic.
    """
    buckets: dict[tuple[torch.device, torch.dtype], tuple[TensorList, ...]] = {}
    for index, key in enumerate(keys):
        bucket = buckets.setdefault((key.device, key.dtype), tuple([] for _ in range(1 + len(others))))
        bucket[0].append(key)
        for position, other in enumerate(others, start=1):
            bucket[position].append(other[index])
    return list(buckets.values())


def squared_norm(tensors: TensorList) -> Tensor:
    """Sum of squares of all elements of all `tensors`, a 0-dim tensor (at least float32).

    Per-tensor norms are accumulated in float32 or wider, so bfloat16 or float16
    gradients do not lose the sum to rounding.
    """
    accumulate = torch.promote_types(tensors[0].dtype, torch.float32)
    norms = torch._foreach_norm(tensors, 2, dtype=accumulate)
    return torch.stack(norms).square().sum()


def sum_on(values: list[Tensor], device: torch.device) -> Tensor:
    """Sum 0-dim tensors that may live on several devices, on `device` (asynchronous copies)."""
    return torch.stack([value.to(device, non_blocking=True) for value in values]).sum()


def poison_if(flag: Tensor, tensors: TensorList) -> None:
    """Make one element of `tensors` NaN when the 0-dim boolean `flag` is set.

    Used to carry "the first pass overflowed" into the final direction without a
    host sync: the GradScaler then sees a non-finite gradient and skips the step
    on every worker (an all-reduce spreads the NaN).
    """
    for tensor in tensors:
        if tensor.numel() > 0:
            element = tensor[(0,) * tensor.dim()]  # a 0-dim view into the tensor
            element.add_(torch.where(flag, float("nan"), 0.0).to(tensor.dtype))
            return
