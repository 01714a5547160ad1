"""A measure gives the model back exactly as it was, restores torch's precision settings, and is reproducible."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import sharpness
from sharpness.precision import float32_exact, precision_state

MEASURES = {
    "worst_linf": {"kind": "worst_case", "ball": "linf", "rho": 0.01, "iterations": 4},
    "worst_l2_adaptive_random": {
        "kind": "worst_case",
        "ball": "l2",
        "adaptive": True,
        "rho": 0.5,
        "iterations": 4,
        "restarts": 2,
        "random_start": True,
    },
    "average_linf": {"kind": "average_case", "ball": "linf", "rho": 0.01, "samples": 3},
    "hessian_eig": {"kind": "hessian_eig", "iterations": 3},
    "hessian_trace": {"kind": "hessian_trace", "samples": 3},
}


def net_with_batchnorm_and_dropout() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 4),
    )
    net.train()
    with torch.no_grad():
        net(torch.randn(32, 3, 8, 8) + 1.0)
    return net


def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(16, 3, 8, 8, generator=generator), torch.randint(0, 4, (16,), generator=generator))
        for _ in range(2)
    ]


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: (v.clone(), v.data_ptr(), v.dtype) for k, v in model.state_dict(keep_vars=True).items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["state"].keys() == after["state"].keys()
    for key, (value, pointer, dtype) in before["state"].items():
        now, now_pointer, now_dtype = after["state"][key]
        assert now_dtype == dtype and now_pointer == pointer, key
        assert torch.equal(now, value), key  # bit for bit
    for grad, now in zip(before["grads"], after["grads"]):
        assert (grad is None and now is None) or torch.equal(grad, now)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_model_is_restored_exactly(name):
    model = net_with_batchnorm_and_dropout()
    model[1].eval()  # a mixed train/eval state must come back as it was
    model[-1].weight.requires_grad_(False)  # a frozen parameter is perturbed, then frozen again
    model[0].weight.grad = torch.full_like(model[0].weight, 3.0)
    before = snapshot(model)
    sharpness.measure(model, batches(), MEASURES[name])
    assert_same(before, snapshot(model))


def test_model_is_restored_when_the_measure_fails():
    model = net_with_batchnorm_and_dropout()
    before = snapshot(model)

    def broken_loss(outputs, targets):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        sharpness.measure(model, batches(), MEASURES["worst_linf"], loss_fn=broken_loss)
    assert_same(before, snapshot(model))


def test_a_bfloat16_model_is_measured_in_float32_and_stays_bfloat16():
    model = net_with_batchnorm_and_dropout().to(torch.bfloat16)
    before = snapshot(model)
    data = [(x.to(torch.bfloat16), y) for x, y in batches()]
    result = sharpness.measure(model, data, MEASURES["worst_linf"])
    assert result.value > 0
    assert_same(before, snapshot(model))


def test_channels_last_weights_give_the_same_value():
    model = net_with_batchnorm_and_dropout()
    plain = sharpness.measure(model, batches(), MEASURES["worst_linf"]).value
    model = model.to(memory_format=torch.channels_last)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    data = [(x.to(memory_format=torch.channels_last), y) for x, y in batches()]
    assert sharpness.measure(model, data, MEASURES["worst_linf"]).value == pytest.approx(plain, rel=1e-4)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_precision_settings_are_forced_inside_and_restored_after():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.allow_tf32 = True
        try:
            before = precision_state()
            with float32_exact("cpu"):
                assert torch.get_float32_matmul_precision() == "highest"
                assert torch.backends.cudnn.allow_tf32 is False
                assert torch.backends.cudnn.conv.fp32_precision == "ieee"
                assert torch.backends.cuda.matmul.fp32_precision == "ieee"
                with torch.autocast("cpu", dtype=torch.bfloat16):  # an outer autocast is switched off
                    pass
            assert precision_state() == before
            sharpness.measure(net_with_batchnorm_and_dropout(), batches(), MEASURES["worst_linf"])
            assert precision_state() == before
        finally:
            torch.set_float32_matmul_precision("highest")


def test_autocast_around_the_call_is_ignored():
    model = net_with_batchnorm_and_dropout()
    plain = sharpness.measure(model, batches(), MEASURES["worst_linf"]).value
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = sharpness.measure(model, batches(), MEASURES["worst_linf"]).value
    assert under_autocast == plain


@pytest.mark.parametrize("name", ["worst_l2_adaptive_random", "average_linf", "hessian_eig", "hessian_trace"])
def test_same_seed_same_value_other_seed_other_value(name):
    model = net_with_batchnorm_and_dropout()
    first = sharpness.measure(model, batches(), {**MEASURES[name], "seed": 3}).value
    again = sharpness.measure(model, batches(), {**MEASURES[name], "seed": 3}).value
    other = sharpness.measure(model, batches(), {**MEASURES[name], "seed": 4}).value
    assert first == again
    assert other != first


def test_the_model_must_be_on_the_requested_device():
    with pytest.raises(ValueError, match="model is on cpu"):
        sharpness.measure(net_with_batchnorm_and_dropout(), batches(), MEASURES["worst_linf"], device="meta")


def test_no_batches_is_an_error():
    with pytest.raises(ValueError, match="no batches"):
        sharpness.measure(net_with_batchnorm_and_dropout(), [], MEASURES["worst_linf"])


def test_worst_case_equals_the_research_style_reference():
    """The benchmark's baseline (deep copies, per-parameter loops) runs the same algorithm: same value."""
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_sharpness.py"
    spec = importlib.util.spec_from_file_location("bench_sharpness", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model = net_with_batchnorm_and_dropout().eval()
    data = batches()
    for rho, iterations in ((0.002, 20), (0.05, 12)):
        ours = sharpness.measure(model, data, {"kind": "worst_case", "rho": rho, "iterations": iterations}).value
        reference = bench.research_worst_case(model, data, rho, iterations)
        assert ours == pytest.approx(reference, rel=1e-5, abs=1e-7)


def test_wrappers_are_measured_through_the_plain_module():
    from sharpness.model_state import is_channels_last, unwrap

    model = net_with_batchnorm_and_dropout()
    wrapped = nn.DataParallel(model)
    assert unwrap(wrapped) is model
    before = snapshot(model)
    assert (
        sharpness.measure(wrapped, batches(), MEASURES["worst_linf"]).value
        == sharpness.measure(model, batches(), MEASURES["worst_linf"]).value
    )
    assert_same(before, snapshot(model))
    assert not is_channels_last(model)
    assert is_channels_last(model.to(memory_format=torch.channels_last))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_ascent_never_waits_for_the_gpu(monkeypatch):
    """Decisions stay on the device: an ascent runs with synchronising calls turned into errors."""
    import sharpness.worst_case as worst_case

    real = worst_case._ascend

    def checked(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return real(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(worst_case, "_ascend", checked)
    model = net_with_batchnorm_and_dropout().cuda()
    data = [(x.cuda(), y.cuda()) for x, y in batches()]
    for name in ("worst_linf", "worst_l2_adaptive_random"):
        assert sharpness.measure(model, data, MEASURES[name]).value > 0
