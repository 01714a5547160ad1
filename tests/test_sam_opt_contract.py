"""The optimizer contract: bad input, shared param groups, state_dict, BatchNorm, no host syncs."""

from __future__ import annotations

import contextlib
import copy
import functools
import io

import pytest
import torch
from torch import nn

from sam_opt import GSAM, SAM, foreach, frozen_bn_stats

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4)


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 8),
        nn.BatchNorm1d(8, momentum=None),  # cumulative average: depends on num_batches_tracked
        nn.Tanh(),
        nn.Linear(8, 3),
    )


def images(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 6, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)


def closure_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    def closure() -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


# ---------------------------------------------------------------- bad input


def params() -> list[nn.Parameter]:
    return list(nn.Linear(2, 2).parameters())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rho": -0.1}, r"rho must be a finite number >= 0, got -0.1"),
        ({"rho": float("nan")}, r"rho must be a finite number >= 0, got nan"),
        ({"rho": float("inf")}, r"rho must be a finite number >= 0, got inf"),
        ({"alpha": -0.02}, r"alpha must be a finite number >= 0, got -0.02"),
        ({"alpha": float("nan")}, r"alpha must be a finite number >= 0, got nan"),
        ({"eta": -1.0}, r"eta must be a finite number >= 0, got -1.0"),
        ({"adaptive": "yes"}, r"adaptive must be True or False, got 'yes'"),
        ({"max_grad_norm": 0.0}, r"max_grad_norm must be None or a finite number > 0, got 0.0"),
    ],
)
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GSAM(params(), torch.optim.SGD, lr=0.1, **kwargs)


def test_base_optimizer_over_other_params() -> None:
    base = torch.optim.SGD(params(), lr=0.1)
    with pytest.raises(ValueError, match="same params as SAM/GSAM: SAM got 2 tensors, SGD holds 2, 0 in common"):
        SAM(params(), base)


def test_base_kwargs_with_a_built_base() -> None:
    ps = params()
    with pytest.raises(ValueError, match=r"keyword arguments \['lr'\]"):
        SAM(ps, torch.optim.SGD(ps, lr=0.1), lr=0.2)


def test_empty_params() -> None:
    with pytest.raises(ValueError, match="empty parameter list"):
        SAM([], torch.optim.SGD, lr=0.1)


def test_misuse_of_the_two_halves() -> None:
    model = bn_net()
    optimizer = SAM(model.parameters(), SGD)
    with pytest.raises(RuntimeError, match="needs a closure"):
        optimizer.step()
    with pytest.raises(RuntimeError, match="second_step\\(\\) needs a first_step\\(\\)"):
        optimizer.second_step()
    with pytest.raises(RuntimeError, match="found no gradients"):
        optimizer.first_step()
    x, y = images()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.first_step()
    with pytest.raises(RuntimeError, match="first_step\\(\\) was called twice"):
        optimizer.first_step()
    with pytest.raises(RuntimeError, match="between first_step\\(\\) and second_step\\(\\)"):
        optimizer.step(closure_for(model, x, y))
    with pytest.raises(RuntimeError, match="between first_step\\(\\) and second_step\\(\\)"):
        optimizer.state_dict()


def test_a_schedule_writing_a_bad_rho_fails_at_the_next_step() -> None:
    model = bn_net()
    optimizer = GSAM(model.parameters(), SGD)
    optimizer.param_groups[0]["rho"] = -1.0
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['rho'\] must be a finite number >= 0, got -1.0"):
        optimizer.step(closure_for(model, *images()))


# ---------------------------------------------------------------- shared groups


def test_param_groups_and_state_are_the_base_optimizers() -> None:
    model = bn_net()
    optimizer = GSAM(model.parameters(), SGD, rho=0.07, alpha=0.03)
    assert optimizer.param_groups is optimizer.base_optimizer.param_groups
    assert optimizer.state is optimizer.base_optimizer.state
    assert optimizer.param_groups[0]["rho"] == 0.07 and optimizer.param_groups[0]["alpha"] == 0.03
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step(closure_for(model, *images()))
    scheduler.step()
    assert optimizer.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    extra = nn.Parameter(torch.zeros(2))
    optimizer.add_param_group({"params": [extra], "rho": 0.0})
    assert optimizer.base_optimizer.param_groups[-1]["alpha"] == 0.03


def test_per_group_settings_reach_a_prebuilt_base() -> None:
    model = bn_net()
    groups = [{"params": list(model[:2].parameters()), "rho": 0.2}, {"params": list(model[2:].parameters())}]
    base = SGD([{"params": group["params"]} for group in groups])
    SAM(groups, base, rho=0.05)
    assert [group["rho"] for group in base.param_groups] == [0.2, 0.05]
    with pytest.raises(ValueError, match="same param groups"):
        SAM(groups, SGD(model.parameters()))


# ---------------------------------------------------------------- BatchNorm


def running_stats(model: nn.Module) -> list[torch.Tensor]:
    return [buffer.clone() for name, buffer in model.named_buffers()]


@pytest.mark.parametrize("cls", [SAM, GSAM])
def test_running_stats_change_as_after_one_forward_pass(cls) -> None:
    model = bn_net()
    reference = copy.deepcopy(model)
    x, y = images()
    reference(x)  # one plain training-mode forward pass
    optimizer = cls(model.parameters(), SGD, rho=0.5, model=model)
    optimizer.step(closure_for(model, x, y))
    for ours, expected in zip(running_stats(model), running_stats(reference)):
        assert torch.equal(ours, expected)
    assert int(model[1].num_batches_tracked) == 1


