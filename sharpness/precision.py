"""Full float32 arithmetic for the duration of a measure, whatever the training precision was.

A perturbation of rho = 2e-4 is below bfloat16's resolution for weights of
order 0.1 and coarse under TF32 (10 mantissa bits), so every measure runs with
autocast off and TF32 off for cuBLAS matmuls, cuDNN convolutions and RNNs, and
oneDNN (which may use bf16/TF32 for float32 on the CPU). The previous settings
are restored exactly afterwards.

torch keeps both a legacy state (`float32_matmul_precision`, the cuDNN
`allow_tf32` flag) and a per-(backend, op) `fp32_precision` table, and checks
that the two agree when a kernel asks; so both are set consistently here and
both are put back, the table last and entry by entry.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

# Entries of torch's fp32_precision table; parents first so restoring a parent never clobbers a child.
_PRECISION_KEYS = (
    ("generic", "all"),
    ("cuda", "all"),
    ("cuda", "matmul"),
    ("cuda", "conv"),
    ("cuda", "rnn"),
    ("mkldnn", "all"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)
_LEAVES = [key for key in _PRECISION_KEYS if key[1] != "all"]


def _table_available() -> bool:
    return hasattr(torch._C, "_get_fp32_precision_getter") and hasattr(torch._C, "_set_fp32_precision_setter")


@contextlib.contextmanager
def float32_exact(device_type: str = "cpu") -> Iterator[None]:
    """Disable autocast and TF32/bf16 shortcuts for float32 inside the block; restore on exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns that the legacy setters are deprecated
        try:
            legacy_matmul: str | None = torch.get_float32_matmul_precision()
        except RuntimeError:  # the caller already mixed the two APIs inconsistently
            legacy_matmul = None
        try:
            legacy_cudnn: bool | None = torch.backends.cudnn.allow_tf32
        except RuntimeError:
            legacy_cudnn = None
        table = {}
        if _table_available():
            table = {key: torch._C._get_fp32_precision_getter(*key) for key in _PRECISION_KEYS}

        torch.set_float32_matmul_precision("highest")  # legacy HIGHEST and table matmul entries "ieee"
        torch.backends.cudnn.allow_tf32 = False
        if table:
            for key in _LEAVES:
                torch._C._set_fp32_precision_setter(*key, "ieee")
    try:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if legacy_matmul is not None:
                torch.set_float32_matmul_precision(legacy_matmul)
            if legacy_cudnn is not None:
                torch.backends.cudnn.allow_tf32 = legacy_cudnn
            for key, value in table.items():
                torch._C._set_fp32_precision_setter(*key, value)


def precision_state() -> tuple:
    """A comparable snapshot of every setting `float32_exact` touches (for tests)."""
    table = tuple(torch._C._get_fp32_precision_getter(*key) for key in _PRECISION_KEYS) if _table_available() else ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            legacy = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
        except RuntimeError:
            legacy = ("mixed",)
    return legacy + table
