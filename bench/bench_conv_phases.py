"""Benchmark: each convolution of the demo's model, forward, input gradient and weight gradient apart.

A training step of the demo's narrow ResNet-18 is mostly convolutions, and on the
CPU oneDNN picks a different kernel for each shape and direction: the small maps
of the last stage (2x2 at 12 px, 1x1 at 8 px) are where its weight gradient falls
back to a generic GEMM that also multiplies the padding. This times every
distinct convolution of the model, at the demo's batch, in each direction, so
that the cost of a step can be traced to a layer and a direction before anything
is rewritten:

    .venv/bin/python bench/bench_conv_phases.py [--width 12] [--size 12] [--batch 64] [--rounds 5]

One torch thread, channels-last as the demo trains; CPU time (`time.process_time`),
median of interleaved rounds, for one call of each convolution. GFLOP/s counts
every multiply-add of the nominal convolution, padding included, so a kernel that
skips the padded taps shows more than the machine's rate.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from runner.models import cifar_resnet18

DIRECTIONS = ("forward", "input grad", "weight grad")


def conv_inputs(model: torch.nn.Module, size: int, batch: int) -> dict[str, tuple[torch.nn.Conv2d, torch.Tensor]]:
    """Every convolution of the model with an input of the shape it sees in training, by layer name."""
    seen: dict[str, tuple[torch.nn.Conv2d, torch.Tensor]] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen.setdefault(name, (module, args[0].detach()))  # returning None keeps the output as it is

        return hook

    hooks = [
        module.register_forward_hook(keep(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv2d)
    ]
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return seen


def direction_calls(conv: torch.nn.Conv2d, x: torch.Tensor) -> dict[str, Callable[[], object]]:
    """The three computations of one convolution in a training step, each as a call of its own."""
    weight = conv.weight.detach()
    out = torch.nn.functional.conv2d(x, weight, None, conv.stride, conv.padding)
    grad_out = torch.randn_like(out)

    def backward(mask: tuple[bool, bool, bool]) -> Callable[[], object]:
        return lambda: torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, conv.stride, conv.padding, conv.dilation, False, [0, 0], 1, list(mask)
        )

    return {
        "forward": lambda: torch.nn.functional.conv2d(x, weight, None, conv.stride, conv.padding),
        "input grad": backward((True, False, False)),
        "weight grad": backward((False, True, False)),
    }


def cpu_seconds(call: Callable[[], object], repeats: int) -> float:
    """CPU seconds of one call, over `repeats` calls after one that builds the kernel."""
    call()
    started = time.process_time()
    for _ in range(repeats):
        call()
    return (time.process_time() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=12)
    parser.add_argument("--size", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="calls per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = cifar_resnet18(num_classes=10, width=args.width).to(memory_format=torch.channels_last)
    convs = conv_inputs(model, args.size, args.batch)
    calls = {name: direction_calls(conv, x) for name, (conv, x) in convs.items()}
    # The first convolution reads the images, whose gradient no training step computes.
    del calls[next(iter(calls))]["input grad"]
    samples: dict[tuple[str, str], list[float]] = {(n, d): [] for n in calls for d in calls[n]}
    for _ in range(args.rounds):
        for name, by_direction in calls.items():
            for direction, call in by_direction.items():
                samples[(name, direction)].append(cpu_seconds(call, args.repeats))
    median = {key: statistics.median(values) for key, values in samples.items()}
    total = sum(median.values())

    print(f"width {args.width}, {args.size} px, batch {args.batch}: every convolution of one step, CPU ms per call")
    print("| convolution | in -> out, map | " + " | ".join(DIRECTIONS) + " | share of all |")
    print("|---|---|" + "---:|" * (len(DIRECTIONS) + 1))
    for name, (conv, x) in convs.items():
        macs = x.shape[0] * conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        out_size = (x.shape[2] + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        macs *= out_size * out_size
        cells = []
        for direction in DIRECTIONS:
            seconds = median.get((name, direction))
            cells.append("-" if seconds is None else f"{seconds * 1e3:.2f} ({2 * macs / seconds / 1e9:.0f} GFLOP/s)")
        share = sum(median.get((name, d), 0.0) for d in DIRECTIONS) / total
        label = f"{name} {conv.kernel_size[0]}x{conv.kernel_size[1]}"
        shape = f"{conv.in_channels} -> {conv.out_channels}, {x.shape[2]}x{x.shape[3]}"
        print(f"| {label} | {shape} | " + " | ".join(cells) + f" | {share:.1%} |")
    per_direction = ", ".join(f"{d} {sum(median.get((n, d), 0.0) for n in calls) * 1e3:.1f}" for d in DIRECTIONS)
    print(f"\nall convolutions: {total * 1e3:.1f} ms per step ({per_direction})")


if __name__ == "__main__":
    main()
