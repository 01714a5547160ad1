"""SAM/GSAM against their closed forms, and the equalities the design promises.

On f(w) = 1/2 w^T A w every quantity of a step has a closed form, so one step
of SAM and GSAM (plain and adaptive) must match it to float64 precision.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from torch import nn

from sam_opt import GSAM, SAM, foreach

LR = 0.1


def quadratic(seed: int = 0) -> tuple[torch.Tensor, list[nn.Parameter]]:
    """A random SPD matrix A (7x7) and w split over two parameters of shapes (3,) and (2, 2)."""
    generator = torch.Generator().manual_seed(seed)
    root = torch.randn(7, 7, generator=generator, dtype=torch.float64)
    matrix = root @ root.T + 0.5 * torch.eye(7, dtype=torch.float64)
    weights = torch.randn(7, generator=generator, dtype=torch.float64)
    params = [nn.Parameter(weights[:3].clone()), nn.Parameter(weights[3:].reshape(2, 2).clone())]
    return matrix, params


def flat(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([param.detach().reshape(-1) for param in params])


def quadratic_closure(matrix: torch.Tensor, params: list[nn.Parameter]):
    def closure() -> torch.Tensor:
        w = torch.cat([param.reshape(-1) for param in params])
        loss = 0.5 * w @ matrix @ w
        loss.backward()
        return loss

    return closure


def expected_step(matrix, w, rho, alpha, adaptive, eta, lr=LR, rho_per_entry=None):
    """The issue's formulas, written on the flat vector."""
    g = matrix @ w
    t = (w.abs() + eta) if adaptive else torch.ones_like(w)
    rho_vector = rho_per_entry if rho_per_entry is not None else torch.full_like(w, rho)
    e = rho_vector * t**2 * g / ((t * g).norm() + 1e-12)
    g_p = matrix @ (w + e)
    g_perp = g - (g @ g_p) / (g_p @ g_p) * g_p
    return w - lr * (g_p - alpha * g_perp)


@pytest.fixture(params=["per-tensor", "per-tensor in blocks", "multi-tensor"])
def kernels(request, monkeypatch) -> str:
    """The CPU's kernels (addcmul, dot products; in one block here, as the parameters are small, or
    in blocks of one tensor) and, with the CPU taken for an accelerator, the multi-tensor ones
    (mul + add, polarisation) that run on GPUs: all must give the formula."""
    if request.param == "per-tensor in blocks":
        monkeypatch.setattr(foreach, "CPU_BLOCK_BYTES", 1)
    if request.param == "multi-tensor":
        monkeypatch.setattr(foreach, "fuses_per_tensor", lambda device: False)
    return request.param


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("kind", ["sam", "gsam"])
def test_one_step_matches_closed_form(kind: str, adaptive: bool, kernels: str) -> None:
    matrix, params = quadratic()
    w = flat(params)
    rho, alpha, eta = 0.3, 0.4, 0.01
    if kind == "sam":
        optimizer = SAM(params, torch.optim.SGD, rho=rho, adaptive=adaptive, eta=eta, lr=LR)
        alpha = 0.0
    else:
        optimizer = GSAM(params, torch.optim.SGD, rho=rho, alpha=alpha, adaptive=adaptive, eta=eta, lr=LR)
    loss = optimizer.step(quadratic_closure(matrix, params))
    assert torch.allclose(loss, 0.5 * w @ matrix @ w)
    expected = expected_step(matrix, w, rho, alpha, adaptive, eta)
    assert torch.allclose(flat(params), expected, rtol=0, atol=1e-6)
    assert (flat(params) - expected).abs().max() < 1e-12


@pytest.mark.parametrize("first_rho", [0.2, 0.0])
def test_per_group_rho_shares_one_norm(first_rho: float, kernels: str) -> None:
    matrix, params = quadratic(seed=1)
    w = flat(params)
    groups = [{"params": [params[0]], "rho": first_rho}, {"params": [params[1]], "rho": 0.5}]
    optimizer = GSAM(groups, torch.optim.SGD, alpha=0.3, lr=LR)
    optimizer.step(quadratic_closure(matrix, params))
    rho_per_entry = torch.tensor([first_rho] * 3 + [0.5] * 4, dtype=torch.float64)
    expected = expected_step(matrix, w, None, 0.3, False, 0.0, rho_per_entry=rho_per_entry)
    assert torch.allclose(flat(params), expected, rtol=0, atol=1e-12)


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def batch(seed: int = 1, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(size, 6, generator=generator), torch.randint(0, 3, (size,), generator=generator)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3, calls: list | None = None) -> None:
    x, y = batch()

    def closure() -> torch.Tensor:
        if calls is not None:
            calls.append(1)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)


