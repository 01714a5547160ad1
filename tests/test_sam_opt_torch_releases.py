"""SAM and GSAM on torch releases without the newest multi-tensor kernels.

The project supports torch >= 2.6; `torch._foreach_clone` and `torch._foreach_mm`
are recent. Without them the optimizers take a per-tensor path that must give the
same step, which is checked here by hiding the kernels from this torch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sam_opt import GSAM
from sam_opt.foreach import clones, inner_products


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def _two_gsam_steps() -> list[torch.Tensor]:
    model = _model()
    opt = GSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.02, model=model, lr=0.1, momentum=0.9)
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    for _ in range(2):

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
    return [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]


@pytest.mark.parametrize("kernel", ["_foreach_clone", "_foreach_mm"])
def test_a_torch_without_the_kernel_gives_the_same_steps(monkeypatch, kernel):
    if not hasattr(torch, kernel):
        pytest.skip(f"this torch has no {kernel}: the fallback is the only path")
    with_kernel = _two_gsam_steps()
    monkeypatch.delattr(torch, kernel)
    without = _two_gsam_steps()
    for a, b in zip(with_kernel, without):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_the_fallbacks_compute_what_the_kernels_do(monkeypatch):
    torch.manual_seed(2)
    a, b = [torch.randn(3, 4), torch.randn(5)], [torch.randn(3, 4), torch.randn(5)]
    products, copies = inner_products(a, b), clones(a)
    monkeypatch.delattr(torch, "_foreach_mm", raising=False)
    monkeypatch.delattr(torch, "_foreach_clone", raising=False)
    for x, y in zip(products, inner_products(a, b)):
        torch.testing.assert_close(x, y)
    for original, copy, plain in zip(a, copies, clones(a)):
        assert torch.equal(copy, plain) and plain.data_ptr() != original.data_ptr()
