"""Multi-process cells: the rank discovery and collectives of runner.training.distributed, and a
2-process DistributedDataParallel cell through torchrun on the gloo backend.

The DDP cell is checked against the same cell trained by one process: with a
model whose layers do not mix examples (a ViT: LayerNorm, no BatchNorm), plain
SGD and no stochastic depth, two ranks each taking half of every global batch
compute exactly the single-process step, so equal losses show that the
effective batch is the configured one (a per-rank batch equal to the configured
one would halve the steps and change the losses).
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import REPO, launch

from runner.training import distributed

# A ViT small enough for a CPU (1 block of width 32 on 8x8 images, patch 4),
# without stochastic depth, so one process and two ranks compute the same steps.
DDP_CELL = [
    "dataset=synthetic",
    "model=vit_tiny",
    "model.depth=1",
    "model.embed_dim=32",
    "model.num_heads=2",
    "model.drop_path_rate=0.0",
    "optimizer=sgd",
    "schedule=constant",
    "train.epochs=2",
    "train.batch_size=32",
    "train.eval_batch_size=128",
    "sharpness=none",
    "progress=false",
    "device=cpu",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    os.environ.pop("SUBMITIT_EXECUTOR", None)
    ctx = distributed.setup_distributed("cpu")
    try:
        result = {
            "context": [ctx.rank, ctx.world_size, ctx.local_rank, str(ctx.device), ctx.is_main],
            "env_rank": distributed.env_rank(),
            "mean_float": distributed.all_reduce_mean(float(ctx.rank)),
            "mean_tensor": distributed.all_reduce_mean(torch.tensor([ctx.rank, 10.0 * ctx.rank])).tolist(),
            "mean_int": distributed.all_reduce_mean(torch.tensor(ctx.rank + 1)).item(),
            "per_rank_batch": distributed.per_rank_batch_size(64, ctx.world_size),
        }
        distributed.barrier()
    finally:
        distributed.teardown()
    Path(out_dir, f"{rank}.json").write_text(json.dumps(result))


def test_collectives_on_two_gloo_processes(tmp_path):
    port = _free_port()
    mp.start_processes(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    results = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in range(2)]
    for rank, result in enumerate(results):
        assert result["context"] == [rank, 2, rank, "cpu", rank == 0]
        assert result["env_rank"] == rank
        assert result["mean_float"] == pytest.approx(0.5)
        assert result["mean_tensor"] == pytest.approx([0.5, 5.0])
        assert result["mean_int"] == pytest.approx(1.5)
        assert result["per_rank_batch"] == 32


def test_single_process_without_launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    ctx = distributed.setup_distributed("cpu")
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.device == torch.device("cpu")
    # The helpers are no-ops on one process, so the runner calls them unconditionally.
    assert distributed.all_reduce_mean(2.5) == 2.5
    distributed.barrier()
    distributed.teardown()


def test_a_submitit_task_takes_its_ranks_from_submitit_and_its_port_from_its_job(monkeypatch):
    """submitit describes the task (rank 1 of 2, one node); the rendezvous is the loopback at the job's own
    port, never a MASTER_PORT that sbatch copied from the submitting shell."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    for name, value in {
        "SUBMITIT_LOCAL_JOB_ID": "4242",
        "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
        "SUBMITIT_LOCAL_GLOBALID": "1",
        "SUBMITIT_LOCAL_LOCALID": "1",
        "MASTER_PORT": "1234",
    }.items():
        monkeypatch.setenv(name, value)
    rank, world_size, local_rank, init_method = distributed._submitit_ranks()
    assert (rank, world_size, local_rank) == (1, 2, 1)
    assert init_method == f"tcp://127.0.0.1:{distributed._job_port('4242')}" != "tcp://127.0.0.1:1234"
    assert distributed.env_rank() == 1


def test_torchrun_environment_without_rendezvous_is_an_error(monkeypatch):
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        distributed.setup_distributed("cpu")


def test_per_rank_batch_size_keeps_the_global_batch():
    assert distributed.per_rank_batch_size(128, 4) == 32
    with pytest.raises(ValueError, match="not divisible"):
        distributed.per_rank_batch_size(30, 4)


def _metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_two_rank_ddp_cell_equals_one_process(tmp_path):
    """torchrun --nproc_per_node 2 launch.py ...: one record by rank 0, the single-process result."""
    single_root, ddp_root = tmp_path / "single", tmp_path / "ddp"
    launch([*DDP_CELL, f"results_root={single_root}"], check=True, timeout=600)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "launch.py"),
        *DDP_CELL,
        f"results_root={ddp_root}",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    (single_record,) = single_root.rglob("result.json")
    ddp_records = list(ddp_root.rglob("result.json"))
    assert len(ddp_records) == 1, ddp_records
    ddp_dir = ddp_records[0].parent
    assert ddp_dir.relative_to(ddp_root) == single_record.parent.relative_to(single_root)
    single, ddp = json.loads(single_record.read_text()), json.loads(ddp_records[0].read_text())
    assert ddp["status"] == "completed", ddp.get("error")
    assert ddp["steps"] == single["steps"]
    # Rank 0 alone wrote the log: one line per epoch, not one per rank.
    assert (ddp_dir / "run.log").read_text().count("epoch 1/2") == 1

    single_rows, ddp_rows = _metrics(single_record.parent), _metrics(ddp_dir)
    assert [int(r["batch_size"]) for r in ddp_rows] == [32, 32]
    assert len(single_rows) == len(ddp_rows) == 2

    def same(key: str) -> bool:
        return all(
            float(two[key]) == pytest.approx(float(one[key]), rel=1e-4, abs=1e-5)
            for one, two in zip(single_rows, ddp_rows)
        )

    # The same weights after every epoch: evaluated by rank 0 on the whole test set.
    for key in ("test_loss", "test_error", "lr"):
        assert same(key), (key, single_rows, ddp_rows)
    # Training metrics must cover both ranks' halves of the data, not rank 0's alone.
    for key in ("train_loss", "train_error"):
        assert same(key), (
            f"{key} differs: average it over ranks (runner.training.distributed.all_reduce_mean)",
            single_rows,
            ddp_rows,
        )


def test_ddp_batch_not_divisible_by_ranks_is_refused(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cell = [arg for arg in DDP_CELL if not arg.startswith("train.batch_size=")] + ["train.batch_size=33"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "launch.py"),
        *cell,
        f"results_root={tmp_path}",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "not divisible" in result.stdout + result.stderr
    assert not list(tmp_path.rglob("result.json"))