def same_weights(first: nn.Module, second: nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4)


def test_gsam_with_alpha_zero_is_sam_bit_for_bit() -> None:
    sam_net, gsam_net = small_net(), small_net()
    train(sam_net, SAM(sam_net.parameters(), SGD, rho=0.1))
    train(gsam_net, GSAM(gsam_net.parameters(), SGD, rho=0.1, alpha=0.0))
    assert same_weights(sam_net, gsam_net)


@pytest.mark.parametrize("cls", [SAM, GSAM])
def test_rho_zero_is_the_base_optimizer_with_one_pass(cls) -> None:
    ours, reference = small_net(), small_net()
    calls: list = []
    train(ours, cls(ours.parameters(), SGD, rho=0.0), calls=calls)
    assert len(calls) == 3
    base = SGD(reference.parameters())
    x, y = batch()
    for _ in range(3):
        base.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        base.step()
    assert same_weights(ours, reference)


def test_rho_set_to_zero_by_a_schedule_skips_the_second_pass() -> None:
    net = small_net()
    optimizer = SAM(net.parameters(), SGD, rho=0.1)
    calls: list = []
    train(net, optimizer, steps=1, calls=calls)
    optimizer.param_groups[0]["rho"] = 0.0
    train(net, optimizer, steps=1, calls=calls)
    assert len(calls) == 3


def test_first_and_second_step_equal_the_closure_step() -> None:
    closure_net, manual_net = small_net(), small_net()
    train(closure_net, GSAM(closure_net.parameters(), SGD, rho=0.1, alpha=0.1))
    optimizer = GSAM(manual_net.parameters(), SGD, rho=0.1, alpha=0.1)
    x, y = batch()
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(manual_net(x), y).backward()
        optimizer.first_step()
        nn.functional.cross_entropy(manual_net(x), y).backward()
        optimizer.second_step()
    assert same_weights(closure_net, manual_net)


def test_step_without_closure_finishes_a_first_step() -> None:
    net = small_net()
    optimizer = SAM(net.parameters(), SGD, rho=0.1)
    x, y = batch()
    nn.functional.cross_entropy(net(x), y).backward()
    optimizer.first_step()
    nn.functional.cross_entropy(net(x), y).backward()
    optimizer.step()
    reference = small_net()
    train(reference, SAM(reference.parameters(), SGD, rho=0.1), steps=1)
    assert same_weights(net, reference)


def test_base_optimizer_as_instance_class_or_partial() -> None:
    nets = [small_net() for _ in range(3)]
    train(nets[0], GSAM(nets[0].parameters(), SGD(nets[0].parameters()), rho=0.1))
    train(nets[1], GSAM(nets[1].parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9, weight_decay=5e-4))
    train(nets[2], GSAM(nets[2].parameters(), SGD, rho=0.1))
    assert same_weights(nets[0], nets[1]) and same_weights(nets[0], nets[2])


def test_clipping_bounds_the_final_direction() -> None:
    plain_net, clipped_net = small_net(), small_net()
    before = flat(list(plain_net.parameters()))
    sgd = functools.partial(torch.optim.SGD, lr=1.0)
    train(plain_net, GSAM(plain_net.parameters(), sgd, rho=0.1, alpha=0.2), steps=1)
    train(clipped_net, GSAM(clipped_net.parameters(), sgd, rho=0.1, alpha=0.2, max_grad_norm=0.05), steps=1)
    direction = before - flat(list(plain_net.parameters()))
    clipped = before - flat(list(clipped_net.parameters()))
    assert direction.norm() > 0.05
    assert torch.allclose(clipped, direction * 0.05 / direction.norm(), atol=1e-6)


