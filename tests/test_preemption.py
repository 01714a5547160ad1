"""Preemption without lost work: a signal mid-epoch writes a checkpoint of that step, and the resumed
run ends exactly as an uninterrupted one.

Fast tests drive `runner.training.preemption.Preemption` and `runner.training.steps.train_steps` in this process. The
end-to-end ones run `launch.py` in subprocesses whose `sitecustomize` (HOOKS below, found first on
PYTHONPATH) raises the signal inside the process as chosen training batches are drawn, so it lands
mid-epoch at a known step on a machine of any speed; the signal itself, the hook, the checkpoint,
the handler it is handed to and the resume are the real ones. The handler is, in turn: one that
does what submitit's does (call the launcher's checkpoint, exit), none (the default action: the
process ends by the signal), submitit's own in a `hydra/launcher=local` job (submitit requeues the
job and its controller reruns it), and under torchrun one rank alone is signalled.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import FAST, REPO, launch

# A sitecustomize for the launched processes: with SAM_TEST_PREEMPT_AT="epoch:batch,..." (0-based)
# it raises SAM_TEST_PREEMPT_SIGNAL (default SIGUSR2) in the process as the training loader hands
# out one of those batches (before its step), on the ranks in SAM_TEST_PREEMPT_RANKS (default all).
# With SAM_TEST_REQUEUE_MARKS=<file> it first installs a handler like submitit's: note the signal
# in that file, then exit with submitit's status (-1).
HOOKS = textwrap.dedent("""
    import os
    import sys


    def _install():
        spec = os.environ.get("SAM_TEST_PREEMPT_AT")
        argv = " ".join(getattr(sys, "orig_argv", sys.argv))
        if not spec or "torch.distributed.run" in argv or not ("launch.py" in argv or "submitit.core._submit" in argv):
            return
        ranks = os.environ.get("SAM_TEST_PREEMPT_RANKS")
        if ranks and os.environ.get("RANK", "0") not in ranks.split(","):
            return
        import signal

        from runner.training.device_loader import DeviceLoader

        points = {tuple(int(v) for v in point.split(":")) for point in spec.split(",")}
        signum = getattr(signal, os.environ.get("SAM_TEST_PREEMPT_SIGNAL", "SIGUSR2"))
        marks = os.environ.get("SAM_TEST_REQUEUE_MARKS")
        if marks:
            def requeue(number, frame):
                with open(marks, "a") as handle:
                    handle.write(signal.Signals(number).name + "\\n")
                sys.exit(-1)

            signal.signal(signum, requeue)
        batches = DeviceLoader.batches

        def signalling(self, epoch, batch_size, start_batch=0):
            inner = batches(self, epoch, batch_size, start_batch)
            if not self.shuffle:  # the test set and the gradient-norm subset are read in order
                return inner

            def drawn():
                for number, batch in enumerate(inner, start_batch):
                    if (epoch, number) in points:
                        signal.raise_signal(signum)
                    yield batch

            return drawn()

        DeviceLoader.batches = signalling


    _install()
""")

# ViT with stochastic depth: every step draws from torch's global RNG, so a resume that did not
# restore the RNG state of the step it stopped at would train differently. GSAM with a cosine
# schedule: lr and rho change every step. 8 steps per epoch (256 examples, batch 32).
CELL = [
    *(arg for arg in FAST if not arg.startswith("model.")),
    "model=vit_tiny",
    "model.depth=1",
    "model.embed_dim=32",
    "model.num_heads=2",
    "model.drop_path_rate=0.2",
    "optimizer=gsam",
    "schedule=cosine",
    "train.epochs=3",
]
COMPARED = ("test_error", "test_loss", "train_error", "train_loss", "sharpness", "steps", "epochs", "status")


# ---------------------------------------------------------------------------------------------- helpers


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "wall_time_s"}
    return value


def _only_cell(root: Path) -> Path:
    (log,) = root.rglob("run.log")
    return log.parent


def _result(cell: Path) -> dict:
    record = json.loads((cell / "result.json").read_text())
    return _without_timings({key: record[key] for key in COMPARED})


def _metrics(cell: Path) -> list[dict]:
    with open(cell / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in csv.DictReader(handle)]


def _hooked(tmp_path: Path, at: str, **settings: str) -> dict[str, str]:
    """The environment of a process whose training batches `at` raise a signal (see HOOKS)."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(HOOKS)
    return {
        "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO)]),
        "SAM_TEST_PREEMPT_AT": at,
        **{f"SAM_TEST_{key.upper()}": value for key, value in settings.items()},
    }


