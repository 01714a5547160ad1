"""Borrow a model for a measure and give it back exactly as it was.

A measure perturbs every parameter many times. Instead of deep-copying the
state dict (as research code does, on every improvement) the parameters'
storage is swapped: each parameter gets a fresh float32 working tensor for the
measure, the original tensors are never written, and on exit every parameter
and buffer points at its original tensor again. So weights, BatchNorm buffers,
dtypes, devices, `requires_grad`, `.grad` and every module's train/eval mode
are restored bit for bit, also when the measure raises, and the one copy of
the weights is made once per measure, not once per step.

While borrowed, the model is in eval mode (BatchNorm uses its running
statistics, dropout is off) and every parameter requires grad, so every
parameter is perturbed and differentiated.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class BorrowedModel:
    """The parameters to perturb and the float32 values to perturb them around.

    `params[i].data` is a float32 working tensor that the measure may overwrite;
    `anchors[i]` holds the original values in float32 and must not be written
    (for a float32 model it *is* the original tensor, so no copy is made).
    """

    params: list[nn.Parameter]
    anchors: list[torch.Tensor]

    def reset(self) -> None:
        """Put the unperturbed weights back into the working tensors."""
        torch._foreach_copy_([p.data for p in self.params], self.anchors)


def _float32_copy(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_floating_point():
        # empty_like keeps the strides (channels_last weights stay channels_last).
        return torch.empty_like(tensor, dtype=torch.float32).copy_(tensor)
    return tensor.clone()


@contextlib.contextmanager
def borrowed(model: nn.Module) -> Iterator[BorrowedModel]:
    """Eval mode, float32 working copies of parameters and buffers; everything restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    params = list(model.parameters())
    originals = [p.data for p in params]
    requires_grad = [p.requires_grad for p in params]
    buffers = [
        (module, name, buffer)
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]
    try:
        model.eval()
        for p in params:
            p.data = _float32_copy(p.data)
            p.requires_grad_(True)
        # Buffers are read-only in eval mode; copies make that a guarantee (and float32 for bf16 models).
        for module, name, buffer in buffers:
            module._buffers[name] = _float32_copy(buffer)
        anchors = [o if o.dtype == torch.float32 else p.data.clone() for p, o in zip(params, originals)]
        yield BorrowedModel(params, anchors)
    finally:
        for p, original, flag in zip(params, originals, requires_grad):
            p.data = original
            p.requires_grad_(flag)
        for module, name, buffer in buffers:
            module._buffers[name] = buffer
        for module, training in modes:
            module.training = training


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's 4-d weights are stored channels-last (then its inputs should be too)."""
    weights = [p for p in model.parameters() if p.dim() == 4 and p.shape[1] * p.shape[2] * p.shape[3] > 1]
    return bool(weights) and all(
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in weights
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel / DataParallel / torch.compile wrappers.

    The wrappers share the module's parameters, so its state_dict (without
    wrapper prefixes) is what checkpoints store and what measures perturb.
    Defined here, in the library, so the measures need nothing from the runner;
    the runner's checkpoints use the same function.
    """
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (cpu for a parameterless model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
