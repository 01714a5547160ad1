"""Sweeps on a real SLURM cluster through `hydra/launcher=slurm` (submitit).

Needs the single-node cluster of tests/slurm (`sudo tests/slurm/start_cluster.sh`):
two fake GPUs, no accounting daemon (tests/slurm/bin/sacct answers submitit
from squeue). Skipped with the reason when sbatch is missing or the cluster is
not up, unless SAM_REQUIRE_SLURM=1 (CI), where that is a failure.

Every test gets its own results root (so its own `hydra.sweep.dir`) and its own
SLURM job name, and cancels every job of that name when it ends.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import FAST, REPO

pytestmark = pytest.mark.slurm

SLURM_BIN = REPO / "tests" / "slurm" / "bin"
TEST_CLUSTER = "samtest"  # ClusterName in tests/slurm/slurm.conf.in
GRID = ["optimizer=sgd,sam,gsam", "schedule=constant,batch,cosine"]
# FAST's values differ from the primary config's, so its cells carry a variant segment (runner.sweep.identity).
VARIANT = {
    "constant": "batch_size=32,epochs=2,width=8",
    "cosine": "batch_size=32,epochs=2,width=8",
    "batch": "epochs=2,increasing_batch_sizes=32-64,width=8",
}


def cell_dir(optimizer: str, schedule: str, variant: str | None = None) -> str:
    return f"adhoc/synthetic-resnet18/{optimizer}-{schedule}/{variant or VARIANT[schedule]}/seed=0"


COMPARED = ("test_error", "test_loss", "train_error", "train_loss", "sharpness", "steps", "epochs")
# FAST with device=auto, as on a cluster: the fake GPUs have no CUDA behind them, so cpu.
JOB_FAST = [arg for arg in FAST if not arg.startswith("device=")] + ["device=auto"]
# A cell long enough (6 epochs of 1024 examples) to be interrupted after its first checkpoint.
# On the CPU in the job and in the reference run alike, where resuming is bitwise exact.
# Long enough (several seconds per epoch on an idle 2-core machine) that the interruption lands mid-run.
LONG_CELL = ["optimizer=sam", "schedule=constant", "train.epochs=6", "dataset.train_size=4096", "device=cpu"]
LONG_VARIANT = "batch_size=32,epochs=6,train_size=4096,width=8"


def _cluster_problem() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    if shutil.which("sbatch") is None:
        return "sbatch not found; bring up the test cluster with `sudo tests/slurm/start_cluster.sh`"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%T %G"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"SLURM does not answer ({error}); run tests/slurm/start_cluster.sh"
    if "is UP" not in ping.stdout:
        return f"slurmctld is not up ({(ping.stdout + ping.stderr).strip()}); run tests/slurm/start_cluster.sh"
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    cluster = next(
        (line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("ClusterName")), "?"
    )
    if cluster != TEST_CLUSTER and os.environ.get("SAM_TEST_SLURM_ANY_CLUSTER") != "1":
        # Never send test jobs to a real cluster by accident (e.g. pytest on a login node).
        return (
            f"this SLURM is cluster {cluster!r}, not the test cluster {TEST_CLUSTER!r} of tests/slurm; "
            f"set SAM_TEST_SLURM_ANY_CLUSTER=1 to run the slurm tests on it anyway"
        )
    if not os.access(SLURM_BIN / "sacct", os.X_OK):
        return f"{SLURM_BIN / 'sacct'} is not executable (chmod +x it)"
    usable = [
        line
        for line in nodes.stdout.splitlines()
        if line.split()[0] in ("idle", "mixed", "allocated", "completing") and "gpu" in line
    ]
    if not usable:
        return f"no usable node with gpu gres (sinfo: {nodes.stdout.strip()!r}); run tests/slurm/start_cluster.sh"
    return None


@pytest.fixture(scope="module", autouse=True)
def cluster() -> None:
    problem = _cluster_problem()
    if problem and os.environ.get("SAM_REQUIRE_SLURM") == "1":
        pytest.fail(f"SAM_REQUIRE_SLURM=1 but {problem}")
    if problem:
        pytest.skip(problem)


def _squeue(name: str) -> list[tuple[str, str]]:
    """(job id, state) of every job called `name`, finished ones included (MinJobAge keeps them)."""
    out = subprocess.run(
        ["squeue", "-h", "-a", "-r", "--states=all", "-n", name, "-o", "%i|%T"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [tuple(line.split("|", 1)) for line in out.split()]


class Sweep:
    """`launch.py -m ... hydra/launcher=slurm` into one results root, under one SLURM job name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = f"samtest-{uuid.uuid4().hex[:8]}"
        path = os.pathsep.join([str(SLURM_BIN), os.environ.get("PATH", "")])
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("SAM_")}
        # sbatch exports this environment to the jobs: one thread each, the repo importable.
        self.env.update(PATH=path, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")

    @property
    def sweep_dir(self) -> Path:
        return self.root / "adhoc"

    def args(self, *overrides: str) -> list[str]:
        defaults = [
            *JOB_FAST,
            f"results_root={self.root}",
            "hydra/launcher=slurm",
            # Explicit, so a developer's SAM_SLURM_* variables do not leak in.
            "hydra.launcher.gpus_per_node=1",
            "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2",
            "hydra.launcher.timeout_min=20",
            f"hydra.launcher.name={self.name}",
            "hydra.launcher.setup=['export OMP_NUM_THREADS=1','echo fake_gpu=$CUDA_VISIBLE_DEVICES']",
            "++hydra.callbacks.sweep_summary._target_=runner.sweep.summary.SweepSummary",
        ]
        given = {override.split("=", 1)[0] for override in overrides}
        kept = [arg for arg in defaults if arg.split("=", 1)[0] not in given]
        return [sys.executable, str(REPO / "launch.py"), "-m", *kept, *overrides]

    def run(self, *overrides: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.args(*overrides), cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self, *overrides: str) -> subprocess.Popen:
        """The sweep in the background; its output goes to `self.output` (a file: no pipe to fill)."""
        self.output = self.root.parent / f"{self.name}.out"
        with open(self.output, "w") as handle:
            return subprocess.Popen(
                self.args(*overrides), cwd=REPO, env=self.env, stdout=handle, stderr=subprocess.STDOUT, text=True
            )

    def output_text(self) -> str:
        return self.output.read_text()

    def jobs(self) -> list[tuple[str, str]]:
        return _squeue(self.name)

    def summary(self) -> dict:
        return json.loads((self.sweep_dir / "sweep_summary.json").read_text())

    def cancel_all(self) -> None:
        subprocess.run(["scancel", "-n", self.name], capture_output=True, timeout=60)


@pytest.fixture
def sweep(tmp_path: Path):
    s = Sweep(tmp_path / "results")
    yield s
    s.cancel_all()


def _wait_for(
    condition, timeout: float, what: str, sweep: Sweep | None = None, process: subprocess.Popen | None = None
) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended before {what}:\n{sweep.output_text()[-4000:]}")
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _finish(sweep: Sweep, process: subprocess.Popen, timeout: float) -> tuple[int, str]:
    """Wait for a started sweep; one that does not end in `timeout` s has hung."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the sweep hung for {timeout:.0f} s:\n{sweep.output_text()[-4000:]}") from None
    return process.returncode, sweep.output_text()


def _records(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def _without_timings(value):
    """A record's values with wall-clock fields dropped (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k != "wall_time_s"}
    return value


def _metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as handle:
        return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory, cluster):
    """The 9-cell synthetic grid, swept once through SLURM on fake GPUs (shared by two tests)."""
    grid = Sweep(tmp_path_factory.mktemp("grid") / "results")
    try:
        result = grid.run(*GRID)
        yield grid, result
    finally:
        grid.cancel_all()