def _epoch_in_progress(cell: Path) -> list[dict] | None:
    from runner.training.checkpoint import read_checkpoint

    return read_checkpoint(cell / "checkpoint.pt").get("epoch_in_progress")


def _load_preemption_module():
    """runner/training/preemption.py alone (standard library only), without importing the runner package."""
    spec = importlib.util.spec_from_file_location(
        "preemption_under_test", REPO / "runner" / "training" / "preemption.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    launch([*CELL, f"results_root={root}"], check=True)
    return _only_cell(root)


# ---------------------------------------------------------------------------------- the hook, in-process


def test_a_signal_is_noted_and_handed_on_to_the_previous_handler():
    from runner.training.preemption import Preemption

    received: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        with Preemption((signal.SIGUSR2,)) as preemption:
            assert not preemption.requested()
            signal.raise_signal(signal.SIGUSR2)
            assert preemption.requested() and received == []  # noted, not handled yet
            preemption.forward()
            assert received == [signal.SIGUSR2] and not preemption.requested()
            signal.raise_signal(signal.SIGUSR2)  # the hook stays for the next one
            assert preemption.requested() and received == [signal.SIGUSR2]
        # Leaving hands on what is still pending and puts the previous handler back.
        assert received == [signal.SIGUSR2, signal.SIGUSR2]
        signal.raise_signal(signal.SIGUSR2)
        assert received == [signal.SIGUSR2] * 3
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_a_pending_signal_waits_while_an_exception_is_on_its_way_out():
    from runner.training.preemption import Preemption

    received: list[int] = []
    before = signal.signal(signal.SIGUSR2, lambda signum, frame: received.append(signum))
    try:
        with pytest.raises(RuntimeError, match="diverged"), Preemption((signal.SIGUSR2,)):
            signal.raise_signal(signal.SIGUSR2)
            raise RuntimeError("diverged")  # its record is written before the job may end
        assert received == []
        assert signal.getsignal(signal.SIGUSR2) is not None and not isinstance(
            getattr(signal.getsignal(signal.SIGUSR2), "__self__", None), Preemption
        )
    finally:
        signal.signal(signal.SIGUSR2, before)


def test_the_watched_signals_follow_submitit(monkeypatch):
    from runner.training.preemption import watched_signals

    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    assert watched_signals() == (signal.SIGUSR2, signal.SIGTERM)
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert watched_signals() == (signal.SIGUSR1, signal.SIGTERM)


def test_without_a_handler_the_process_ends_by_the_signal_once_handed_on(tmp_path):
    """The default action after the checkpoint: what the signal would have done without the hook."""
    script = textwrap.dedent(f"""
        import importlib.util, signal
        spec = importlib.util.spec_from_file_location("p", {str(REPO / "runner" / "training" / "preemption.py")!r})
        p = importlib.util.module_from_spec(spec); spec.loader.exec_module(p)
        with p.Preemption() as preemption:
            signal.raise_signal(signal.SIGTERM)
            print("noted", preemption.requested(), flush=True)
            preemption.forward()
            print("still alive", flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert result.stdout.split("\n")[0] == "noted True" and "still alive" not in result.stdout


# ------------------------------------------------------------------ an epoch stopped and continued


class _Mirrored(torch.utils.data.Dataset):
    """Images mirrored at random by torch's RNG, as torchvision's transforms draw (the torchvision path)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index].float() / 255
        return (image.flip(-1) if torch.rand(()) < 0.5 else image), self.labels[index]


def _tiny_epoch_setup(loader_kind: str):
    """A small CNN, SAM over SGD with momentum under a cosine schedule, 6 augmented batches of 16 from
    the device loader or the torchvision path's seeded loader."""
    from runner.data import build_loader
    from runner.training.device_loader import DeviceLoader
    from runner.training.schedule import Schedule, Stage, remember_initial_values
    from sam_opt import SAM

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.LazyLinear(3)
    )
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randint(0, 256, (96, 3, 8, 8), dtype=torch.uint8, generator=generator), torch.arange(96) % 3
    if loader_kind == "device":
        loader = DeviceLoader(images, labels, mean=[0.5] * 3, std=[0.25] * 3, augment=True, pad=1, seed=3)
    else:
        loader = build_loader(_Mirrored(images, labels), 16, shuffle=True, seed=3, drop_last=True)
    model(torch.zeros(1, 3, 8, 8))
    optimizer = SAM(model.parameters(), torch.optim.SGD, rho=0.05, model=model, lr=0.1, momentum=0.9)
    remember_initial_values(optimizer)
    schedule = Schedule([Stage(16, 2)], train_size=96, lr_policy="cosine")
    return model, optimizer, loader, schedule


