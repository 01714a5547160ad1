"""A careless or hostile user's second pass: crafted data, links, damaged state, full disks, bad values.

Each test reproduces one way a command used to end in a traceback, a wrong
record or a write outside the results folder, through the real entry points
(`launch.py`, `python -m sharpness`, `python -m analysis`, `runner.sweep.status`).
The first pass (crafted pickles, concurrent launches, kill and resume, read-only
finished trees) closes the module.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import QUICK, REPO, interrupt_sweep, launch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.sweep import status
from runner.sweep.validate import KEYS, problems
from runner.sweep.value_checks import added_key_problems
from runner.training import checkpoint as ckpt
from runner.training import checkpoint_fit, distributed
from runner.training.build import build_cell

# The cheap cell: one epoch of a width-4 ResNet-18 on synthetic images, no measure.
T = ["dataset=synthetic", "model.width=4", "train.epochs=1", "sharpness=none", "device=cpu", "progress=false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}
# Cells that run until interrupted: a tiny synthetic epoch takes a fraction of a second, so a few
# hundred epochs could end one cell while a loaded machine is still starting the other.
LONG = "train.epochs=100000"


def run(command: list[str], *, prefix: list[str] = (), limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    """A command as a user types it, optionally under a file-size limit (a disk that takes no more)."""

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [*prefix, sys.executable, *command],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=cap if limit_bytes else None,
    )


def one_error_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single `error:` line of a refused command (and no traceback)."""
    assert result.returncode == status, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-2000:]
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.startswith("error:") and not line.startswith("error: nothing was launched")  # a multirun's tally
    ]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


def compose_cell(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[*T, *overrides], return_hydra_config=True)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A results root with one completed cell of T, launched as a multirun, its checkpoint kept."""
    root = tmp_path_factory.mktemp("finished") / "results"
    launch(["-m", *T, "keep_checkpoint=true", f"results_root={root}"], check=True)
    return root


def copy_of(finished: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(results root, cell folder) of a private copy of the finished tree."""
    root = tmp_path / "results"
    shutil.copytree(finished, root, symlinks=True)
    (record,) = root.rglob("result.json")
    return root, record.parent


# --- values that used to pass validation and fail in a constructor ---------------------------------


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["optimizer.base.momentum=-0.5"], "optimizer.base.momentum=-0.5"),
        (["optimizer.base.weight_decay=-1"], "optimizer.base.weight_decay=-1"),
        (["optimizer/base=adamw", "optimizer.base.betas=[2,3]"], "optimizer.base.betas=[2, 3]"),
        (["optimizer/base=adamw", "optimizer.base.eps=0"], "optimizer.base.eps=0"),
        (["model.num_classes=3"], "model.num_classes=3"),
        (["train.epochs=10000000000000"], "train.epochs=10000000000000"),
        ([f"experiment_name={'x' * 300}"], "experiment_name="),
        (["experiment_name=a/" + "y" * 150], "experiment_name="),
        (["seed=${now:%s}"], "not text"),
        (["model.width=100000"], "parameters"),
        (["dataset.image_size=100000"], "dataset.image_size=100000"),
        (["dataset.train_size=100000000000"], "dataset.train_size=100000000000"),
    ],
)
def test_values_that_reach_a_constructor_are_refused_in_one_line(overrides, named):
    found = problems(compose_cell(overrides), check_environment=False)
    assert len(found) == 1 and named in found[0], found


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["optimizer.base.nesterov=true"], "Nesterov momentum requires a momentum"),
        (["optimizer/base=adamw", "+optimizer.base.amsgradd=true"], "unexpected keyword argument 'amsgradd'"),
    ],
)
def test_settings_only_the_optimizer_checks_are_refused_in_its_words(overrides, named):
    """What only torch's constructor knows is still caught at launch, before any cell trains."""
    (found,) = problems(compose_cell(overrides), check_environment=False)
    assert found.startswith("optimizer.base (torch.optim.") and named in found, found


