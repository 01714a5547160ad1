"""Multi-tensor arithmetic for SAM and GSAM, without reading anything back to the host.

Lists of tensors on one device with one dtype go through `torch._foreach_*`
kernels; scalars from tensors stay 0-dim device tensors, so a step never waits
for the device. The form of some operations depends on the device
(`fuses_per_tensor`); docs/sam_opt.md, "Speed".
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
    if keys and all(key.device == keys[0].device and key.dtype == keys[0].dtype for key in keys):
        return [(list(keys), *(list(other) for other in others))]  # the usual case, without the bookkeeping
    buckets: dict[tuple[torch.device, torch.dtype], tuple[TensorList, ...]] = {}
    for index, key in enumerate(keys):
        bucket = buckets.get((key.device, key.dtype))
        if bucket is None:
            bucket = buckets[key.device, key.dtype] = tuple([] for _ in range(1 + len(others)))
        bucket[0].append(key)
        for position, other in enumerate(others, start=1):
            bucket[position].append(other[index])
    return list(buckets.values())


def squared_norm(tensors: TensorList) -> Tensor:
    """Sum of squares of all elements of all `tensors`, a 0-dim tensor (at least float32).

    Per-tensor norms are accumulated in float32 or wider, so bfloat16 or float16
    gradients do not lose the sum to rounding.
    """
    return sum_of_squares(norms(tensors))


def sum_of_squares(values: TensorList) -> Tensor:
    """The sum of the squares of 0-dim tensors (per-tensor norms -> squared norm of them all)."""
    return torch.stack(values).square().sum()


def norms(tensors: TensorList) -> TensorList:
    """The 2-norm of each tensor, as 0-dim tensors in float32 or wider."""
    return list(torch._foreach_norm(tensors, 2, dtype=torch.promote_types(tensors[0].dtype, torch.float32)))


def sum_on(values: list[Tensor], device: torch.device) -> Tensor:
    """Sum 0-dim tensors that may live on several devices, on `device` (asynchronous copies)."""
    return torch.stack([value.to(device, non_blocking=True) for value in values]).sum()


def fuses_per_tensor(device: torch.device) -> bool:
    """Whether foreach ops on `device` run tensor by tensor (the CPU), rather than as multi-tensor kernels.

    There, the fewest passes over memory win, and a foreach op whose tensors
    differ in shape costs nothing extra; on accelerators a foreach op is one
    multi-tensor kernel only when all its lists match in shape, which decides
    the form of `add_scaled_` and of GSAM's inner product.
    """
    return device.type == "cpu"


def add_scaled_(targets: TensorList, sources: TensorList, factor: Tensor) -> None:
    """targets += factor * sources for a 0-dim tensor `factor`, leaving `sources` unchanged.

    Foreach kernels take a tensor scalar only in `mul`, so the fused form
    depends on the device: on the CPU `addcmul` with the broadcast 0-dim
    factor is one pass over the data; accelerators keep two multi-tensor
    kernels (scale into temporaries, add), because `addcmul` with mismatched
    shapes would fall back to one kernel launch per tensor.
    """
    if targets and fuses_per_tensor(targets[0].device):
        _add_scaled_per_tensor(targets, sources, factor)
    else:
        _add_scaled_multi_tensor(targets, sources, factor)


def _add_scaled_per_tensor(targets: TensorList, sources: TensorList, factor: Tensor) -> None:
    torch._foreach_addcmul_(targets, sources, [factor] * len(targets))


def _add_scaled_multi_tensor(targets: TensorList, sources: TensorList, factor: Tensor) -> None:
    torch._foreach_add_(targets, torch._foreach_mul(sources, factor))


CPU_BLOCK_BYTES = 4 << 20  # per list: the two or three lists in flight stay in a server CPU's L3


def cache_blocks(tensors: TensorList, block_bytes: int | None = None) -> list[slice]:
    """Consecutive parts of `tensors` for running several foreach ops part by part.

    On the CPU a foreach op streams all its tensors through memory, so the
    next op over the same tensors reads them from DRAM again; run part by
    part (about `block_bytes` of `tensors` each, a larger tensor alone), the
    second op finds them in cache. Accelerators get one part: their
    multi-tensor kernels gain nothing from it and would launch more often.
    `block_bytes` defaults to `CPU_BLOCK_BYTES`.
    """
    if not tensors or not fuses_per_tensor(tensors[0].device):
        return [slice(None)]
    block_bytes = CPU_BLOCK_BYTES if block_bytes is None else block_bytes
    parts, start, size = [], 0, 0
    for index, tensor in enumerate(tensors):
        size += tensor.numel() * tensor.element_size()
        if size >= block_bytes:
            parts.append(slice(start, index + 1))
            start, size = index + 1, 0
    if start < len(tensors):
        parts.append(slice(start, len(tensors)))
    return parts


def inner_product(first: TensorList, second: TensorList) -> Tensor:
    """sum(first * second) over all elements of all tensors, a 0-dim tensor (at least float32)."""
    accumulate = torch.promote_types(first[0].dtype, torch.float32)
    return torch.cat(inner_products(first, second)).to(accumulate).sum()


def inner_products(first: TensorList, second: TensorList) -> TensorList:
    """sum(a * b) for each pair, as 1 x 1 tensors in the tensors' dtype.

    One read of each list and no temporary: every pair is a 1 x n by n x 1
    matrix product of views (`_foreach_mm`), the column laid out so BLAS reads
    it as a plain vector. Tensors in another layout (channels_last) are
    flattened in their storage order, the same for both when their strides
    match. Meant for `fuses_per_tensor` devices, where matrix products of
    differing shapes cost no extra launches.
    """
    rows, columns = [], []
    for a, b in zip(first, second):
        if not (a.is_contiguous() and b.is_contiguous()):
            order = _storage_order(a)
            a, b = a.permute(order), b.permute(order)
        rows.append(a.reshape(1, -1))
        columns.append(b.reshape(1, -1).t())  # n x 1 with unit stride down the column
    if hasattr(torch, "_foreach_mm"):  # one kernel per list; older torch releases lack it
        return list(torch._foreach_mm(rows, columns))
    return [row @ column for row, column in zip(rows, columns)]


def clones(tensors: TensorList) -> TensorList:
    """Copies of `tensors`, in one multi-tensor kernel where the torch release has it."""
    if hasattr(torch, "_foreach_clone"):
        return list(torch._foreach_clone(tensors))
    return [tensor.clone() for tensor in tensors]


def _storage_order(tensor: Tensor) -> list[int]:
    """Dims by decreasing stride: the permutation under which a dense tensor is contiguous."""
    return sorted(range(tensor.dim()), key=lambda dim: (-tensor.stride(dim), dim))


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
