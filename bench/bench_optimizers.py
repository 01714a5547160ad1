"""How much SAM and GSAM cost on top of SGD, and what the foreach implementation saves.

Three measurements on the CIFAR ResNet-18 of `runner.models`, in one run:

1. Optimizer-side work at full width (11.2 M parameters): everything in
   `step` except the two forward-backward passes, for `sam_opt.SAM`/`GSAM`
   and for `LoopSAM`, a straightforward per-parameter Python loop over the
   same math written below. The closure only installs stored gradients, and
   the weights and gradients are reset (untimed) before every call, so each
   call does identical work. Ours and the loop alternate within every round;
   the figure is the median over rounds of the per-round ratio.
2. Aten operators per step (torch.profiler) for the same pair: those the
   Python code dispatches and, of them, those that can launch a kernel (views
   and allocations launch none), i.e. the kernel launches on a GPU, where a
   foreach operator is one multi-tensor kernel per chunk of tensors. sam_opt
   takes another path on the CPU (one-pass addcmul, dot products, cache
   blocks; see `sam_opt.foreach`), so it is counted twice: as it runs here,
   and on the path a GPU runs (forced on the CPU). On the CPU a foreach
   operator runs a loop of per-tensor kernels inside one call; the nested
   total is printed as well.
3. Whole-step ratios SAM/SGD and GSAM/SGD with real forward-backward passes
   on a narrow ResNet-18 (so it runs on a CPU in a couple of minutes). SGD is
   `SAM(rho=0)`; the three alternate within every round (order rotated), and
   the figure is the median of the per-round ratios.

    python bench/bench_optimizers.py                  # the figures in docs/benchmarks.md
    python bench/bench_optimizers.py --rounds 5 --step-rounds 5   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import platform
import statistics
import sys
import time
import unittest.mock
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.models.resnet_cifar import cifar_resnet18  # noqa: E402
from sam_opt import GSAM, SAM, foreach  # noqa: E402

LR, RHO, ALPHA = 0.1, 0.05, 0.02  # the paper's CNN settings: plain SGD, no momentum


class LoopSAM:
    """SAM / GSAM (alpha given) written the straightforward way: one Python loop per parameter.

    Same math as `sam_opt`: e = rho g / (||g|| + 1e-12), restore by subtracting
    e, GSAM's g_perp = g - <g, g_p> / ||g_p||^2 g_p and d = g_p - alpha g_perp,
    BatchNorm frozen in the second pass by zeroing its momentum, plain SGD.
    """

    def __init__(self, params: list[nn.Parameter], model: nn.Module, alpha: float | None = None) -> None:
        self.params, self.model, self.alpha = params, model, alpha
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {p: {} for p in params}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @contextlib.contextmanager
    def _bn_frozen(self):
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in norms]
        for m in norms:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, momentum in zip(norms, saved):
                m.momentum = momentum

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        self.zero_grad()
        with torch.enable_grad():
            loss = closure()
        grad_norm = torch.norm(torch.stack([p.grad.norm(2) for p in self.params]), 2)
        scale = RHO / (grad_norm + 1e-12)
        for p in self.params:
            e = p.grad * scale
            p.add_(e)
            self.state[p]["e"] = e
            if self.alpha is not None:
                self.state[p]["g"] = p.grad.clone()
        self.zero_grad()
        with torch.enable_grad(), self._bn_frozen():
            closure()
        for p in self.params:
            p.sub_(self.state[p]["e"])
        if self.alpha is not None:
            inner = sum((self.state[p]["g"] * p.grad).sum() for p in self.params)
            second_sq = sum((p.grad**2).sum() for p in self.params)
            for p in self.params:
                g_perp = self.state[p]["g"] - inner / second_sq * p.grad
                p.grad.sub_(self.alpha * g_perp)
        for p in self.params:
            p.add_(p.grad, alpha=-LR)
        return loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, work: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    work()
    sync(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------- optimizer-side work


class StoredGradients:
    """A closure that installs fixed gradients (first call: g, second: g_p) instead of a backward pass."""

    def __init__(self, params: list[nn.Parameter], seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.params = params
        self.pristine = [
            [torch.randn(p.shape, generator=generator).mul_(1e-3).to(p.device) for p in params] for _ in range(2)
        ]
        self.sources = [[g.clone() for g in grads] for grads in self.pristine]
        self.weights = [p.detach().clone() for p in params]
        self.calls = 0

    def reset(self) -> None:
        """Undo what a step did to the weights and the stored gradients (untimed)."""
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.weights)
            for sources, pristine in zip(self.sources, self.pristine):
                torch._foreach_copy_(sources, pristine)
        self.calls = 0

    def __call__(self) -> torch.Tensor:
        for p, g in zip(self.params, self.sources[self.calls % 2]):
            p.grad = g
        self.calls += 1
        return torch.zeros(())


def optimizer_side(device: torch.device, rounds: int) -> tuple[dict, dict]:
    model = cifar_resnet18(width=64).to(device)
    params = list(model.parameters())
    closure = StoredGradients(params)
    sgd = functools.partial(torch.optim.SGD, lr=LR, foreach=True)
    pairs = {
        "SAM": (SAM(params, sgd, rho=RHO, model=model), LoopSAM(params, model)),
        "GSAM": (GSAM(params, sgd, rho=RHO, alpha=ALPHA, model=model), LoopSAM(params, model, alpha=ALPHA)),
    }

    def one(optimizer) -> float:
        closure.reset()
        return timed(device, lambda: optimizer.step(closure))

    def closure_only() -> float:
        closure.reset()
        return timed(device, lambda: (closure(), closure()))

    for _ in range(3):  # warm-up: buffers, the allocator's free lists, caches
        for ours, loop in pairs.values():
            one(ours), one(loop)
    times: dict = {name: {"ours": [], "loop": [], "ratio": []} for name in pairs}
    overhead = []
    for index in range(rounds):
        overhead.append(closure_only())
        for name, (ours, loop) in pairs.items():
            first, second = (ours, loop) if index % 2 == 0 else (loop, ours)
            t_first, t_second = one(first), one(second)
            t_ours, t_loop = (t_first, t_second) if first is ours else (t_second, t_first)
            times[name]["ours"].append(t_ours)
            times[name]["loop"].append(t_loop)
            times[name]["ratio"].append(t_loop / t_ours)
    median_overhead = statistics.median(overhead)
    summary = {
        name: {
            "ours_ms": 1e3 * (statistics.median(t["ours"]) - median_overhead),
            "loop_ms": 1e3 * (statistics.median(t["loop"]) - median_overhead),
            "speedup": statistics.median(t["ratio"]),
        }
        for name, t in times.items()
    }
    counts = {
        name: {
            "ours": count_ops(ours, closure),
            "ours_gpu_path": count_ops(ours, closure, multi_tensor=True),
            "loop": count_ops(loop, closure),
        }
        for name, (ours, loop) in pairs.items()
    }
    return summary, counts


# Aten operators that only make views of existing memory or allocate it: they launch no kernel.
NO_KERNEL_OPS = {
    "aten::alias", "aten::as_strided", "aten::detach", "aten::empty", "aten::empty_like",
    "aten::empty_strided", "aten::expand", "aten::lift_fresh", "aten::permute", "aten::reshape",
    "aten::_reshape_alias", "aten::select", "aten::slice", "aten::squeeze", "aten::t",
    "aten::transpose", "aten::unsqueeze", "aten::view", "aten::_unsafe_view",
}  # fmt: skip


def count_ops(optimizer, closure: StoredGradients, multi_tensor: bool = False) -> dict[str, int]:
    """Aten operators of one step: dispatched ones (no aten operator above them), those of them that
    can launch a kernel (not a view or an allocation), and all of them, nested ones included.

    `multi_tensor` runs sam_opt's accelerator path (multi-tensor kernels: mul + add, polarisation)
    on the CPU, so the count is the one a GPU would see; by default it counts the CPU path.
    """
    closure.reset()
    path = unittest.mock.patch.object(foreach, "fuses_per_tensor", lambda device: False)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    with path if multi_tensor else contextlib.nullcontext(), profiler as profile:
        optimizer.step(closure)
    aten = [event for event in profile.events() if event.name.startswith("aten::")]
    dispatched = [event for event in aten if event.cpu_parent is None or not event.cpu_parent.name.startswith("aten::")]
    launching = [event for event in dispatched if event.name not in NO_KERNEL_OPS]
    return {"dispatched": len(dispatched), "launching": len(launching), "all": len(aten)}


# ---------------------------------------------------------------- whole step


def whole_step(device: torch.device, width: int, batch_size: int, rounds: int) -> dict:
    torch.manual_seed(0)
    reference = cifar_resnet18(width=width).to(device)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    runs = {}
    variants = [("SGD", SAM, {"rho": 0.0}), ("SAM", SAM, {"rho": RHO}), ("GSAM", GSAM, {"rho": RHO, "alpha": ALPHA})]
    for name, cls, kwargs in variants:
        model = cifar_resnet18(width=width).to(device)
        model.load_state_dict(reference.state_dict())
        optimizer = cls(model.parameters(), torch.optim.SGD, lr=LR, model=model, **kwargs)

        def closure(model=model) -> torch.Tensor:
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        runs[name] = (optimizer, closure)
    names = list(runs)
    for optimizer, closure in runs.values():  # warm-up
        optimizer.step(closure)
    ratios: dict = {"SAM": [], "GSAM": []}
    seconds: dict = {name: [] for name in names}
    for index in range(rounds):
        order = names[index % 3 :] + names[: index % 3]
        this_round = {name: timed(device, lambda name=name: runs[name][0].step(runs[name][1])) for name in order}
        for name, value in this_round.items():
            seconds[name].append(value)
        for name in ratios:
            ratios[name].append(this_round[name] / this_round["SGD"])
    return {
        "seconds": {name: statistics.median(values) for name, values in seconds.items()},
        "ratio": {name: statistics.median(values) for name, values in ratios.items()},
    }


# ---------------------------------------------------------------- report


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {torch.get_num_threads()} torch thread(s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads on the CPU")
    parser.add_argument("--rounds", type=int, default=60, help="rounds of the optimizer-side comparison")
    parser.add_argument("--step-rounds", type=int, default=20, help="rounds of the whole-step comparison")
    parser.add_argument("--width", type=int, default=16, help="ResNet-18 width for the whole-step ratio")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    print(f"machine: {machine(device)}; torch {torch.__version__}; python {platform.python_version()}")
    print(f"command: python {' '.join(sys.argv)}\n")
    summary, counts = optimizer_side(device, args.rounds)
    print(f"Optimizer-side work per step, ResNet-18 width 64 (11.2 M params), median of {args.rounds} rounds")
    print("| optimizer | sam_opt (ms) | Python loop (ms) | speed-up |")
    print("|---|---|---|---|")
    for name, row in summary.items():
        print(f"| {name} | {row['ours_ms']:.1f} | {row['loop_ms']:.1f} | {row['speedup']:.2f}x |")
    print("\nAten operators per step (one step, exact counts)")
    print(
        "| optimizer | kernel-launching: sam_opt GPU path / CPU path / loop | fewer (GPU path) "
        "| dispatched: sam_opt GPU path / CPU path / loop | all incl. nested: sam_opt CPU path / loop |"
    )
    print("|---|---|---|---|---|")
    for name, count in counts.items():
        gpu, cpu, loop = count["ours_gpu_path"], count["ours"], count["loop"]
        print(
            f"| {name} | {gpu['launching']} / {cpu['launching']} / {loop['launching']} "
            f"| {loop['launching'] / gpu['launching']:.1f}x "
            f"| {gpu['dispatched']} / {cpu['dispatched']} / {loop['dispatched']} | {cpu['all']} / {loop['all']} |"
        )
    result = whole_step(device, args.width, args.batch_size, args.step_rounds)
    print(
        f"\nWhole step, ResNet-18 width {args.width}, batch {args.batch_size}, "
        f"median of {args.step_rounds} interleaved rounds (SGD = SAM with rho 0)"
    )
    print("| optimizer | seconds per step | ratio to SGD |")
    print("|---|---|---|")
    for name, value in result["seconds"].items():
        ratio = f"{result['ratio'][name]:.3f}" if name in result["ratio"] else "1"
        print(f"| {name} | {value:.4f} | {ratio} |")


if __name__ == "__main__":
    main()
