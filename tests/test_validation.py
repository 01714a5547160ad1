"""The validation layer: every bad value is one `error:` line naming the key, exit status 2, and
nothing is written, not even beside a finished cell.

Every value of the table goes through the check a single run makes before Hydra creates its
folder (runner.sweep.preflight), in this process; one value of each kind of check goes
through `launch.py` itself, so the whole path (exit status, stderr, no traceback) is covered
without starting an interpreter per value.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import QUICK, REPO, launch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from runner.sweep.preflight import Preflight

# (overrides, the key (or text) the one error line must name)
BAD = [
    ("seed=-1", "seed=-1"),
    ("seed=1.5", "seed=1.5"),
    ("cpu_threads=-1", "cpu_threads=-1"),
    ("cpu_threads=0", "cpu_threads=0"),
    ("train.epochs=0", "train.epochs=0"),
    ("train.batch_size=0", "train.batch_size=0"),
    ("train.eval_batch_size=0", "train.eval_batch_size=0"),
    ("train.eval_every=0", "train.eval_every=0"),
    ("train.eval_every=1.5", "train.eval_every=1.5"),
    ("train.label_smoothing=2", "train.label_smoothing=2"),
    ("train.label_smoothing=-0.1", "train.label_smoothing=-0.1"),
    ("train.mixup_cutmix_prob=1.5", "train.mixup_cutmix_prob=1.5"),
    ("train.repeated_aug=0", "train.repeated_aug=0"),
    ("train.grad_norm_examples=-1", "train.grad_norm_examples=-1"),
    ("train.divergence_check_every=0", "train.divergence_check_every=0"),
    ("schedule=batch train.increasing_batch_sizes=[64,32]", "train.increasing_batch_sizes=[64, 32]"),
    ("schedule=batch train.increasing_batch_sizes=[]", "train.increasing_batch_sizes=[]"),
    ("sam.rho=-0.1 optimizer=sam", "sam.rho=-0.1"),
    ("sam.alpha=5 optimizer=gsam", "sam.alpha=5"),
    ("sam.adaptive=maybe optimizer=sam", "sam.adaptive='maybe'"),
    ("sam.eta=-1", "sam.eta=-1"),
    ("optimizer.lr=0", "optimizer.lr=0"),
    ("optimizer.lr=-0.1", "optimizer.lr=-0.1"),
    ("optimizer=sam optimizer.rho=-0.05", "optimizer.rho=-0.05"),
    ("optimizer=gsam optimizer.alpha=1", "optimizer.alpha=1"),
    ("optimizer.max_grad_norm=0", "optimizer.max_grad_norm=0"),
    ("optimizer=sgd optimizer.rho=0.1", "optimizer.rho=0.1 with optimizer=sgd"),
    ("optimizer._target_=builtins.eval", "optimizer._target_='builtins.eval'"),
    ("optimizer.base._target_=os.system", "optimizer.base._target_='os.system'"),
    ("device=tpu", "device='tpu'"),
    ("device=cuda", "device='cuda'"),
    ("precision=fp8", "precision='fp8'"),
    ("channels_last=maybe", "channels_last='maybe'"),
    ("compile=perhaps", "compile='perhaps'"),
    ("deterministic=2", "deterministic=2"),
    ("experiment_name=../../x", "experiment_name='../../x'"),
    ("experiment_name=/tmp/elsewhere", "experiment_name='/tmp/elsewhere'"),
    ("run_dir=/tmp/elsewhere", "run_dir='/tmp/elsewhere' must lie inside results_root"),
    ("dataset.loader=foo", "dataset.loader='foo'"),
    ("dataset.augment=foo", "dataset.augment='foo'"),
    ("dataset.num_classes=1", "dataset.num_classes=1"),
    ("dataset.std=[0,0.2,0.2]", "dataset.std=[0, 0.2, 0.2]"),
    ("dataset.mean=[0.5,0.5]", "dataset.mean has 2 values"),
    ("model.name=foo", "model.name='foo'"),
    ("model._target_=io.open", "model._target_='io.open'"),
    ("model.width=0", "model.width=0"),
    ("schedule.min_lr_ratio=2", "schedule.min_lr_ratio=2"),
    ("schedule.warmup_epochs=5", "schedule.warmup_epochs=5"),
    ("schedule.lr_policy=step", "schedule.lr_policy='step'"),
    ("schedule.warmup_start_ratio=0", "schedule.warmup_start_ratio=0"),
    ("train.batch_size=1000", "schedule.stages[0].batch_size=1000 is larger than the training set"),
    ("schedule=batch train.increasing_batch_sizes=[16,300]", "schedule.stages[1].batch_size=300"),
    ("schedule.stages=[{batch_size:32,epochs:5}]", "schedule.stages epochs add up to 5, but train.epochs=2"),
    ("schedule=batch train.epochs=1 train.increasing_batch_sizes=[16,32]", "train.epochs=1 is fewer than the 2"),
    ("dataset=cifar10 dataset.download=false data_dir=/nonexistent/data", "/nonexistent/data"),
    ("sharpness.worst_linf.rho=-1", "sharpness.worst_linf.rho=-1"),
]


@pytest.fixture(scope="module")
def finished_root(tmp_path_factory) -> Path:
    """A results tree that already holds a finished cell, which no bad launch may touch."""
    root = tmp_path_factory.mktemp("validation") / "results"
    launch([*QUICK, f"results_root={root}"], check=True)
    assert list(root.rglob("result.json"))
    return root


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_the_table_covers_at_least_forty_bad_values():
    assert len(BAD) >= 40


def _overrides(bad: str, root: Path) -> list[str]:
    base = [o for o in QUICK if not (bad.startswith("sharpness") and o == "sharpness=none")]
    return [*base, *bad.split(), f"results_root={root}"]


@pytest.mark.parametrize("overrides, named", BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_is_one_line_exit_2_and_writes_nothing(finished_root, overrides, named, capsys):
    before = _snapshot(finished_root)
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        config = compose("config", overrides=_overrides(overrides, finished_root), return_hydra_config=True)
    try:
        with pytest.raises(SystemExit) as stopped:
            Preflight().on_run_start(config)
    finally:
        HydraConfig.instance().cfg = None  # the check sets it, as Hydra would; no other test may see it
    assert stopped.value.code == 2
    error_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and named in error_lines[0], error_lines
    assert _snapshot(finished_root) == before


# One value per kind of check: a key's own range, keys checked together, a constructor's target, the
# data on disk, the sharpness measure's settings, an optimizer's key that its optimizer does not read.
THROUGH_LAUNCH = [
    "seed=-1",
    "train.batch_size=1000",
    "optimizer.base._target_=os.system",
    "dataset=cifar10 dataset.download=false data_dir=/nonexistent/data",
    "sharpness.worst_linf.rho=-1",
    "optimizer=sgd optimizer.rho=0.1",
]


@pytest.mark.parametrize("overrides", THROUGH_LAUNCH)
def test_a_bad_value_through_launch_is_one_line_exit_2_and_writes_nothing(finished_root, overrides):
    named = dict(BAD)[overrides]
    before = _snapshot(finished_root)
    result = launch(_overrides(overrides, finished_root))
    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and named in error_lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(finished_root) == before


def test_data_dir_that_is_a_file_is_refused(finished_root, tmp_path):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    result = launch([*QUICK, f"data_dir={a_file}", f"results_root={finished_root}"])
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert f"data_dir='{a_file}' must be a folder, not a file" in line


def test_a_download_without_network_is_one_line(tmp_path):
    # A proxy that refuses every connection stands in for a machine without network.
    env = {
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    result = launch(
        [
            "dataset=cifar10",
            "dataset.download=true",
            f"data_dir={tmp_path / 'data'}",
            f"results_root={tmp_path / 'results'}",
            "progress=false",
        ],
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: cannot download cifar10 into ") and "dataset.download=false" in line
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "results").exists() or not list((tmp_path / "results").rglob("*.json"))


def broken_cifar(tmp_path: Path) -> list[str]:
    """CIFAR-10 whose folder exists but holds no batches: valid at launch, a failure once the run reads it."""
    (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
    return [
        "dataset=cifar10",
        "dataset.download=false",
        f"data_dir={tmp_path / 'data'}",
        "model.width=8",
        "train.epochs=1",
        "sharpness=none",
        "progress=false",
        "device=cpu",
    ]


def test_a_failed_single_run_exits_non_zero(tmp_path):
    result = launch([*broken_cifar(tmp_path), f"results_root={tmp_path / 'results'}"])
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("failed:") == 1 and "cifar" in result.stderr
    (record,) = list((tmp_path / "results").rglob("result.json"))
    assert '"status": "failed"' in record.read_text()


def test_a_diverged_single_run_exits_non_zero(tmp_path):
    result = launch([*QUICK, "optimizer.lr=1e30", f"results_root={tmp_path}"])
    assert result.returncode == 1 and "diverged" in result.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_result_files_follow_the_umask(tmp_path):
    previous = os.umask(0o022)  # the launched process inherits it
    try:
        result = launch([*QUICK, f"results_root={tmp_path}"], check=True)
    finally:
        os.umask(previous)
    (record,) = list(tmp_path.rglob("result.json"))
    for name in ("result.json", "metrics.csv", "model.pt", "config.yaml"):
        mode = (record.parent / name).stat().st_mode & 0o777
        assert mode == 0o644, (name, oct(mode), result.stderr)


def test_a_batch_the_workers_cannot_split_is_refused(finished_root):
    # torchrun sets WORLD_SIZE; the configured batch is global and must split evenly over the ranks.
    result = launch([*QUICK, "train.batch_size=30", f"results_root={finished_root}"], env={"WORLD_SIZE": "4"})
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "schedule.stages[0].batch_size=30 is not divisible by the 4 workers" in line


def test_a_sweep_checks_divisibility_against_its_launcher(tmp_path):
    result = launch(
        [
            "-m",
            *QUICK,
            "optimizer=sgd,sam",
            "train.batch_size=30",
            "hydra/launcher=local",
            "hydra.launcher.tasks_per_node=4",
            f"results_root={tmp_path}",
        ]
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: cell")]
    assert len(errors) == 2 and all("not divisible by the 4 workers" in line for line in errors)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
