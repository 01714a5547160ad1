"""The fast `sam_opt.SAM` / `sam_opt.GSAM` take the steps of the plain reference (sam_opt/reference.py).

The reference is checked first against the papers' formulas written out on a
quadratic; then both implementations train copies of small networks for several
steps, on every kernel path the fast classes have (the CPU's, in cache blocks,
and the multi-tensor one of accelerators), and must agree within float32
rounding. Last, the worked example of docs/sam_opt.md (a variant added through
the subclassing hooks) runs as the page prints it, against its reference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_opt import GSAM, SAM, foreach
from sam_opt.reference import ReferenceGSAM, ReferenceSAM

STEPS = 6


def quadratic_setup() -> tuple[torch.Tensor, nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    root = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    matrix = root @ root.T + 0.5 * torch.eye(5, dtype=torch.float64)
    return matrix, nn.Parameter(torch.randn(5, generator=generator, dtype=torch.float64))


@pytest.mark.parametrize("adaptive", [False, True])
@pytest.mark.parametrize("alpha", [None, 0.4])  # None: SAM
def test_the_reference_is_the_papers_formula(alpha, adaptive):
    matrix, w = quadratic_setup()
    rho, eta, lr = 0.3, 0.01, 0.1
    start = w.detach().clone()

    def closure() -> torch.Tensor:
        loss = 0.5 * w @ matrix @ w
        loss.backward()
        return loss

    if alpha is None:
        ReferenceSAM([w], torch.optim.SGD, rho=rho, adaptive=adaptive, eta=eta, lr=lr).step(closure)
    else:
        ReferenceGSAM([w], torch.optim.SGD, rho=rho, alpha=alpha, adaptive=adaptive, eta=eta, lr=lr).step(closure)
    g = matrix @ start
    t = start.abs() + eta if adaptive else torch.ones_like(start)
    e = rho * t * t * g / torch.linalg.vector_norm(t * g)
    g_p = matrix @ (start + e)
    g_perp = g - torch.dot(g, g_p) / torch.dot(g_p, g_p) * g_p
    expected = start - lr * (g_p - (alpha or 0.0) * g_perp)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-12, atol=1e-12)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
    )


def batches(model_name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    shape, classes = ((16, 10), 3) if model_name == "mlp" else ((8, 3, 8, 8), 4)
    return [
        (torch.randn(shape, generator=generator), torch.randint(0, classes, (shape[0],), generator=generator))
        for _ in range(STEPS)
    ]


@pytest.fixture(params=["per-tensor", "per-tensor in blocks", "multi-tensor"])
def kernels(request, monkeypatch) -> str:
    """The CPU's kernels (one block, or one tensor per block) and, with the CPU taken for an accelerator,
    the multi-tensor kernels with GSAM's polarisation identity that run on GPUs."""
    if request.param == "per-tensor in blocks":
        monkeypatch.setattr(foreach, "CPU_BLOCK_BYTES", 1)
    if request.param == "multi-tensor":
        monkeypatch.setattr(foreach, "fuses_per_tensor", lambda device: False)
    return request.param


CASES = {
    "sam": dict(rho=0.05),
    "sam-adaptive": dict(rho=0.5, adaptive=True, eta=0.01),
    "gsam": dict(rho=0.05, alpha=0.3),
    "gsam-adaptive": dict(rho=0.5, alpha=0.1, adaptive=True, eta=0.01),
    "gsam-alpha-0": dict(rho=0.05, alpha=0.0),
}
BASES = {
    "sgd-momentum": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=5e-4)),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.05)),
}


def train(model: nn.Module, optimizer, model_name: str) -> list[torch.Tensor]:
    """STEPS steps on fixed batches; the losses at w."""
    losses = []
    for x, y in batches(model_name):

        def closure() -> torch.Tensor:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses.append(optimizer.step(closure).detach())
    return losses


def build(case: str, base: str, model: nn.Module, fast: bool):
    settings = CASES[case]
    base_class, base_kwargs = BASES[base]
    gsam = "alpha" in settings
    cls = (GSAM if gsam else SAM) if fast else (ReferenceGSAM if gsam else ReferenceSAM)
    return cls(model.parameters(), base_class, **settings, **base_kwargs)


def new_model(model_name: str) -> nn.Module:
    torch.manual_seed(0)
    return mlp() if model_name == "mlp" else convnet()


