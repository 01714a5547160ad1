"""Known answers of every sharpness measure on quadratic losses, and its basic laws on a small network.

For L(w) = 1/2 (w - c)^T H (w - c) measured at its minimum w = c:
- worst case, l_2 ball: 1/2 rho^2 lambda_max(H); adaptive (|delta| scaled by |c|): 1/2 rho^2 lambda_max(D H D);
- worst case, l_inf box: the largest 1/2 d^T H d over the box's vertices (a convex function peaks at a vertex);
- average case: E[1/2 d^T H d] = 1/2 rho^2 trace(H) (Gaussian) or 1/6 rho^2 trace(H) (uniform in the box);
- Hessian: H itself.
The gradient vanishes at the minimum, so the ascent needs a random start there.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn

import sharpness
from sharpness.worst_case import checkpoints

RHO = 0.1


class Quadratic(nn.Module):
    """A "model" whose output is the loss 1/2 (w - c)^T H (w - c); its input is ignored."""

    def __init__(self, hessian: torch.Tensor, centre: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("hessian", hessian)
        self.register_buffer("centre", centre.clone())
        self.w = nn.Parameter(centre.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.w - self.centre
        return 0.5 * d @ self.hessian @ d


def output_is_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return outputs


BATCH = [(torch.zeros(1), torch.zeros(1))]
EIGENVALUES = torch.tensor([4.0, 2.0, 1.0, 0.5, 0.3, 0.1])


@pytest.fixture(scope="module")
def quadratic() -> Quadratic:
    generator = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(6, 6, generator=generator))
    hessian = basis @ torch.diag(EIGENVALUES) @ basis.T
    return Quadratic(0.5 * (hessian + hessian.T), torch.randn(6, generator=generator))


def run(model: nn.Module, **settings) -> sharpness.SharpnessResult:
    return sharpness.measure(model, BATCH, settings, loss_fn=output_is_loss)


def vertex_maximum(hessian: torch.Tensor, radii: torch.Tensor) -> float:
    return max(
        (0.5 * (radii * torch.tensor(signs)) @ hessian @ (radii * torch.tensor(signs))).item()
        for signs in itertools.product([-1.0, 1.0], repeat=len(radii))
    )


def test_worst_case_l2_is_half_rho_squared_lambda_max(quadratic):
    result = run(quadratic, kind="worst_case", ball="l2", rho=RHO, iterations=20, random_start=True)
    assert result.value == pytest.approx(0.5 * RHO**2 * EIGENVALUES.max().item(), rel=1e-3)


def test_worst_case_l2_adaptive_is_half_rho_squared_lambda_max_of_dhd(quadratic):
    scale = torch.diag(quadratic.centre.abs())
    expected = 0.5 * RHO**2 * torch.linalg.eigvalsh(scale @ quadratic.hessian @ scale).max().item()
    result = run(quadratic, kind="worst_case", ball="l2", adaptive=True, rho=RHO, iterations=50, random_start=True)
    assert result.value == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_linf_is_the_best_vertex(quadratic, adaptive):
    radii = RHO * (quadratic.centre.abs() if adaptive else torch.ones(6))
    expected = vertex_maximum(quadratic.hessian, radii)
    result = run(
        quadratic,
        kind="worst_case",
        ball="linf",
        adaptive=adaptive,
        rho=RHO,
        iterations=50,
        restarts=5,
        random_start=True,
    )
    assert result.value == pytest.approx(expected, rel=1e-4)
    assert result.value <= expected * (1 + 1e-5)  # never outside the ball


@pytest.mark.parametrize("ball, factor", [("l2", 0.5), ("linf", 1 / 6)])
def test_average_case_matches_its_expectation(quadratic, ball, factor):
    result = run(quadratic, kind="average_case", ball=ball, rho=RHO, samples=4000)
    expected = factor * RHO**2 * EIGENVALUES.sum().item()
    assert result.value == pytest.approx(expected, rel=0.05)


def test_power_iteration_finds_the_top_eigenvalue(quadratic):
    result = run(quadratic, kind="hessian_eig", iterations=200, tolerance=1e-6)
    assert result.outputs["converged"]
    assert result.value == pytest.approx(EIGENVALUES.max().item(), rel=1e-3)


def test_power_iteration_respects_the_iteration_cap(quadratic):
    result = run(quadratic, kind="hessian_eig", iterations=2, tolerance=1e-12)
    assert result.outputs["iterations_run"] == 2 and not result.outputs["converged"]


def test_hutchinson_trace_within_its_standard_error(quadratic):
    result = run(quadratic, kind="hessian_trace", samples=400)
    trace = EIGENVALUES.sum().item()
    assert result.outputs["std_error"] > 0
    assert abs(result.value - trace) < 3 * result.outputs["std_error"]


def test_hutchinson_trace_is_exact_for_a_diagonal_hessian():
    # z^T D z = trace(D) for every Rademacher z: zero variance.
    model = Quadratic(torch.diag(EIGENVALUES), torch.ones(6))
    result = run(model, kind="hessian_trace", samples=5)
    assert result.value == pytest.approx(EIGENVALUES.sum().item(), rel=1e-6)
    assert result.outputs["std_error"] == pytest.approx(0.0, abs=1e-6)


def test_checkpoints_follow_the_auto_pgd_schedule():
    # ceil(p_j * n) with p = 0.22, 0.41, 0.57, 0.70, 0.80, ... in the research code's float arithmetic
    # (0.70 * 20 = 14.000000000000002, hence 15).
    assert checkpoints(20) == [5, 9, 12, 15, 16, 18, 19]
    assert checkpoints(100) == [22, 41, 58, 70, 80, 87, 93, 99]
    assert checkpoints(1) == []


# -- a small network ------------------------------------------------------------------------------


def small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 4),
    )
    net.train()
    with torch.no_grad():  # give BatchNorm running statistics that differ from the defaults
        net(torch.randn(32, 3, 8, 8) * 2 + 0.5)
    return net


def small_batches(count: int = 2, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [
        (torch.randn(size, 3, 8, 8, generator=generator), torch.randint(0, 4, (size,), generator=generator))
        for _ in range(count)
    ]


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("worst_case", {"ball": "linf", "iterations": 3}),
        ("worst_case", {"ball": "l2", "adaptive": True, "iterations": 3, "random_start": True}),
        ("average_case", {"ball": "l2"}),
    ],
)
def test_rho_zero_gives_zero(kind, extra):
    result = sharpness.measure(small_net(), small_batches(), {"kind": kind, "rho": 0.0, **extra})
    assert result.value == 0.0
    assert result.outputs["error_increase"] == 0.0


@pytest.mark.parametrize("ball", ["linf", "l2"])
def test_worst_case_grows_with_rho(ball):
    net, batches = small_net(), small_batches()
    radii = [1e-3, 4e-3, 1.6e-2] if ball == "linf" else [0.02, 0.08, 0.32]
    values = [
        sharpness.measure(net, batches, {"kind": "worst_case", "ball": ball, "rho": rho, "iterations": 5}).value
        for rho in radii
    ]
    assert 0 < values[0] < values[1] < values[2]


def test_worst_case_is_at_least_average_case_at_the_same_radius():
    net, batches = small_net(), small_batches()
    worst = sharpness.measure(net, batches, {"kind": "worst_case", "rho": 0.005, "iterations": 5}).value
    average = sharpness.measure(net, batches, {"kind": "average_case", "rho": 0.005, "samples": 5}).value
    assert worst > abs(average)


def test_outputs_of_a_worst_case_record():
    result = sharpness.measure(
        small_net(), small_batches(), {"kind": "worst_case", "rho": 0.01, "iterations": 3}, name="mine"
    )
    record = result.record()
    assert result.name == "mine"
    assert list(record)[0] == "value" and record["value"] == result.value
    for key in ("std_error", "error_increase", "loss", "error", "batches", "wall_time_s", "rho", "ball", "kind"):
        assert key in record
    assert record["batches"] == 2 and record["rho"] == 0.01


def test_a_diverged_model_records_null_not_nan():
    net = small_net()
    with torch.no_grad():
        net[-1].weight.fill_(float("nan"))
    record = sharpness.measure(net, small_batches(), {"kind": "worst_case", "iterations": 2}).record()
    assert record["value"] is None and record["loss"] is None
