"""Benchmark: what one training step of the demo's model costs per example, by width, image size and batch.

    .venv/bin/python bench/bench_demo_step.py [--widths 12,10] [--sizes 12,10] [--batches 16,64,128]
        [--depths 18,10] [--compile]

At the demo's sizes (ResNet-18 of width ~12 on 12 px digits) a step is not
all arithmetic: a fixed cost per step (operator dispatch, oneDNN's small
convolutions) is paid whatever the batch, so a narrower model or a smaller
image saves less than its FLOPs, and a batch of 16 costs far more per example
than one of 64. This times forward, backward and an SGD step on random data,
one thread, channels-last (as the demo on a CPU), every configuration once per
round with the rounds interleaved, and prints the median CPU time per example
and its ratio to the first width and size. `--depths 18,10` adds every width at the first
size as a ResNet-10 too (ResNet-18's four stages with one BasicBlock each rather than two:
half the convolutions, the same widths and strides). `--compile` adds the first width and size
under `torch.compile` (inductor; its compilation, once per batch shape, is in the warm-up
step and not timed).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from runner.models.resnet_cifar import CifarResNet

# ResNet depth -> BasicBlocks per stage (18 is the demo's network)
BLOCKS_PER_STAGE = {18: (2, 2, 2, 2), 10: (1, 1, 1, 1)}


def per_example_seconds(model: torch.nn.Module, size: int, batch: int, examples: int = 1024) -> float:
    """CPU seconds per example of forward + backward + SGD step at this image size and batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    steps = max(3, examples // batch)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()

    step()  # warm-up: oneDNN builds its kernels for these shapes
    started = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - started) / (steps * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="12,10")
    parser.add_argument("--sizes", default="12,10")
    parser.add_argument("--batches", default="16,64,128")
    parser.add_argument("--depths", default="18", help=f"ResNet depths, of {sorted(BLOCKS_PER_STAGE)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time the first width and size compiled")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    depths = [int(d) for d in args.depths.split(",")]
    unknown = [d for d in depths if d not in BLOCKS_PER_STAGE]
    if unknown or 18 not in depths:
        parser.error(f"--depths {args.depths!r}: each must be one of {sorted(BLOCKS_PER_STAGE)}, 18 included")
    torch.set_num_threads(1)
    torch.manual_seed(0)

    def build(depth: int, width: int) -> torch.nn.Module:
        model = CifarResNet(BLOCKS_PER_STAGE[depth], num_classes=10, width=width)
        return model.to(memory_format=torch.channels_last)

    # (depth, width, size, compiled): the reference (ResNet-18, first width, first size) and
    # every other width, size or depth alone, not all their products
    configs = [(18, widths[0], sizes[0], False)] + [(18, w, sizes[0], False) for w in widths[1:]]
    configs += [(18, widths[0], s, False) for s in sizes[1:]]
    configs += [(d, w, sizes[0], False) for d in depths if d != 18 for w in widths]
    models = {(d, w, c): build(d, w) for d, w, _, c in configs}
    if args.compile:
        models[(18, widths[0], True)] = torch.compile(build(18, widths[0]))
        configs.append((18, widths[0], sizes[0], True))
    times: dict[tuple[int, int, int, bool, int], list[float]] = {}
    for _ in range(args.rounds):
        for depth, width, size, compiled in configs:
            for batch in batches:
                seconds = per_example_seconds(models[(depth, width, compiled)], size, batch)
                times.setdefault((depth, width, size, compiled, batch), []).append(seconds)
    print("| model, image | " + " | ".join(f"batch {b}" for b in batches) + " |")
    print("|---|" + "---:|" * len(batches))
    for depth, width, size, compiled in configs:
        cells = []
        for batch in batches:
            median = statistics.median(times[(depth, width, size, compiled, batch)])
            reference = statistics.median(times[(18, widths[0], sizes[0], False, batch)])
            cells.append(f"{median * 1e6:.0f} us ({median / reference:.2f})")
        name = "" if depth == 18 else f"ResNet-{depth}, "
        label = f"{name}width {width}, {size} px" + (", torch.compile" if compiled else "")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