@pytest.mark.parametrize("model_name", ["mlp", "convnet"])
@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_fast_path_takes_the_references_steps(case, base, model_name, kernels):
    fast_model, reference_model, start = new_model(model_name), new_model(model_name), new_model(model_name)
    fast_losses = train(fast_model, build(case, base, fast_model, fast=True), model_name)
    reference_losses = train(reference_model, build(case, base, reference_model, fast=False), model_name)
    torch.testing.assert_close(torch.stack(fast_losses), torch.stack(reference_losses), rtol=1e-5, atol=1e-6)
    for (name, fast_param), reference_param, start_param in zip(
        fast_model.named_parameters(), reference_model.parameters(), start.parameters()
    ):
        torch.testing.assert_close(fast_param, reference_param, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
        assert (fast_param - start_param).abs().max() > 1e-3  # it trained: the comparison is not of untouched weights


@pytest.mark.parametrize("model_name", ["mlp", "convnet"])
def test_the_tolerance_tells_the_variants_apart(model_name):
    """The comparison above would catch a GSAM step that were SAM's, or a SAM step that were the base step."""
    trained = {}
    for case in ("sam", "gsam", "sam-rho-0"):
        trained[case] = model = new_model(model_name)
        optimizer = (
            build(case, "sgd-momentum", model, fast=False)
            if case != "sam-rho-0"
            else ReferenceSAM(model.parameters(), torch.optim.SGD, rho=0.0, **BASES["sgd-momentum"][1])
        )
        train(model, optimizer, model_name)
    for other in ("gsam", "sam-rho-0"):
        gaps = [(a - b).abs().max().item() for a, b in zip(trained["sam"].parameters(), trained[other].parameters())]
        assert max(gaps) > 1e-4, other


# -- the worked example of docs/sam_opt.md: a variant with a new direction, through the subclassing hooks --------

DOC = Path(__file__).resolve().parent.parent / "docs" / "sam_opt.md"
MARKER = "<!-- worked example: tests/test_sam_opt_reference.py runs the next python block -->"


def worked_example() -> type:
    """The `MixedSAM` class of docs/sam_opt.md, built from the page's code as it stands."""
    text = DOC.read_text()
    assert MARKER in text, f"{DOC} lost the worked example's marker"
    block = text.split(MARKER, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(block, f"{DOC}:worked example", "exec"), namespace)  # the repository's own documentation
    return namespace["MixedSAM"]


class ReferenceMixedSAM(ReferenceSAM):
    def __init__(self, params, base_optimizer, rho: float, beta: float, **kwargs) -> None:
        super().__init__(params, base_optimizer, rho, **kwargs)
        self.beta = beta

    def direction(self, g, g_p):
        return [self.beta * gp_i + (1 - self.beta) * g_i for g_i, gp_i in zip(g, g_p)]


@pytest.mark.parametrize("beta", [0.0, 0.7, 1.0])
@pytest.mark.parametrize("base", sorted(BASES))
def test_the_worked_example_trains_and_takes_the_references_steps(beta, base, kernels):
    mixed_sam = worked_example()
    base_class, base_kwargs = BASES[base]
    fast_model, reference_model, start = new_model("convnet"), new_model("convnet"), new_model("convnet")
    fast = mixed_sam(fast_model.parameters(), base_class, rho=0.05, beta=beta, **base_kwargs)
    assert all(group["beta"] == beta for group in fast.param_groups)
    fast_losses = train(fast_model, fast, "convnet")
    reference_losses = train(
        reference_model,
        ReferenceMixedSAM(reference_model.parameters(), base_class, rho=0.05, beta=beta, **base_kwargs),
        "convnet",
    )
    torch.testing.assert_close(torch.stack(fast_losses), torch.stack(reference_losses), rtol=1e-5, atol=1e-6)
    for fast_param, reference_param, start_param in zip(
        fast_model.parameters(), reference_model.parameters(), start.parameters()
    ):
        torch.testing.assert_close(fast_param, reference_param, rtol=1e-5, atol=1e-6)
        assert (fast_param - start_param).abs().max() > 1e-3


def test_the_worked_example_checks_its_setting_at_every_step():
    mixed_sam = worked_example()
    model = new_model("mlp")
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['beta'\] must be in \[0, 1\], got 1.5"):
        mixed_sam(model.parameters(), torch.optim.SGD, beta=1.5, lr=0.1)
    optimizer = mixed_sam(model.parameters(), torch.optim.SGD, beta=0.5, lr=0.1)
    optimizer.param_groups[0]["beta"] = -0.1  # as a schedule would write it
    with pytest.raises(ValueError, match="got -0.1"):
        train(model, optimizer, "mlp")