def test_frozen_bn_stats_restores_and_still_uses_batch_statistics() -> None:
    model = bn_net()
    before = running_stats(model)
    x, _ = images()
    with frozen_bn_stats(model):
        out_frozen = model(x)
    assert all(torch.equal(a, b) for a, b in zip(running_stats(model), before))
    assert torch.equal(out_frozen, copy.deepcopy(model)(x))  # normalised with batch statistics


# ---------------------------------------------------------------- state_dict


def test_state_dict_round_trip_continues_bit_for_bit() -> None:
    x, y = images()
    model = bn_net()
    optimizer = GSAM(model.parameters(), SGD, rho=0.05, alpha=0.02, model=model)
    for step in range(3):
        optimizer.param_groups[0]["rho"] = 0.05 + 0.01 * step  # a schedule
        optimizer.param_groups[0]["alpha"] = 0.02 + 0.01 * step
        optimizer.step(closure_for(model, x, y))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)

    for _ in range(3):
        optimizer.step(closure_for(model, x, y))

    buffer.seek(0)
    saved = torch.load(buffer)
    resumed = bn_net(seed=123)
    resumed.load_state_dict(saved["model"])
    resumed_optimizer = GSAM(resumed.parameters(), SGD, model=resumed)  # default rho/alpha
    resumed_optimizer.load_state_dict(saved["optimizer"])
    group = resumed_optimizer.param_groups[0]
    assert (group["rho"], group["alpha"]) == (0.07, 0.04)
    assert resumed_optimizer.param_groups is resumed_optimizer.base_optimizer.param_groups
    assert all("momentum_buffer" in resumed_optimizer.state[p] for p in resumed.parameters())
    for _ in range(3):
        resumed_optimizer.step(closure_for(resumed, x, y))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


# ---------------------------------------------------------------- no host sync


_HOST_READS = ["item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"]


@contextlib.contextmanager
def patched_host_reads(replacements: dict):
    saved = {name: getattr(torch.Tensor, name) for name in replacements}
    for name, method in replacements.items():
        setattr(torch.Tensor, name, method)
    try:
        yield saved
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def host_reads_forbidden():
    """Make every way of reading a tensor's value on the host raise."""

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor was read on the host inside step()")

    return patched_host_reads({name: refuse for name in _HOST_READS})


def allowing_host_reads(closure, originals: dict):
    """The closure (the model's forward/backward) may read values; only the optimizer may not."""

    def wrapped():
        with patched_host_reads(originals):
            return closure()

    return wrapped


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (SAM, {}),
        (GSAM, {}),
        (GSAM, {"adaptive": True, "eta": 0.01, "max_grad_norm": 1.0}),
        (GSAM, {"exact_restore": True}),
    ],
)
def test_step_never_reads_a_tensor_on_the_host(cls, kwargs: dict) -> None:
    model = bn_net()
    optimizer = cls(model.parameters(), SGD, model=model, **kwargs)
    closure = closure_for(model, *images())
    optimizer.step(closure)  # the first step creates the momentum buffers
    with host_reads_forbidden() as originals:
        optimizer.step(allowing_host_reads(closure, originals))


# ---------------------------------------------------------------- kernels


def test_both_forms_of_add_scaled_agree_and_leave_the_sources_alone() -> None:
    """The CPU's one-pass addcmul and the accelerators' multi-tensor mul + add compute the same thing."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(3,), (4, 5), (2, 3, 3, 3), ()]
    targets = [torch.randn(shape, generator=generator) for shape in shapes]
    sources = [torch.randn(shape, generator=generator) for shape in shapes]
    pristine = [source.clone() for source in sources]
    factor = torch.tensor(-0.37)
    expected = [target + factor * source for target, source in zip(targets, sources)]
    for kernel in (foreach._add_scaled_per_tensor, foreach._add_scaled_multi_tensor):
        result = [target.clone() for target in targets]
        kernel(result, sources, factor)
        assert all(torch.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(result, expected))
        assert all(torch.equal(a, b) for a, b in zip(sources, pristine))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_inner_product_over_mixed_shapes_and_layouts(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(1)
    shapes = [(7,), (3, 4), (2, 3, 5, 5), (), (0, 3)]
    first = [torch.randn(shape, generator=generator).to(dtype) for shape in shapes]
    second = [torch.randn(shape, generator=generator).to(dtype) for shape in shapes]
    first[2] = first[2].to(memory_format=torch.channels_last)  # one in channels_last, its partner not
    second.append(torch.randn(2, 3, 5, 5, generator=generator).to(dtype).to(memory_format=torch.channels_last))
    first.append(torch.randn(2, 3, 5, 5, generator=generator).to(dtype).to(memory_format=torch.channels_last))
    expected = sum(float((a.double() * b.double()).sum()) for a, b in zip(first, second))
    result = foreach.inner_product(first, second)
    assert result.dim() == 0 and result.dtype == torch.promote_types(dtype, torch.float32)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5 if dtype == torch.float32 else 2e-2
    assert abs(float(result) - expected) <= tolerance * sum(
        float(a.double().norm() * b.double().norm()) for a, b in zip(first, second)
    )


def test_cache_blocks_cover_the_list_in_order() -> None:
    tensors = [torch.empty(n) for n in (10, 300, 5, 5, 1000, 1, 0, 2)]  # float32: 4 bytes each
    parts = foreach.cache_blocks(tensors, block_bytes=1024)
    assert parts == [slice(0, 2), slice(2, 5), slice(5, 8)]  # 1240 bytes, then 4040 (the large one), then the rest
    assert [id(t) for part in parts for t in tensors[part]] == [id(t) for t in tensors]
    assert foreach.cache_blocks(tensors, block_bytes=1 << 30) == [slice(0, 8)]
    assert foreach.cache_blocks([]) == [slice(None)]
