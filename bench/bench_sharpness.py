"""Benchmark: our worst-case m-sharpness against a research-style implementation of the same algorithm.

"ours" is `sharpness.measure` with the paper's settings (l_inf, rho 2e-4, 20
auto-PGD iterations, no random start, m = 128): foreach arithmetic on the
parameters, no state-dict copies, decisions on the device, and one
forward-backward pass per iteration (the pass that evaluates an iterate also
gives the gradient for the next step).

The baseline (`research_worst_case` below) is written the way the research code
does it: a deep copy of the state dict on every improvement and `load_state_dict`
to restart, dicts of per-parameter tensors updated in Python loops, the loss read
with `.item()` after every step, and a separate forward pass to evaluate each
iterate before the forward-backward pass that computes the next gradient. It
follows the same algorithm as `sharpness.worst_case` step for step (momentum
with the iterate before last, the checkpoint schedule, restarts from the best
perturbation), so both must give the same value; the benchmark checks that.

Both run on a CIFAR ResNet-18 (`--width`, 16 on a CPU) with BatchNorm running
statistics set by a few training-mode passes, on the same random CIFAR-shaped
batches, interleaved (ours, baseline, baseline, ours, ...) for `--rounds`
rounds on a shared, noisy machine; the table reports medians of the times and
of the per-round ratios.

    .venv/bin/python bench/bench_sharpness.py --device cpu             # 2 CPU cores: ~3 min
    python bench/bench_sharpness.py --device cuda --width 64           # a GPU

Progress goes to stderr, the Markdown table to stdout (and `--markdown FILE`).
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import sharpness  # noqa: E402
from runner.models import cifar_resnet18  # noqa: E402
from sharpness.precision import float32_exact  # noqa: E402

PAPER = {
    "kind": "worst_case",
    "ball": "linf",
    "adaptive": False,
    "rho": 0.0002,
    "iterations": 20,
    "restarts": 1,
    "random_start": False,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the baseline


def research_checkpoints(n_iters: int) -> list[int]:
    """The auto-PGD checkpoints, as the research code computes them."""
    p, w = [0, 0.22], [0, math.ceil(n_iters * 0.22)]
    while w[-1] < n_iters and w[-1] != w[-2]:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
        w.append(math.ceil(p[-1] * n_iters))
    return w[1:]


def research_worst_case(model: nn.Module, batches: list, rho: float, n_iters: int) -> float:
    """Worst-case l_inf m-sharpness, research-code style (see the module docstring)."""
    was_training = model.training
    model.eval()
    orig_state = copy.deepcopy(model.state_dict())
    orig = {param: param.clone() for param in model.parameters()}
    checkpoints = research_checkpoints(n_iters)
    total, n_batches = 0.0, 0
    for x, y in batches:
        with torch.no_grad():
            init_loss = F.cross_entropy(model(x), y).item()
        delta = {param: torch.zeros_like(param) for param in model.parameters()}
        prev_delta = {param: delta[param].clone() for param in delta}
        worst_loss, worst_state = init_loss, copy.deepcopy(model.state_dict())
        worst_delta = {param: delta[param].clone() for param in delta}
        step, prev_step, prev_worst, prev_cp, updates = 2 * rho, 2 * rho, init_loss, 0, 0
        for i in range(n_iters):
            # Gradient at the current weights.
            model.zero_grad()
            F.cross_entropy(model(x), y).backward()
            with torch.no_grad():
                backup = {param: delta[param].clone() for param in delta}
                for param in model.parameters():
                    z = torch.clamp(delta[param] + step * param.grad.sign(), -rho, rho)
                    delta[param] = 0.75 * z + 0.25 * prev_delta[param]
                    param.data = orig[param] + delta[param]
                prev_delta = backup
            # Evaluate the new iterate.
            with torch.no_grad():
                curr_loss = F.cross_entropy(model(x), y).item()
            if curr_loss > worst_loss:
                worst_loss = curr_loss
                worst_state = copy.deepcopy(model.state_dict())
                worst_delta = {param: delta[param].clone() for param in delta}
                updates += 1
            if i in checkpoints:
                cond1 = updates < 0.75 * (i - prev_cp)
                cond2 = prev_step == step and prev_worst == worst_loss
                prev_step, prev_worst, prev_cp, updates = step, worst_loss, i, 0
                if cond1 or cond2:
                    step *= 0.5
                    model.load_state_dict(worst_state)
                    delta = {param: worst_delta[param].clone() for param in worst_delta}
                    prev_delta = {param: worst_delta[param].clone() for param in worst_delta}
        total += worst_loss - init_loss
        n_batches += 1
        model.load_state_dict(orig_state)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return total / n_batches


# ----------------------------------------------------------------------------- setup


def build_model(width: int, device: torch.device, seed: int = 0) -> nn.Module:
    """A CIFAR ResNet-18 whose BatchNorm running statistics come from a few training-mode passes."""
    torch.manual_seed(seed)
    model = cifar_resnet18(num_classes=10, width=width, in_channels=3).to(device)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, 3, 32, 32, device=device))
    return model.eval()


def random_batches(examples: int, batch_size: int, device: torch.device, seed: int = 1) -> list:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(examples, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (examples,), generator=generator)
    return [
        (images[i : i + batch_size].to(device), labels[i : i + batch_size].to(device))
        for i in range(0, examples, batch_size)
    ]


def timed(fn) -> tuple[float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--width", type=int, default=None, help="ResNet-18 width (default 16 on cpu, 64 on cuda)")
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    width = args.width or (64 if device.type == "cuda" else 16)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(width, device)
    batches = random_batches(args.examples, args.batch_size, device)
    settings = {**PAPER, "iterations": args.iterations, "batch_size": args.batch_size, "examples": args.examples}

    def ours() -> float:
        return sharpness.measure(model, batches, settings).value

    def baseline() -> float:
        with float32_exact(device.type):  # the same exact float32 arithmetic as ours
            return research_worst_case(model, batches, PAPER["rho"], args.iterations)

    log(f"warm-up on {device} (ResNet-18 width {width}, {args.examples} examples, m = {args.batch_size})")
    ours(), baseline()
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    values: dict[str, float] = {}
    for round_index in range(args.rounds):
        order = ("ours", "baseline") if round_index % 2 == 0 else ("baseline", "ours")
        for name in order:
            seconds, value = timed(ours if name == "ours" else baseline)
            times[name].append(seconds)
            values[name] = value
        log(
            f"round {round_index + 1}/{args.rounds}: ours {times['ours'][-1]:.2f} s, "
            f"baseline {times['baseline'][-1]:.2f} s"
        )
    ratios = [b / o for o, b in zip(times["ours"], times["baseline"])]
    difference = abs(values["ours"] - values["baseline"])
    same = difference <= 1e-6 + 1e-4 * abs(values["baseline"])
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    lines = [
        f"Worst-case l_inf m-sharpness (rho 2e-4, {args.iterations} iterations, m = {args.batch_size}, "
        f"{args.examples} examples), CIFAR ResNet-18 width {width}, {device.type} ({device_name}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}), {args.rounds} interleaved rounds, medians:",
        "",
        "| implementation | time (s) | value |",
        "|---|---:|---:|",
        f"| ours (`sharpness.measure`) | {statistics.median(times['ours']):.2f} | {values['ours']:.7g} |",
        f"| research style (deep copies, per-parameter loops) | {statistics.median(times['baseline']):.2f} "
        f"| {values['baseline']:.7g} |",
        "",
        f"Speed-up (median of per-round ratios): **{statistics.median(ratios):.2f}x** "
        f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}). "
        f"Values agree: {'yes' if same else 'NO'} (|difference| = {difference:.2e}).",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if not same:
        raise SystemExit("the two implementations disagree")


if __name__ == "__main__":
    main()