def test_the_cell_itself_passes_those_checks():
    assert problems(compose_cell([]), check_environment=False) == []
    assert problems(compose_cell(["optimizer=gsam", "optimizer/base=adamw", "optimizer.lr=1e-3"])) == []


def test_added_keys_must_be_read_by_the_project():
    cfg = compose_cell(["+optimizer.exact_restore=true"])
    fine = ["+optimizer.exact_restore=true", "+experiment=demo", "++optimizer.base.momentum=0.5"]
    assert added_key_problems(fine, cfg, KEYS) == []
    (typo,) = added_key_problems(["+sam.rhoo=0.1"], cfg, KEYS)
    assert "did you mean sam.rho?" in typo
    (unknown,) = added_key_problems(["+foo=1"], cfg, KEYS)
    assert unknown.startswith("+foo=1: foo is not a key") and "did you mean" not in unknown


# --- Hydra's composition errors: one line, exit 2 --------------------------------------------------


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["bogus=1"], "bogus is not a key of the config"),
        (["sam.rhoo=0.1"], "did you mean sam.rho?"),
        (["+sam.rhoo=0.1"], "did you mean sam.rho?"),
        (["+foo=1"], "+foo=1: foo is not a key"),
        (["dataset=nope"], "cifar10, cifar100"),
        (["optimizer=[sgd"], "an override is key=value"),
        (["experiment_name=a\nb"], "an override is key=value"),
        (["seed=!!python/object/apply:os.system [ls]"], "an override is key=value"),
        (["-m", "optimizer=sgd,nope"], "Could not find 'optimizer/nope'"),
    ],
)
def test_a_command_hydra_cannot_compose_ends_in_one_line(arguments, says, tmp_path):
    flags = [a for a in arguments if a == "-m"]
    result = run(["launch.py", *flags, *T, f"results_root={tmp_path}", *(a for a in arguments if a != "-m")])
    assert says in one_error_line(result) or says in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())


def test_a_multirun_counts_its_bad_cells(tmp_path):
    result = run(
        ["launch.py", "-m", *T, f"results_root={tmp_path}", "optimizer.lr=-1,-2,-3,0.1", "schedule=constant,cosine"]
    )
    assert result.returncode == 2
    assert "nothing was launched (6 problem(s) in 6 of 8 cells)" in result.stderr, result.stderr


# --- crafted checkpoints of plain data -------------------------------------------------------------


def _unfinished(finished: Path, tmp_path: Path, edit) -> tuple[Path, Path]:
    """A copy whose cell lost its record and holds a checkpoint changed by `edit(state)`."""
    root, cell = copy_of(finished, tmp_path)
    for name in ("result.json", "model.pt"):
        (cell / name).unlink()
    state = torch.load(cell / "checkpoint.pt", weights_only=True)
    edit(state)
    torch.save(state, cell / "checkpoint.pt")
    return root, cell


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda s: s.update(epoch=999), id="epoch=999"),
        pytest.param(lambda s: s.update(rng={}), id="rng={}"),
    ],
)
def test_a_checkpoint_of_another_cell_is_moved_aside_and_the_cell_trains(finished, tmp_path, edit):
    root, cell = _unfinished(finished, tmp_path, edit)
    result = run(["launch.py", *T, f"results_root={root}"])
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    record = json.loads((cell / "result.json").read_text())
    reference = json.loads((next(finished.rglob("result.json"))).read_text())
    assert record["status"] == "completed" and record["steps"] == reference["steps"]
    assert record["test_error"] == reference["test_error"]
    assert "does not belong to this cell" in record["warning"]
    assert Path(record["checkpoint_quarantined"]).name.startswith("checkpoint.pt.corrupt-")