def _train(model, optimizer, loader, schedule, sums, stop=None) -> bool:
    from runner.training.steps import train_steps

    return train_steps(
        model,
        optimizer,
        loader.batches(1, 16, start_batch=sums.steps),
        sums,
        schedule=schedule,
        first_step=schedule.epoch_start_step(1),
        loss_fn=torch.nn.CrossEntropyLoss(),
        precision="fp32",
        device=torch.device("cpu"),
        check_every=4,
        stop=stop,
    )


@pytest.mark.parametrize("loader_kind", ["device", "torchvision"])
def test_an_epoch_stopped_checkpointed_and_continued_equals_one_in_one_go(tmp_path, loader_kind):
    from runner.training import checkpoint as ckpt
    from runner.training.steps import EpochSums

    model, optimizer, loader, schedule = _tiny_epoch_setup(loader_kind)
    whole = EpochSums.zeros(torch.device("cpu"))
    assert _train(model, optimizer, loader, schedule, whole) is True
    reference_stats, reference_weights = whole.stats(optimizer), [p.detach().clone() for p in model.parameters()]

    model, optimizer, loader, schedule = _tiny_epoch_setup(loader_kind)
    first = EpochSums.zeros(torch.device("cpu"))
    asked: list[int] = []

    def stop() -> bool:  # asked after every step; says stop after the third
        asked.append(first.steps)
        return first.steps == 3

    assert _train(model, optimizer, loader, schedule, first, stop) is False
    assert asked == [1, 2, 3] and first.steps == 3 and first.examples == 48
    progress = ckpt.Progress(1, schedule.epoch_start_step(1) + 3, 1.0, [{"epoch": 1}], [first.state()])
    path = ckpt.save_checkpoint(tmp_path, model, optimizer, progress, {"seed": 0})

    model, optimizer, loader, schedule = _tiny_epoch_setup(loader_kind)  # a fresh process, as after a requeue
    restored = ckpt.load_checkpoint(path, model, optimizer)  # weights_only=True, as always
    assert restored.epoch_in_progress is not None and len(restored.epoch_in_progress) == 1
    rest = EpochSums.from_state(restored.epoch_in_progress[0], torch.device("cpu"))
    assert _train(model, optimizer, loader, schedule, rest) is True
    assert rest.steps == whole.steps == 6
    assert rest.stats(optimizer) == reference_stats  # float equality: the same sums in the same order
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference_weights))


def test_a_stop_on_the_last_step_continues_into_an_empty_rest_of_the_epoch():
    from runner.training.steps import EpochSums

    model, optimizer, loader, schedule = _tiny_epoch_setup("device")
    sums = EpochSums.zeros(torch.device("cpu"))
    assert _train(model, optimizer, loader, schedule, sums, stop=lambda: sums.steps == 6) is False
    assert sums.steps == 6
    assert _train(model, optimizer, loader, schedule, sums) is True and sums.steps == 6


# -------------------------------------------------------------------------- launch.py, end to end


@pytest.mark.slow
def test_preempted_twice_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted):
    """submitit-like USR2 handling: after the last step of epoch 1, then at batch 3 of epoch 2."""
    root, marks = tmp_path / "results", tmp_path / "requeues"
    env = _hooked(tmp_path, "0:7,1:2", requeue_marks=str(marks))

    first = launch([*CELL, f"results_root={root}"], env=env)
    assert first.returncode == 255, first.stderr[-3000:]  # submitit's sys.exit(-1)
    cell = _only_cell(root)
    assert marks.read_text().split() == ["SIGUSR2"]  # handed on once, after the checkpoint below
    assert not (cell / "result.json").exists() and not (cell / "metrics.csv").exists()
    (state,) = _epoch_in_progress(cell)
    assert state["steps"] == 8 and state["examples"] == 256  # the stop came after the epoch's last step

    second = launch([*CELL, f"results_root={root}"], env=env)
    assert second.returncode == 255, second.stderr[-3000:]
    assert marks.read_text().split() == ["SIGUSR2"] * 2
    (state,) = _epoch_in_progress(cell)
    assert state["steps"] == 3 and len(_metrics(cell)) == 1

    launch([*CELL, f"results_root={root}"], check=True)
    log = (cell / "run.log").read_text()
    assert "resuming" in log and "mid-epoch: epoch 1 at batch 8 of 8 (step 8)" in log, log
    assert "mid-epoch: epoch 2 at batch 3 of 8 (step 11)" in log, log
    assert "SIGUSR2: checkpoint at epoch 2, batch 3 of 8 (step 11)" in log, log
    assert _result(cell) == _result(uninterrupted)
    assert _metrics(cell) == _metrics(uninterrupted)
    assert not (cell / "checkpoint.pt").exists()  # a completed cell keeps no checkpoint


