"""Mixed precision: bf16 autocast, fp16 with a GradScaler, and skipped steps on overflow."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from test_sam_opt_contract import allowing_host_reads, host_reads_forbidden
from torch import nn

from sam_opt import GSAM, SAM

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return torch.randn(64, 16, generator=generator), torch.randint(0, 5, (64,), generator=generator)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([param.detach().reshape(-1) for param in model.parameters()])


def update(cls, precision: str | None, scaler: torch.amp.GradScaler | None = None, **kwargs) -> torch.Tensor:
    """The change of the weights after one step, computed with autocast to `precision` (None: fp32)."""
    model = mlp()
    before = flat(model)
    optimizer = cls(model.parameters(), SGD, rho=0.1, **kwargs)
    x, y = data()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)

    def closure() -> torch.Tensor:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = nn.functional.cross_entropy(model(x), y)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        return loss

    optimizer.step(closure, grad_scaler=scaler)
    if scaler is not None:
        scaler.update()
    return flat(model) - before


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours - reference).norm() / reference.norm())


@pytest.mark.parametrize("cls", [SAM, GSAM])
def test_bf16_autocast_agrees_with_fp32(cls) -> None:
    assert relative_error(update(cls, "bf16"), update(cls, None)) < 0.02


@pytest.mark.parametrize("cls", [SAM, GSAM])
def test_fp16_with_grad_scaler_agrees_with_fp32(cls) -> None:
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    assert relative_error(update(cls, "fp16", scaler), update(cls, None)) < 3e-3


@pytest.mark.parametrize("kwargs", [{}, {"adaptive": True, "eta": 0.01}, {"max_grad_norm": 0.01}])
def test_scaled_gradients_give_the_unscaled_step(kwargs: dict) -> None:
    """With fp32 compute the scale S = 2^k is exact, so the step must equal the one without a scaler.

    A scaler implies the exact (copy) restore of w, so the reference asks for it too.
    """
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**14)
    ours = update(GSAM, None, scaler, alpha=0.3, **kwargs)
    assert relative_error(ours, update(GSAM, None, alpha=0.3, exact_restore=True, **kwargs)) < 1e-6


def test_rho_zero_with_scaler_is_the_usual_amp_recipe() -> None:
    ours, reference = mlp(), mlp()
    x, y = data()
    optimizer = SAM(ours.parameters(), SGD, rho=0.0, max_grad_norm=0.5)
    base = SGD(reference.parameters())
    our_scaler, their_scaler = (torch.amp.GradScaler("cpu", init_scale=2.0**10) for _ in range(2))
    for _ in range(2):
        optimizer.step(lambda: _finite_closure(ours, x, y, our_scaler), grad_scaler=our_scaler)
        our_scaler.update()
        base.zero_grad()
        _finite_closure(reference, x, y, their_scaler)
        their_scaler.unscale_(base)
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        their_scaler.step(base)
        their_scaler.update()
    assert torch.equal(flat(ours), flat(reference))


def test_disabled_scaler_is_ignored() -> None:
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    assert torch.equal(update(GSAM, None, scaler), update(GSAM, None))


@pytest.mark.parametrize("cls", [SAM, GSAM])
@pytest.mark.parametrize("overflow_in", ["first pass", "second pass"])
@pytest.mark.parametrize("fused", [False, True])
def test_overflow_in_either_pass_skips_the_step(cls, overflow_in: str, fused: bool) -> None:
    model = mlp()
    x, y = data()
    optimizer = cls(model.parameters(), functools.partial(SGD, fused=fused), rho=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        overflowing = (len(calls) % 2 == 1) == (overflow_in == "first pass")
        loss = nn.functional.cross_entropy(model(x), y)
        if overflowing:
            (scaler.scale(loss) * float("inf")).backward()
        else:
            # Finite gradients whatever the weights hold, so only the flag from the other pass can stop the step.
            for param in model.parameters():
                param.grad = torch.ones_like(param)
        return loss

    def step() -> None:
        optimizer.step(closure, grad_scaler=scaler)
        scaler.update()

    optimizer.step(lambda: _finite_closure(model, x, y, scaler), grad_scaler=scaler)  # momentum buffers exist
    scaler.update()
    weights = copy.deepcopy(model.state_dict())
    momentum = [optimizer.state[p]["momentum_buffer"].clone() for p in model.parameters()]
    step()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), weights.values()))
    assert all(torch.equal(optimizer.state[p]["momentum_buffer"], m) for p, m in zip(model.parameters(), momentum))
    assert scaler.get_scale() == 2.0**7


def _finite_closure(model, x, y, scaler) -> torch.Tensor:
    loss = nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    return loss


def test_fused_base_with_scaler_needs_no_host_read() -> None:
    model = mlp()
    x, y = data()
    optimizer = GSAM(model.parameters(), functools.partial(SGD, fused=True), rho=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)

    def closure() -> torch.Tensor:
        return _finite_closure(model, x, y, scaler)

    optimizer.step(closure, grad_scaler=scaler)
    scaler.update()
    with host_reads_forbidden() as originals:
        optimizer.step(allowing_host_reads(closure, originals), grad_scaler=scaler)