@pytest.mark.parametrize(
    "edit, reason",
    [
        (lambda s: s.update(epoch=999), "epoch=999"),
        (lambda s: s.update(step=7), "step=7"),
        (lambda s: s.update(rng={}), "RNG"),
        (lambda s: s.update(epoch=0, step=0, metrics=[], epoch_in_progress=[{}]), "running sums"),
        (lambda s: s["model"].update({next(iter(s["model"])): torch.zeros(3)}), "this cell's model has"),
        (lambda s: s["model"].pop(next(iter(s["model"]))), "no tensor"),
        (lambda s: s["optimizer"].update(param_groups=[]), "parameter groups"),
        (lambda s: s.update(wall_time_s=float("nan")), "wall_time_s"),
    ],
)
def test_a_checkpoint_is_checked_against_its_cell(finished, edit, reason):
    path = next(finished.rglob("checkpoint.pt"))
    config = json.loads(next(finished.rglob("result.json")).read_text())["config"]
    cell = build_cell(OmegaConf.create(config), distributed.DistContext(0, 1, 0, torch.device("cpu"), True), "fp32")
    state = ckpt.read_checkpoint(path)
    assert checkpoint_fit.mismatch(state, cell.model, cell.optimizer, cell.schedule) is None
    edit(state)
    assert reason in checkpoint_fit.mismatch(state, cell.model, cell.optimizer, cell.schedule)


# --- links out of the results root or the cell -----------------------------------------------------


def test_a_run_folder_linked_outside_the_results_root_is_not_written(tmp_path):
    root, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    cell = Path(
        run(["launch.py", *T, f"results_root={root}", "--cfg", "job", "--resolve"])
        .stdout.split("run_dir: ")[1]
        .splitlines()[0]
    )
    cell.parent.mkdir(parents=True)
    cell.symlink_to(outside)
    line = one_error_line(run(["launch.py", *T, f"results_root={root}"]))
    assert "outside results_root" in line
    assert not list(outside.iterdir())
    line = one_error_line(run(["launch.py", "-m", *T, f"results_root={root}"]))
    assert "outside results_root" in line and not list(outside.iterdir())


@pytest.mark.parametrize("name", ["run.log", "launch.log", ".hydra/config.yaml"])
def test_a_linked_file_in_an_unfinished_cell_is_not_written_through(finished, tmp_path, name):
    root, cell = copy_of(finished, tmp_path)
    (cell / "result.json").unlink()
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    (cell / name).unlink(missing_ok=True)
    (cell / name).symlink_to(target)
    line = one_error_line(run(["launch.py", *T, f"results_root={root}"]))
    assert "symbolic link" in line and name in line
    assert target.read_text() == "precious\n"


def test_a_linked_file_beside_the_cells_of_a_sweep_is_not_written_through(finished, tmp_path):
    root, cell = copy_of(finished, tmp_path)
    (cell / "result.json").unlink()
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    (root / "adhoc" / "multirun.yaml").unlink(missing_ok=True)
    (root / "adhoc" / "multirun.yaml").symlink_to(target)
    line = one_error_line(run(["launch.py", "-m", *T, f"results_root={root}"]))
    assert "multirun.yaml is a symbolic link" in line
    assert target.read_text() == "precious\n"