@pytest.mark.slow
def test_sigterm_without_a_handler_checkpoints_then_ends_the_process(tmp_path, uninterrupted):
    """A plain `kill` of a single run: the checkpoint of the step, then the default action."""
    root = tmp_path / "results"
    killed = launch([*CELL, f"results_root={root}"], env=_hooked(tmp_path, "1:4", preempt_signal="SIGTERM"))
    assert killed.returncode == -signal.SIGTERM, killed.stderr[-3000:]
    cell = _only_cell(root)
    (state,) = _epoch_in_progress(cell)
    assert state["steps"] == 5

    launch([*CELL, f"results_root={root}"], check=True)
    assert "mid-epoch: epoch 2 at batch 5 of 8" in (cell / "run.log").read_text()
    assert _result(cell) == _result(uninterrupted)
    assert _metrics(cell) == _metrics(uninterrupted)


@pytest.mark.slow
def test_submitit_local_job_is_requeued_by_submitit_and_resumes_mid_epoch(tmp_path, uninterrupted):
    """`hydra/launcher=local`: submitit's own USR2 handler requeues the job after the checkpoint, and
    its controller reruns it; the one sweep command ends with the uninterrupted result."""
    root = tmp_path / "results"
    env = _hooked(tmp_path, "1:2")
    sweep = launch(["-m", *CELL, f"results_root={root}", "hydra/launcher=local"], env=env)
    output = sweep.stdout + sweep.stderr
    assert sweep.returncode == 0, output[-4000:]
    cell = _only_cell(root)
    job_text = "".join(path.read_text() for path in root.rglob("*_0_log.*"))  # submitit's logs, both attempts
    assert "Caught signal SIGUSR2" in job_text and "Requeued job" in job_text, job_text[-3000:]
    assert "mid-epoch: epoch 2 at batch 3 of 8" in (cell / "run.log").read_text()
    assert _result(cell) == _result(uninterrupted)
    assert _metrics(cell) == _metrics(uninterrupted)


# Two ranks on the gloo backend; divergence checked (and preemption agreed) every 2 steps.
DDP_CELL = [
    *(arg for arg in CELL if not arg.startswith(("optimizer=", "model.drop_path_rate", "sharpness"))),
    "optimizer=sam",
    "model.drop_path_rate=0.0",
    "sharpness=none",
    "train.divergence_check_every=2",
]


def _torchrun(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "launch.py"),
        *args,
    ]
    return subprocess.run(command, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ddp_ranks_stop_at_the_same_step_and_resume_to_the_uninterrupted_result(tmp_path):
    """Only rank 0 is signalled (during the 3rd step of epoch 2); the ranks agree at the next divergence
    check (after the 4th), both send their running sums, and the resumed pair ends like one never stopped."""
    reference_root, root = tmp_path / "reference", tmp_path / "results"
    reference = _torchrun([*DDP_CELL, f"results_root={reference_root}"], {})
    assert reference.returncode == 0, reference.stderr[-3000:]

    stopped = _torchrun([*DDP_CELL, f"results_root={root}"], _hooked(tmp_path, "1:2", preempt_ranks="0"))
    assert stopped.returncode != 0, stopped.stderr[-3000:]  # rank 0 ended by USR2's default action
    cell = _only_cell(root)
    states = _epoch_in_progress(cell)
    assert [state["steps"] for state in states] == [4, 4]
    assert not torch.equal(states[0]["loss"], states[1]["loss"])  # each rank's own half of the batches

    resumed = _torchrun([*DDP_CELL, f"results_root={root}"], {})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "mid-epoch: epoch 2 at batch 4 of 8" in (cell / "run.log").read_text()
    reference_cell = _only_cell(reference_root)
    assert _result(cell) == _result(reference_cell)
    assert _metrics(cell) == _metrics(reference_cell)
