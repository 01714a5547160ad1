"""DistributedDataParallel with 2 CPU processes on gloo.

GSAM over a DDP model must equal: each worker's own GSAM direction from its own
batch (perturbation from the local gradient), averaged over the workers, then
one base step. SAM with rho = 0 must equal plain data-parallel SGD.

The workers are forked rather than spawned: building a DDP module imports
torch._dynamo (about 900 modules with sympy), several seconds per fresh
process, which the parent pays once and forked workers inherit.
"""

from __future__ import annotations

import copy
import functools
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_sam_opt_contract import closure_for
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sam_opt import GSAM, SAM

WORLD_SIZE = 2
STEPS = 2
SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4)
SCENARIOS = {
    "gsam": functools.partial(GSAM, base_optimizer=SGD, rho=0.1, alpha=0.3),
    "sgd": functools.partial(SAM, base_optimizer=SGD, rho=0.0),
}


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def local_batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    try:
        for name, build in SCENARIOS.items():
            model = net()
            ddp = DistributedDataParallel(model)
            optimizer = build(model.parameters(), model=ddp)
            for step in range(STEPS):
                optimizer.step(closure_for(ddp, *local_batch(rank, step)))
            torch.save(model.state_dict(), Path(out_dir) / f"{name}-{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_direction(model: nn.Module, build, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """One worker's update direction: the optimizer's step with plain SGD at lr 1 is w - d."""
    replica = copy.deepcopy(model)
    optimizer = build(replica.parameters(), base_optimizer=functools.partial(torch.optim.SGD, lr=1.0))
    optimizer.step(closure_for(replica, x, y))
    return [(a - b).detach() for a, b in zip(model.parameters(), replica.parameters())]


def reference(build) -> dict[str, torch.Tensor]:
    model = net()
    base = SGD(model.parameters())
    for step in range(STEPS):
        directions = [local_direction(model, build, *local_batch(rank, step)) for rank in range(WORLD_SIZE)]
        for param, *per_rank in zip(model.parameters(), *directions):
            param.grad = sum(per_rank) / WORLD_SIZE
        base.step()
    return model.state_dict()


def test_two_workers_match_per_worker_directions_averaged(tmp_path: Path) -> None:
    import torch._dynamo  # noqa: F401  (see the module docstring)

    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, start_method="fork")
    for name, build in SCENARIOS.items():
        expected = reference(build)
        results = [torch.load(tmp_path / f"{name}-{rank}.pt") for rank in range(WORLD_SIZE)]
        for key, value in expected.items():
            assert torch.equal(results[0][key], results[1][key]), f"{name}: workers disagree on {key}"
            assert torch.allclose(results[0][key], value, rtol=0, atol=1e-6), f"{name}: {key} differs"