def test_a_results_root_that_is_a_link_works(tmp_path):
    disk = tmp_path / "other-disk"
    disk.mkdir()
    (tmp_path / "results").symlink_to(disk)
    result = run(["launch.py", *T, f"results_root={tmp_path / 'results'}"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(next(disk.rglob("result.json")).read_text())["status"] == "completed"


def test_analysis_of_a_folder_without_runs_writes_nothing(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "hosts").write_text("127.0.0.1 localhost\n")
    line = one_error_line(run(["-m", "analysis", str(folder)]))
    assert "holds no runs" in line
    assert sorted(p.name for p in folder.iterdir()) == ["hosts"]


# --- damaged state ---------------------------------------------------------------------------------


def test_a_damaged_record_of_a_finished_run_is_never_trained_over(finished, tmp_path):
    root, cell = copy_of(finished, tmp_path)
    text = (cell / "result.json").read_text()
    (cell / "result.json").write_text(text[: len(text) // 2])
    model = (cell / "model.pt").read_bytes()
    for arguments in ([*T], ["-m", *T]):
        line = one_error_line(run(["launch.py", *arguments, f"results_root={root}"]))
        assert "result.json is damaged" in line and "force=true" in line
        assert (cell / "result.json").read_text() == text[: len(text) // 2]
        assert (cell / "model.pt").read_bytes() == model
    forced = run(["launch.py", *T, f"results_root={root}", "force=true"])
    assert forced.returncode == 0, forced.stderr[-2000:]
    record = json.loads((cell / "result.json").read_text())
    assert record["status"] == "completed" and Path(record["record_set_aside"]).read_text() == text[: len(text) // 2]


@pytest.mark.parametrize("name", ["result.json", ".lock"])
def test_a_folder_where_a_cell_file_belongs_stops_the_launch_before_training(finished, tmp_path, name):
    root, cell = copy_of(finished, tmp_path)
    (cell / "result.json").unlink()
    (cell / name).mkdir()
    metrics = (cell / "metrics.csv").read_bytes()
    line = one_error_line(run(["launch.py", *T, f"results_root={root}"]))
    assert f"{name} is not a file" in line
    assert (cell / "metrics.csv").read_bytes() == metrics


def test_a_damaged_config_is_named_in_one_line(finished, tmp_path):
    root, cell = copy_of(finished, tmp_path)
    (cell / "config.yaml").write_text("model:\n  name: [resnet18\n")
    skipped = run(["launch.py", *T, f"results_root={root}"])
    assert skipped.returncode == 0 and "config.yaml is unreadable" in skipped.stderr, skipped.stderr
    line = one_error_line(run(["-m", "sharpness", str(cell), "device=cpu"]))
    assert "config.yaml is unreadable" in line


def test_status_of_a_finished_cell_with_a_damaged_metrics_file_and_of_a_copied_tree(finished, tmp_path):
    root, cell = copy_of(finished, tmp_path)
    metrics = (cell / "metrics.csv").read_text()
    (cell / "metrics.csv").write_text(metrics[: len(metrics) // 2])
    (row,) = status.collect(root / "adhoc")["cells"]
    assert row["state"] == "completed"
    assert Path(row["run_dir"]).is_relative_to(root.resolve())


# --- faults of the machine -------------------------------------------------------------------------


def test_a_checkpoint_the_disk_cannot_take_is_one_line_naming_it(tmp_path):
    result = run(["launch.py", *T, f"results_root={tmp_path}"], limit_bytes=100_000)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in tmp_path.rglob("result.json")]
    assert record["status"] == "failed"
    assert (
        record["error"].startswith("cannot write ") and "checkpoint.pt: File too large; free space" in record["error"]
    )


def test_a_disk_full_before_the_record_is_one_line(tmp_path):
    line = one_error_line(run(["launch.py", *T, f"results_root={tmp_path}"], limit_bytes=2_000), status=1)
    assert line.startswith(f"error: cannot write {tmp_path}") and "free space" in line
    sweep = run(["launch.py", "-m", *T, f"results_root={tmp_path / 'sweep'}", "optimizer=sgd,sam"], limit_bytes=2_000)
    line = one_error_line(sweep, status=1)
    assert f"cannot write {tmp_path / 'sweep'}" in line and "free space" in line


def _read_only(folder: Path) -> list[str]:
    """A command prefix under which `folder` is read-only (chmod for users; a read-only bind mount for root)."""
    if os.geteuid() != 0:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    prefix = ["unshare", "-m", "sh", "-c", script, str(folder)]
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
    return prefix


def test_a_read_only_tree_with_an_unfinished_cell_is_one_line(finished, tmp_path):
    root, cell = copy_of(finished, tmp_path)
    (cell / "result.json").unlink()
    prefix = _read_only(root)
    try:
        for arguments in ([*T], ["-m", *T]):
            line = one_error_line(run(["launch.py", *arguments, f"results_root={root}"], prefix=prefix))
            assert "make the folder writable" in line
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_sharpness_on_a_read_only_tree_refuses_before_measuring(finished, tmp_path):
    root, cell = copy_of(finished, tmp_path)
    prefix = _read_only(root)
    try:
        line = one_error_line(
            run(
                [
                    "-m",
                    "sharpness",
                    str(cell),
                    "device=cpu",
                    "force=true",
                    "sharpness.worst_linf.examples=64",
                    "sharpness.worst_linf.batch_size=32",
                ],
                prefix=prefix,
            )
        )
        assert "make the folder writable" in line
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_ctrl_c_of_a_launch_is_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "launch.py", *T, LONG, f"results_root={tmp_path}"],
        cwd=REPO,
        env=ENV,
        # A shell's background job inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300  # a loaded machine may take minutes to reach the first epoch
    while not list(tmp_path.rglob("metrics.csv")) and time.time() < deadline:
        time.sleep(0.1)
    assert list(tmp_path.rglob("metrics.csv")), "the run never reached its first epoch"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert "Traceback" not in err and "Traceback" not in out, err[-2000:]
    assert process.returncode != 0
    assert [line for line in err.splitlines() if "rerun the same command" in line], err[-2000:]


@pytest.mark.parametrize("reaches", ["group", "launcher", "terminate"])
def test_ctrl_c_of_a_local_multirun_is_one_line_and_stops_every_cell(tmp_path, reaches):
    """A terminal's Ctrl-C reaches the whole foreground group; `kill -INT` the launching process alone.

    Either way: one line and status 130, no controller's traceback, and no process of the sweep left.
    """
    sweep = [*T, LONG, "seed=0,1", "hydra/launcher=local", "cpu_threads=1"]
    process = interrupt_sweep(sweep, tmp_path, reaches)
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # controllers and cells all ended with the launcher
        os.killpg(process.pid, 0)
    written = {str(path): path.read_text()[:1500] for path in tmp_path.rglob("result.json")}
    assert not written, f"an interrupted cell must stay unfinished, to resume: {written}"


# --- the first pass: crafted pickles, two launches of one cell, read-only finished trees -----------


SLOW_CELL = [*QUICK, "optimizer=sam", "dataset.train_size=2048", "model.width=16", "train.epochs=3"]
# Two launches started together overlap from their first second: no need for SLOW_CELL's length.
CONCURRENT_CELL = [*QUICK, "optimizer=sam", "dataset.train_size=1024", "train.epochs=3"]


def records(root: Path) -> dict[Path, dict]:
    return {p.parent: json.loads(p.read_text()) for p in sorted(root.rglob("result.json"))}


def numbers(record: dict) -> dict:
    """What a run computed and the config it computed it with (where it was written left out)."""
    config = {key: value for key, value in record["config"].items() if key not in ("results_root", "run_dir")}
    return {
        **{key: record[key] for key in ("test_error", "test_loss", "train_error", "train_loss", "steps")},
        "config": config,
    }


def _cell_dir(results_root: Path, args: list[str]) -> Path:
    """The folder `args` train in, as the launcher resolves it (nothing is run)."""
    shown = launch([*args, f"results_root={results_root}", "--cfg", "job", "--resolve"], check=True)
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("run_dir: ")]
    return Path(line.removeprefix("run_dir: ")).absolute()


class _Payload:
    """A pickle whose loading would create a file: what a crafted checkpoint.pt carries."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_two_launches_of_one_cell_train_it_once(results_root):
    args = [*SLOW_CELL, f"results_root={results_root / 'shared'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not list((results_root / "shared").rglob(".lock")) and time.time() < deadline:
        time.sleep(0.05)
    second = launch(args)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 1 and "is being trained by pid" in second.stderr, second.stderr
    (record,) = records(results_root / "shared").values()
    clean = launch([*SLOW_CELL, f"results_root={results_root / 'clean'}"], check=True)
    (reference,) = records(results_root / "clean").values()
    assert numbers(record) == numbers(reference), clean.stderr
    assert not list((results_root / "shared").rglob(".lock"))


def test_concurrent_launches_with_different_lr_keep_their_own_numbers(results_root):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {
        lr: subprocess.Popen(
            [
                sys.executable,
                str(REPO / "launch.py"),
                *CONCURRENT_CELL,
                f"optimizer.lr={lr}",
                f"results_root={results_root / 'both'}",
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for lr in (0.05, 0.1)
    }
    for process in runs.values():
        assert process.wait(timeout=600) == 0, process.stderr.read()
    found = {r["config"]["optimizer"]["lr"]: r for r in records(results_root / "both").values()}
    assert set(found) == {0.05, 0.1}
    launch([*CONCURRENT_CELL, "optimizer.lr=0.05", f"results_root={results_root / 'clean'}"], check=True)
    (reference,) = records(results_root / "clean").values()
    assert numbers(found[0.05]) == numbers(reference)


def test_a_crafted_checkpoint_runs_nothing_and_is_moved_aside(results_root, tmp_path):
    cell = _cell_dir(results_root, QUICK)
    cell.mkdir(parents=True)
    target = tmp_path / "pwned"
    (cell / "checkpoint.pt").write_bytes(pickle.dumps({"model": _Payload(target)}))
    result = launch([*QUICK, f"results_root={results_root}"], check=True)
    assert not target.exists()
    (record,) = records(results_root).values()
    assert record["status"] == "completed"
    moved = Path(record["checkpoint_quarantined"])
    assert moved.parent == cell and moved.name.startswith("checkpoint.pt.corrupt-"), result.stderr


def test_a_truncated_checkpoint_is_moved_aside_and_training_starts_over(results_root):
    args = [*QUICK, f"results_root={results_root}", "keep_checkpoint=true"]
    launch(args, check=True)
    (cell,) = records(results_root)
    (cell / "result.json").unlink()  # an interrupted run: a checkpoint, no record
    checkpoint = (cell / "checkpoint.pt").read_bytes()
    (cell / "checkpoint.pt").write_bytes(checkpoint[: len(checkpoint) // 2])
    (cell / ".metrics.csv.abcd1234.tmp").write_text("left by a killed writer")
    result = launch(args, check=True)
    (record,) = records(results_root).values()
    assert record["status"] == "completed" and "checkpoint_quarantined" in record, result.stderr
    assert list(cell.glob("checkpoint.pt.corrupt-*"))
    assert not (cell / ".metrics.csv.abcd1234.tmp").exists()
    assert "unreadable checkpoint" in (cell / "run.log").read_text()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_read_only_finished_tree_is_skipped(results_root):
    sweep = ["-m", *QUICK, "optimizer=sgd,sam", f"results_root={results_root}"]
    assert launch(sweep).returncode == 0
    prefix = _read_only(results_root)  # a read-only mount for root, whom permission bits do not stop
    try:
        before = _snapshot(results_root)
        again = run(["launch.py", *sweep], prefix=prefix)
        assert again.returncode == 0, again.stderr
        assert "skipped: 2" in again.stdout
        single = run(["launch.py", *QUICK, "optimizer=sam", f"results_root={results_root}"], prefix=prefix)
        assert single.returncode == 0 and "nothing to do" in single.stdout, single.stderr
        cells = {k: v for k, v in _snapshot(results_root).items() if "seed=" in k}
        assert cells == {k: v for k, v in before.items() if "seed=" in k}
    finally:
        for path in [results_root, *results_root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_a_deeply_nested_record_does_not_crash_a_launch(results_root):
    cell = _cell_dir(results_root, QUICK)
    cell.mkdir(parents=True)
    (cell / "result.json").write_text("[" * 100_000 + "]" * 100_000)
    result = launch([*QUICK, f"results_root={results_root}"])
    assert result.returncode == 0, result.stderr
    assert "RecursionError" not in result.stderr
    assert json.loads((cell / "result.json").read_text())["status"] == "completed"
