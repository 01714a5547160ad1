"""Process-group setup for one grid cell trained on several GPUs (or CPU processes).

A cell runs as one process per GPU. Who the processes are comes from, in order:

1. submitit, inside a SLURM (or submitit-local) job with several tasks: the
   job's tasks are the ranks (`hydra.launcher.tasks_per_node` per node);
2. torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
   for local use: `torchrun --nproc_per_node 2 launch.py ...`;
3. otherwise a single process, with no process group at all.

From submitit, `submitit.helpers.TorchDistributedEnvironment` gives the rank, the
world size, the local rank, the tasks per node and the job's first host, read
from the job's own description (SLURM's or submitit-local's variables), and
`submitit.JobEnvironment` the job id and the rank of `env_rank`. What remains
here, and why: the rendezvous port is derived from the job id (so two jobs
sharing a node do not collide) and never read from MASTER_PORT, which sbatch
copies from the submitting shell, where it may be a stale leftover (submitit's
port honours it); a job on one node meets at the loopback address, which works
even where the node's own name does not resolve; and the process group is
joined with a `tcp://` address instead of `TorchDistributedEnvironment.export()`,
which would overwrite the job's environment and CUDA_VISIBLE_DEVICES (each rank
here sees every GPU of its node and picks its own). torchrun's variables need
none of this: they are read as torchrun sets them (`env://`).

The backend follows the device: NCCL on CUDA, gloo on the CPU (what the tests
use). The runner keeps every stage's effective batch size equal to the
configured one by giving each rank `per_rank_batch_size(batch, world_size)`
examples (runner.training.pipeline), and only the main rank writes records.
"""

from __future__ import annotations

import datetime
import os
import zlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The rendezvous port of a submitit job is picked in this range from its job id.
_PORT_RANGE = (20000, 60000)
# Long enough for a slow rank to load its data before the first collective.
_INIT_TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in its cell's process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when there are several ranks (the model must be wrapped in DDP)."""
        return self.world_size > 1


def _in_submitit_job() -> bool:
    return "SUBMITIT_EXECUTOR" in os.environ


def _job_port(job_id: str) -> int:
    """The rendezvous port of a submitit job: a pure function of its id, so every task of it picks the same."""
    low, high = _PORT_RANGE
    return low + zlib.crc32(str(job_id).encode()) % (high - low)


def _submitit_ranks() -> tuple[int, int, int, str]:
    """(rank, world size, local rank, init method) of this submitit job's task."""
    import submitit
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment()  # reads the job's description; exports nothing
    one_node = env.local_world_size == env.world_size
    # One node: loopback, which works even where the node's name does not resolve.
    address = "127.0.0.1" if one_node else env.master_addr
    port = _job_port(submitit.JobEnvironment().job_id)
    return env.rank, env.world_size, env.local_rank, f"tcp://{address}:{port}"


def _torchrun_ranks() -> tuple[int, int, int, str]:
    """The same tuple from torchrun's (or any env:// launcher's) environment variables."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0, ""
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; launch with torchrun")
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    return rank, world_size, local_rank, "env://"


def _pick_device(device_pref: str, local_rank: int) -> torch.device:
    if device_pref not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be one of auto, cpu, cuda; got {device_pref!r}")
    if device_pref == "cpu" or (device_pref == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device=cuda but no CUDA device is visible to this process")
    # Each rank sees either all of the node's GPUs (pick ours) or only its own.
    index = local_rank % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def setup_distributed(device_pref: str = "auto") -> DistContext:
    """Join this cell's process group (if it has several ranks) and choose the device.

    Call once per run, before building the model. Safe to call when a group
    already exists (e.g. a test that set one up): it is reused.
    """
    # Inside a submitit job its tasks decide, even when WORLD_SIZE leaked in
    # from the shell that submitted the sweep.
    ranks = _submitit_ranks() if _in_submitit_job() else _torchrun_ranks()
    rank, world_size, local_rank, init_method = ranks
    if world_size == 1:
        return DistContext(0, 1, 0, _pick_device(device_pref, 0), True)
    device = _pick_device(device_pref, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=_INIT_TIMEOUT,
            **({"device_id": device} if device.type == "cuda" else {}),
        )
    return DistContext(rank, world_size, local_rank, device, rank == 0)


def teardown() -> None:
    """Leave the process group (no-op for a single process), so a requeue or the next run starts clean."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def env_rank() -> int:
    """This process's global rank from the environment (0 outside any multi-process launch).

    Usable before `setup_distributed` and after `teardown`, e.g. by a Hydra
    callback that must act on the main rank only.
    """
    if _in_submitit_job():
        import submitit

        return submitit.JobEnvironment().global_rank
    return int(os.environ.get("RANK", "0"))


def per_rank_batch_size(batch_size: int, world_size: int) -> int:
    """The per-rank share of a stage's batch, so the effective batch stays the configured one."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {world_size} ranks of this cell; "
            f"use a multiple of {world_size} or change hydra.launcher.tasks_per_node"
        )
    return batch_size // world_size


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Wait for every rank (no-op for a single process), e.g. before rank 0 reads what all wrote."""
    if _active():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor | float) -> torch.Tensor | float:
    """Mean of `value` over ranks; a float in gives a float out, a tensor a new tensor.

    Used for per-epoch metrics, so each rank's shard of the data counts equally
    (shards are equal-sized because the per-rank batch is).
    """
    if not _active():
        return value.clone() if isinstance(value, torch.Tensor) else value
    if isinstance(value, torch.Tensor):
        tensor = value.detach().clone()
        if not tensor.is_floating_point():  # counts: average them as float64
            tensor = tensor.double()
    else:
        tensor = torch.tensor(float(value), dtype=torch.float64)
    # NCCL reduces only CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        tensor = tensor.to(torch.device("cuda", torch.cuda.current_device()))
    elif tensor.device.type != "cpu":
        tensor = tensor.cpu()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= dist.get_world_size()
    if isinstance(value, torch.Tensor):
        return tensor.to(value.device)
    return float(tensor.item())