def test_nine_cell_sweep_on_fake_gpus(finished_grid):
    grid, result = finished_grid
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    found = _records(grid.root)
    expected = {grid.root / cell_dir(o, s) for o in ("sgd", "sam", "gsam") for s in ("constant", "batch", "cosine")}
    assert set(found) == expected, output[-4000:]
    assert all(record["status"] == "completed" for record in found.values()), found

    # Nine array tasks, all completed, each given one of the node's two (fake) GPUs.
    # (A job may still be exiting when submitit has read its result.)
    _wait_for(lambda: {state for _, state in grid.jobs()} == {"COMPLETED"}, 60, "the jobs to end")
    assert len(grid.jobs()) == 9
    job_logs = sorted(grid.sweep_dir.glob(".submitit/*_*/*_0_log.out"))
    assert len(job_logs) == 9
    assert all({"fake_gpu=0", "fake_gpu=1"} & set(log.read_text().split()) for log in job_logs)

    summary = grid.summary()
    assert summary["finished"] and summary["counts"]["completed"] == 9, summary
    assert "Sweep summary: 9 cells" in result.stdout

    tables = subprocess.run(
        [sys.executable, "-m", "analysis", str(grid.sweep_dir), "--figures", "none"],
        cwd=REPO,
        env=grid.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert tables.returncode == 0, tables.stdout[-3000:] + tables.stderr[-3000:]
    assert "GSAM" in tables.stdout and "no result.json" not in tables.stdout, tables.stdout[-3000:]


def test_relaunch_of_a_finished_sweep_submits_nothing(finished_grid):
    grid, first = finished_grid
    assert first.returncode == 0
    before = {folder: (folder / "result.json").stat().st_mtime_ns for folder in _records(grid.root)}
    assert len(before) == 9
    jobs_before = grid.jobs()
    again = grid.run(*GRID)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert {folder: (folder / "result.json").stat().st_mtime_ns for folder in before} == before
    # The validating sweeper finds every cell finished: no job array is submitted at all.
    assert grid.jobs() == jobs_before
    assert "skipped: 9" in again.stdout and "completed: 0" in again.stdout, again.stdout[-3000:]
    plan = json.loads((grid.sweep_dir / "sweep_plan.json").read_text())
    assert {cell["action"] for cell in plan["cells"]} == {"skip-finished"}
    # ... and the summary of the sweep that trained stays as it was.
    assert grid.summary()["counts"]["completed"] == 9


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """LONG_CELL trained in one go, in-process on this machine: the result a resumed job must match."""
    root = tmp_path_factory.mktemp("uninterrupted")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cell = [arg for arg in FAST if arg != "device=cpu"] + LONG_CELL
    result = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *cell, f"results_root={root}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / cell_dir("sam", "constant", LONG_VARIANT)


@pytest.mark.parametrize("interruption", ["usr2", "scontrol_requeue"])
def test_interrupted_cell_resumes_in_its_folder(sweep, uninterrupted, interruption):
    """Preemption (USR2: submitit checkpoints and requeues) or a requeue by the scheduler
    itself: the job restarts in the same cell folder, resumes from checkpoint.pt and
    ends with the uninterrupted run's result."""
    cell = sweep.root / cell_dir("sam", "constant", LONG_VARIANT)
    process = sweep.start(*LONG_CELL)
    try:
        _wait_for(lambda: (cell / "checkpoint.pt").exists(), 300, "the first checkpoint", sweep, process)
        assert not (cell / "result.json").exists(), "the cell finished before it could be interrupted"
        ((job_id, state),) = sweep.jobs()
        assert state == "RUNNING", state
        if interruption == "usr2":
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=60)
        else:
            subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)
        returncode, output = _finish(sweep, process, timeout=480)
    finally:
        if process.poll() is None:
            process.kill()
    assert returncode == 0, output[-4000:]
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=60).stdout
    assert "Restarts=1" in show, show

    (folder,) = _records(sweep.root)  # one record, in the cell's own folder
    assert folder == cell
    log = (cell / "run.log").read_text()
    assert "resuming" in log, log
    resumed, reference = (
        json.loads((cell / "result.json").read_text()),
        json.loads((uninterrupted / "result.json").read_text()),
    )
    assert resumed["status"] == "completed", resumed.get("error")
    assert _without_timings({k: resumed[k] for k in COMPARED}) == _without_timings({k: reference[k] for k in COMPARED})
    assert _metrics(cell) == _metrics(uninterrupted)
    assert sweep.summary()["counts"]["completed"] == 1


