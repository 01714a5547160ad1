"""The cluster launcher presets and the end-of-sweep summary, without a cluster.

The presets are composed and resolved as Hydra does when it builds the
launcher, the SLURM one down to the sbatch script submitit would write; the
summary is exercised by a local multirun (the basic launcher runs the cells in
this process tree, through the same callback as on SLURM).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST, REPO, launch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

SUMMARY_CALLBACK = "++hydra.callbacks.sweep_summary._target_=runner.sweep.summary.SweepSummary"
CLUSTER_VARIABLES = (
    "SAM_SLURM_PARTITION",
    "SAM_SLURM_ACCOUNT",
    "SAM_SLURM_QOS",
    "SAM_SLURM_CONSTRAINT",
    "SAM_SLURM_TIMEOUT_MIN",
    "SAM_SLURM_CPUS_PER_TASK",
    "SAM_SLURM_MEM_GB",
    "SAM_SLURM_ARRAY_PARALLELISM",
    "SAM_SLURM_SETUP",
)


def _launcher(name: str, *overrides: str, results_root: str = "/results") -> dict:
    """hydra.launcher of the composed config, resolved as the launcher sees it."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"hydra/launcher={name}", f"results_root={results_root}", *overrides],
            return_hydra_config=True,
        )
        HydraConfig.instance().set_config(cfg)
        return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


@pytest.fixture
def clean_env(monkeypatch):
    for name in CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_slurm_preset_defaults(clean_env):
    launcher = _launcher("slurm")
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["submitit_folder"] == "/results/adhoc/.submitit/%j"
    # Site values are unset unless the environment gives them: sbatch then uses the cluster's defaults.
    assert launcher["partition"] is launcher["account"] is launcher["qos"] is launcher["mem_gb"] is None
    assert launcher["gpus_per_node"] == 1 and launcher["tasks_per_node"] == 1
    # Preemption and time limits requeue the job (submitit counts a USR2 as a time-out when
    # timeout_min is small, so at least one is needed); the scheduler may requeue it too.
    assert launcher["max_num_timeout"] >= 1
    assert launcher["additional_parameters"] == {"requeue": True}


def test_slurm_preset_reads_the_cluster_from_the_environment(clean_env):
    for name, value in {
        "SAM_SLURM_PARTITION": "gpu",
        "SAM_SLURM_ACCOUNT": "proj42",
        "SAM_SLURM_QOS": "high",
        "SAM_SLURM_TIMEOUT_MIN": "240",
        "SAM_SLURM_CPUS_PER_TASK": "16",
        "SAM_SLURM_MEM_GB": "64",
        "SAM_SLURM_SETUP": "module load cuda/12",
    }.items():
        clean_env.setenv(name, value)
    launcher = _launcher("slurm", "hydra.launcher.gpus_per_node=4", "hydra.launcher.tasks_per_node=4")
    assert (launcher["partition"], launcher["account"], launcher["qos"]) == ("gpu", "proj42", "high")
    assert (launcher["timeout_min"], launcher["cpus_per_task"], launcher["mem_gb"]) == (240, 16, 64)
    assert "module load cuda/12" in launcher["setup"]
    assert (launcher["gpus_per_node"], launcher["tasks_per_node"]) == (4, 4)


def test_slurm_preset_makes_the_sbatch_script(clean_env, monkeypatch):
    """What submitit would submit: the cluster values, --requeue and the USR2 warning."""
    from submitit.slurm.slurm import _make_sbatch_string

    monkeypatch.setenv("SAM_SLURM_ACCOUNT", "proj42")
    launcher = _launcher("slurm", "hydra.launcher.partition=gpu")
    script = _make_sbatch_string(
        command="python -m submitit.core._submit .",
        folder="/results/adhoc/.submitit/%j",
        partition=launcher["partition"],
        account=launcher["account"],
        qos=launcher["qos"],
        time=launcher["timeout_min"],
        gpus_per_node=launcher["gpus_per_node"],
        ntasks_per_node=launcher["tasks_per_node"],
        cpus_per_task=launcher["cpus_per_task"],
        signal_delay_s=launcher["signal_delay_s"],
        setup=launcher["setup"],
        additional_parameters=launcher["additional_parameters"],
    )
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj42",
        "#SBATCH --requeue",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --time=1440",
    ):
        assert line in script.splitlines(), script
    assert "--qos" not in script  # unset values leave no flag behind
    assert "export OMP_NUM_THREADS=$(( SLURM_CPUS_PER_TASK > 0 ? SLURM_CPUS_PER_TASK : 1 ))" in script


def test_local_preset(clean_env):
    launcher = _launcher("local")
    assert launcher["_target_"].endswith("LocalLauncher")
    assert launcher["submitit_folder"] == "/results/adhoc/.submitit/%j"
    assert launcher["gpus_per_node"] == 0


def test_sweep_summary_of_a_local_multirun(results_root):
    """Completed, failed (with its log) and, on a relaunch, skipped cells, in sweep_summary.json."""
    cell = "synthetic-resnet18/sam-constant/batch_size=32,epochs=2,width=8/seed=0"  # FAST's variant
    broken = results_root / "adhoc" / cell
    (broken / "metrics.csv").mkdir(parents=True)  # the sam cell cannot write its metrics: it fails
    args = ["-m", *FAST, "optimizer=sgd,sam", f"results_root={results_root}", SUMMARY_CALLBACK]
    first = launch(args)
    assert first.returncode == 1, first.stderr  # a failed cell: the sweep's exit status says so
    summary_path = results_root / "adhoc" / "sweep_summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["finished"] is True
    assert summary["counts"]["completed"] == 1 and summary["counts"]["failed"] == 1, summary
    (failure,) = summary["failures"]
    assert Path(failure["log"]) == broken / "run.log" and failure["error"]
    assert Path(failure["log"]).exists()
    assert "Sweep summary: 2 cells" in first.stdout and f"FAILED {cell}" in first.stdout

    assert launch(args).returncode == 1  # the completed cell is skipped, the failed one tried again
    again = json.loads(summary_path.read_text())
    assert again["sweep_id"] != summary["sweep_id"]
    assert again["counts"]["skipped"] == 1 and again["counts"]["failed"] == 1, again


def test_no_summary_outside_a_multirun(results_root):
    launch([*FAST, f"results_root={results_root}", SUMMARY_CALLBACK], check=True)
    assert not list(results_root.rglob("sweep_summary.json"))
    assert not list(results_root.rglob(".outcomes"))