@pytest.mark.parametrize("cls", [SAM, GSAM])
def test_four_micro_batches_equal_one_batch(cls) -> None:
    """Accumulating loss / 4 over 4 micro-batches inside the closure is the step on the whole batch."""
    whole_net = small_net().double()
    micro_net = copy.deepcopy(whole_net)
    x, y = batch(size=16)
    x = x.double()

    def whole() -> torch.Tensor:
        loss = nn.functional.cross_entropy(whole_net(x), y)
        loss.backward()
        return loss

    def accumulated() -> torch.Tensor:
        total = torch.zeros((), dtype=torch.float64)
        for xs, ys in zip(x.chunk(4), y.chunk(4)):
            loss = nn.functional.cross_entropy(micro_net(xs), ys) / 4
            loss.backward()
            total = total + loss.detach()
        return total

    whole_opt, micro_opt = cls(whole_net.parameters(), SGD, rho=0.1), cls(micro_net.parameters(), SGD, rho=0.1)
    for _ in range(2):
        whole_loss = whole_opt.step(whole)
        micro_loss = micro_opt.step(accumulated)
        assert torch.allclose(whole_loss, micro_loss, rtol=0, atol=1e-12)
    for a, b in zip(whole_net.parameters(), micro_net.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def within_one_rounding(restored: torch.Tensor, original: torch.Tensor, rho: float) -> bool:
    """|restored - w| within a couple of roundings of |w| + |e| (|e| <= rho), the bound of w + e - e."""
    eps = torch.finfo(original.dtype).eps
    return bool(((restored - original).abs() <= 2 * eps * (original.abs() + rho)).all())


@pytest.mark.parametrize("exact_restore", [False, True])
def test_a_failing_second_pass_leaves_the_weights_at_w(exact_restore: bool) -> None:
    net = small_net()
    before = copy.deepcopy(net.state_dict())
    optimizer = GSAM(net.parameters(), SGD, rho=0.5, exact_restore=exact_restore)
    x, y = batch()
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    with pytest.raises(KeyboardInterrupt):
        optimizer.step(closure)
    pairs = list(zip(net.state_dict().values(), before.values()))
    if exact_restore:
        assert all(torch.equal(a, b) for a, b in pairs)
    else:
        assert all(within_one_rounding(a, b, rho=0.5) for a, b in pairs)
    train(net, optimizer, steps=1)  # still usable


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_weights_seen_by_the_second_pass_and_restored(dtype: torch.dtype, kernels: str) -> None:
    """The second pass sees w + e; afterwards w is back: bit for bit in 16 bits, within one rounding above."""
    torch.manual_seed(0)
    net = nn.Linear(64, 8).to(dtype)
    w = [param.detach().clone() for param in net.parameters()]
    optimizer = SAM(net.parameters(), functools.partial(torch.optim.SGD, lr=0.0), rho=0.3)
    x = torch.randn(32, 64).to(dtype)
    seen = []

    def closure() -> torch.Tensor:
        seen.append([param.detach().clone() for param in net.parameters()])
        loss = net(x).float().square().mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    grads = [param.grad for param in net.parameters()]  # lr = 0: the weights must not move
    assert all(g is not None for g in grads)
    shift = torch.cat([(a - b).double().reshape(-1) for a, b in zip(seen[1], w)])
    w_norm = float(torch.cat([p.double().reshape(-1) for p in w]).norm())
    # ||e|| = rho ||g|| / (||g|| + 1e-12): rho, up to the roundings of w + e and the 1e-12 guard.
    assert abs(float(shift.norm()) - 0.3) <= 2 * torch.finfo(dtype).eps * (w_norm + 0.3) + 1e-11
    after = list(net.parameters())
    if torch.finfo(dtype).bits < 32:
        assert all(torch.equal(a.detach(), b) for a, b in zip(after, w))
    else:
        assert all(within_one_rounding(a.detach(), b, rho=0.3) for a, b in zip(after, w))


def test_exact_restore_is_bit_for_bit_and_otherwise_agrees_to_rounding() -> None:
    trained = {}
    for exact in (False, True):
        net = small_net()
        optimizer = GSAM(net.parameters(), SGD, rho=0.2, alpha=0.1, exact_restore=exact)
        train(net, optimizer, steps=5)
        trained[exact] = flat(list(net.parameters()))
    assert torch.allclose(trained[False], trained[True], rtol=0, atol=1e-6)
    net = small_net()
    w = flat(list(net.parameters()))
    optimizer = SAM(net.parameters(), functools.partial(torch.optim.SGD, lr=0.0), rho=0.5, exact_restore=True)
    train(net, optimizer, steps=3)
    assert torch.equal(flat(list(net.parameters())), w)


def test_exact_restore_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="exact_restore must be True or False, got 'yes'"):
        SAM(small_net().parameters(), SGD, exact_restore="yes")