def test_a_cell_that_raises_is_reported_failed_while_the_others_complete(sweep):
    # A real failure at train time in one cell only: its metrics.csv cannot be
    # written (a directory is in the way), so the end of its first epoch raises.
    broken = sweep.root / cell_dir("sam", "constant")
    (broken / "metrics.csv").mkdir(parents=True)
    result = sweep.run("optimizer=sgd,sam,gsam")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-4000:]  # a failed cell makes the sweep's exit status non-zero

    statuses = {folder.parent.parent.name: record["status"] for folder, record in _records(sweep.root).items()}
    assert statuses == {"sgd-constant": "completed", "sam-constant": "failed", "gsam-constant": "completed"}
    summary = sweep.summary()
    assert summary["counts"]["completed"] == 2 and summary["counts"]["failed"] == 1, summary
    (failure,) = summary["failures"]
    assert Path(failure["run_dir"]) == broken and "metrics.csv" in failure["error"]
    assert Path(failure["log"]) == broken / "run.log" and "metrics.csv" in Path(failure["log"]).read_text()
    assert f"FAILED {cell_dir('sam', 'constant').removeprefix('adhoc/')}" in result.stdout
    assert f"log: {broken / 'run.log'}" in result.stdout


def test_a_cancelled_job_is_one_line_of_the_summary_and_the_others_finish(sweep):
    # Cells long enough (6 epochs of 2048 examples) that the cancel lands while the SAM cell trains.
    process = sweep.start("optimizer=sgd,sam", "train.epochs=6", "dataset.train_size=2048")
    sam = sweep.root / cell_dir("sam", "constant", "batch_size=32,epochs=6,train_size=2048,width=8")
    try:
        _wait_for(lambda: (sam / ".lock").exists(), 300, "the SAM cell to start", sweep, process)
        job = json.loads((sam / ".lock").read_text())["slurm_job_id"]
        subprocess.run(["scancel", str(job)], check=True, timeout=60)
        returncode, output = _finish(sweep, process, timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert returncode == 1, output[-4000:]
    # No submitit traceback: one line names the cell, the job, what happened and the job's log.
    assert "Traceback" not in output and "UncompletedJobError" not in output, output[-4000:]
    cell = cell_dir("sam", "constant", "batch_size=32,epochs=6,train_size=2048,width=8").removeprefix("adhoc/")
    (line,) = [line for line in output.splitlines() if line.startswith("  UNFINISHED ")]
    assert line.startswith(f"  UNFINISHED {cell}: SLURM job {job} was cancelled before the run returned (log: ")
    assert line.endswith(f"/.submitit/{job}/{job}_0_log.err)"), line
    # The launcher waited for the other job, which completed.
    summary = sweep.summary()
    assert summary["finished"] is True and summary["counts"]["completed"] == 1, summary
    assert [f["status"] for f in summary["failures"]] == ["unfinished"], summary


def test_a_two_task_job_trains_one_cell_with_ddp(sweep):
    """tasks_per_node=2 (one task per fake GPU): two ranks from submitit's environment,
    gloo on the CPU, one record and one log written by rank 0."""
    result = sweep.run("optimizer=sgd", "hydra.launcher.tasks_per_node=2", "hydra.launcher.gpus_per_node=2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    ((folder, record),) = _records(sweep.root).items()
    assert folder == sweep.root / cell_dir("sgd", "constant")
    assert record["status"] == "completed", record.get("error")
    # Both tasks ran the cell (submitit writes one log per task) ...
    ((job_id, _),) = sweep.jobs()
    task_logs = sorted(p.name for p in (sweep.sweep_dir / ".submitit" / job_id).glob("*_log.out"))
    assert task_logs == [f"{job_id}_0_log.out", f"{job_id}_1_log.out"], task_logs
    # ... but only rank 0 logged its epochs and recorded the outcome.
    assert (folder / "run.log").read_text().count("epoch 1/2") == 1
    assert sweep.summary()["counts"]["completed"] == 1


def test_usr2_mid_epoch_checkpoints_that_step_and_the_requeued_job_resumes_there(sweep, tmp_path):
    """A preemption signal a second into a long first epoch: the job writes the checkpoint of the
    step it is at, submitit requeues it, and the rerun starts the epoch at the next batch and ends
    with the result of a run never interrupted."""
    # Two epochs of 16384 examples: 512 steps each, tens of seconds on the test machine.
    long_epochs = ["optimizer=sam", "schedule=constant", "train.epochs=2", "dataset.train_size=16384", "device=cpu"]

    def training() -> bool:
        return any("training " in log.read_text() for log in sweep.root.rglob("run.log"))

    process = sweep.start(*long_epochs)
    try:
        _wait_for(training, 300, "the job to start training", sweep, process)
        time.sleep(1.0)  # inside the first epoch's optimizer steps
        ((job_id, state),) = sweep.jobs()
        assert state == "RUNNING", state
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=60)

        # The reference, trained in one go here while the job is requeued and finishes.
        reference_root = tmp_path / "reference"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        cell_args = [arg for arg in FAST if arg != "device=cpu"] + long_epochs
        reference_run = subprocess.run(
            [sys.executable, str(REPO / "launch.py"), *cell_args, f"results_root={reference_root}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert reference_run.returncode == 0, reference_run.stderr[-3000:]
        returncode, output = _finish(sweep, process, timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    assert returncode == 0, output[-4000:]
    show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=60).stdout
    assert "Restarts=1" in show, show

    ((cell, resumed),) = _records(sweep.root).items()
    ((reference_cell, reference),) = _records(reference_root).items()
    assert cell.relative_to(sweep.root) == reference_cell.relative_to(reference_root)
    log = (cell / "run.log").read_text()
    assert "SIGUSR2: checkpoint at epoch 1, batch " in log, log
    assert "mid-epoch: epoch 1 at batch " in log, log
    assert resumed["status"] == "completed", resumed.get("error")
    assert _without_timings({k: resumed[k] for k in COMPARED}) == _without_timings({k: reference[k] for k in COMPARED})
    assert _metrics(cell) == _metrics(reference_cell)
