"""The `logger` group: TensorBoard, W&B (offline) and MLflow (file store) written for real and read back.

Each tracker's own files are read: TensorBoard's event files with its
EventAccumulator, W&B's offline `.wandb` record log with its protobuf schema,
MLflow's store with MlflowClient. A requeued cell must land in the same
tracker run, so each test opens the cell a second time.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import QUICK, REPO, launch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import runner.loggers as loggers
from runner.folder import TRACKERS_FILE
from runner.loggers.common import run_key

CONF = REPO / "conf"
CELL = "synthetic-resnet18/sam-constant/seed=0"
IDENTITY = {
    "dataset": "synthetic",
    "model": "resnet18",
    "optimizer": "sam",
    "schedule": "constant",
    "variant": "rho=0.1",
    "seed": 0,
    "experiment": "exp",
    "cell": CELL,
}
ROWS = [
    {
        "epoch": 1,
        "stage": 0,
        "batch_size": 32,
        "lr": 0.1,
        "rho": 0.05,
        "train_loss": 2.0,
        "train_error": 80.0,
        "test_loss": None,
        "test_error": None,
        "grad_norm": None,
        "wall_time_s": 1.5,
    },
    {
        "epoch": 2,
        "stage": 0,
        "batch_size": 32,
        "lr": 0.1,
        "rho": 0.05,
        "train_loss": 1.5,
        "train_error": 60.0,
        "test_loss": 1.7,
        "test_error": 65.0,
        "grad_norm": None,
        "wall_time_s": 3.0,
    },
    {
        "epoch": 3,
        "stage": 1,
        "batch_size": 64,
        "lr": 0.05,
        "rho": 0.05,
        "train_loss": 1.0,
        "train_error": 40.0,
        "test_loss": 1.2,
        "test_error": 45.0,
        "grad_norm": None,
        "wall_time_s": 4.5,
    },
]
RECORD = {
    "schema_version": 2,
    "status": "completed",
    "test_error": 45.0,
    "test_loss": 1.2,
    "train_error": 40.0,
    "train_loss": 1.0,
    "sharpness": {"worst_linf": {"value": 0.05, "rho": 0.0002}, "hessian_trace": {"value": 12.5}},
    "epochs": 3,
    "steps": 30,
    "wall_time_s": 5.0,
    "error": None,
}


@pytest.fixture(autouse=True)
def no_tracker_settings_from_outside(monkeypatch):
    """The machine's own tracker settings (a W&B login, an MLflow server) must not reach these tests."""
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "SAM_TENSORBOARD_DIR",
        "WANDB_PROJECT",
        "WANDB_ENTITY",
        "WANDB_TAGS",
        "WANDB_API_KEY",
        "WANDB_BASE_URL",
        "WANDB_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def _logger_in_defaults() -> bool:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return "logger" in compose("config")


# Whether conf/config.yaml selects `logger: csv` by default (then `logger=[...]` needs no `+`).
LOGGER_IN_DEFAULTS = _logger_in_defaults()


def make_cfg(results: Path, trackers: list[str], *overrides: str):
    """The real composed config with `trackers` selected (before and after `logger: csv` joins the defaults)."""
    select = f"logger=[{','.join(trackers)}]"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                select if LOGGER_IN_DEFAULTS else "+" + select,
                f"results_root={results}",
                "experiment_name=exp",
                "dataset=synthetic",
                "optimizer=sam",
                "optimizer.rho=0.1",
                *overrides,
            ],
        )
    return cfg


def run_dir_of(cfg) -> Path:
    path = Path(cfg.results_root) / "exp" / CELL
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_cell(cfg, rows=ROWS, record=RECORD, **options):
    opened = loggers.open_loggers(cfg, run_dir_of(cfg), IDENTITY, **options)
    for row in rows:
        opened.log_epoch(row)
    if record is not None:
        opened.log_final(record)
    opened.close()
    return opened


# ---------------------------------------------------------------- selection and checks


@pytest.mark.slow  # a fresh interpreter importing torch: ~10 s on two busy cores
def test_csv_alone_opens_no_tracker_and_imports_none(tmp_path):
    script = (
        "import sys, runner.loggers as L\n"
        "from pathlib import Path\n"
        f"cfg = {{'logger': {{'csv': {{}}}}, 'force': False}}\n"
        f"opened = L.open_loggers(cfg, Path({str(tmp_path)!r}), {IDENTITY!r})\n"
        "opened.log_epoch({'epoch': 1, 'train_loss': 1.0}); opened.close()\n"
        "print(opened.names, sorted(m for m in ('wandb', 'mlflow', 'tensorboard') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"
    assert not (tmp_path / TRACKERS_FILE).exists()


def test_logger_problems_accepts_every_installed_tracker(tmp_path):
    cfg = make_cfg(tmp_path, ["csv", "tensorboard", "wandb", "mlflow"], "logger.wandb.mode=online")
    assert loggers.logger_problems(cfg) == []
    assert loggers.logger_problems(OmegaConf.create({"seed": 0})) == []


def test_logger_problems_names_the_missing_package_and_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(loggers.REQUIRED_MODULES, "wandb", "sam_sweeps_no_such_module")
    cfg = make_cfg(tmp_path, ["csv", "wandb"], "logger.wandb.mode=offline")
    assert loggers.logger_problems(cfg) == ["logger=wandb needs the wandb package: pip install 'sam-sweeps[wandb]'"]
    # disabled needs no package
    assert loggers.logger_problems(make_cfg(tmp_path, ["wandb"], "logger.wandb.mode=disabled")) == []


def test_logger_problems_bad_names_modes_and_servers(tmp_path):
    found = loggers.logger_problems(make_cfg(tmp_path, ["csv"], "+logger.neptune={}"))
    assert found == ["logger.neptune: unknown tracker; valid: csv, tensorboard, wandb, mlflow"]
    found = loggers.logger_problems(make_cfg(tmp_path, ["wandb"], "logger.wandb.mode=sometimes"))
    assert found == [
        "logger.wandb.mode='sometimes' must be one of online, offline, disabled (WANDB_MODE sets the default)"
    ]
    assert loggers.logger_problems(make_cfg(tmp_path, ["wandb"], "logger.wandb.mode=dryrun")) == []
    # Port 9 (discard) refuses connections on this machine: a server that does not answer stops the launch.
    found = loggers.logger_problems(make_cfg(tmp_path, ["mlflow"], "logger.mlflow.tracking_uri=http://127.0.0.1:9"))
    assert len(found) == 1 and found[0].startswith("logger.mlflow.tracking_uri='http://127.0.0.1:9' does not answer")


def test_environment_variables_set_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_cfg(tmp_path, ["wandb", "mlflow", "tensorboard"])
    settings = loggers.selected(cfg)
    assert settings["wandb"]["mode"] == "offline" and settings["wandb"]["project"] == "from-env"
    assert settings["mlflow"]["tracking_uri"] == f"sqlite:///{tmp_path}/mlflow.db"
    assert settings["mlflow"]["experiment"] == "exp"
    assert settings["tensorboard"]["log_dir"] is None


def test_run_key_names_the_cell_folder(tmp_path):
    cell = tmp_path / "exp" / "a" / "seed=0"
    assert run_key(cell) == run_key(tmp_path / "exp" / "a" / ".." / "a" / "seed=0")
    assert run_key(cell) != run_key(tmp_path / "exp" / "a" / "seed=1")
    assert len(run_key(cell)) == 16


@pytest.mark.skipif(not LOGGER_IN_DEFAULTS, reason="conf/config.yaml has no `logger: csv` in its defaults yet")
def test_launch_composes_a_logger_list():
    out = launch(["logger=[csv,tensorboard]", "--cfg", "job"], timeout=120, check=True)
    composed = OmegaConf.create(out.stdout)
    assert set(composed.logger) == {"csv", "tensorboard"}
    default = OmegaConf.create(launch(["--cfg", "job"], timeout=120, check=True).stdout)
    assert set(default.logger) == {"csv"}


# ---------------------------------------------------------------- TensorBoard


def events_in(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events


def scalars(log_dir: Path) -> dict[str, dict[int, float]]:
    events = events_in(log_dir)
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def text(log_dir: Path, tag: str) -> str:
    (event,) = events_in(log_dir).Tensors(f"{tag}/text_summary")
    return event.tensor_proto.string_val[0].decode()


def test_tensorboard_epochs_and_final_values_read_back(tmp_path):
    cfg = make_cfg(tmp_path, ["csv", "tensorboard"])
    opened = write_cell(cfg)
    assert opened.names == ["tensorboard"]
    found = scalars(run_dir_of(cfg) / "tensorboard")
    assert found["train_loss"] == {1: 2.0, 2: 1.5, 3: 1.0}
    assert found["test_error"] == {2: 65.0, 3: 45.0}  # epoch 1 had no test evaluation
    assert found["batch_size"] == {1: 32, 2: 32, 3: 64}
    assert found["lr"] == pytest.approx({1: 0.1, 2: 0.1, 3: 0.05})
    assert "grad_norm" not in found
    assert found["final/test_error"] == {3: 45.0}
    assert found["final/wall_time_s"] == {3: 5.0}
    assert found["sharpness/worst_linf"] == pytest.approx({3: 0.05})
    assert found["sharpness/hessian_trace"] == {3: 12.5}
    folder = run_dir_of(cfg) / "tensorboard"
    assert json.loads(text(folder, "config").strip("`\n"))["optimizer"]["rho"] == 0.1
    assert "**variant**: rho=0.1" in text(folder, "identity") and text(folder, "status") == "completed"
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    start = events_in(folder).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(start).session_start_info.hparams
    assert hparams["optimizer.rho"].number_value == 0.1 and hparams["model"].string_value == "resnet18"


def test_tensorboard_resumed_cell_replaces_epochs_after_its_checkpoint(tmp_path):
    cfg = make_cfg(tmp_path, ["tensorboard"])
    write_cell(cfg, rows=ROWS, record=None)  # preempted after epoch 3 was logged
    # The requeued job resumes from the epoch-2 checkpoint: epoch 3 again, then epoch 4.
    again = [{**ROWS[2], "train_loss": 0.9}, {**ROWS[2], "epoch": 4, "train_loss": 0.8}]
    write_cell(cfg, rows=again, record={**RECORD, "epochs": 4})
    folder = run_dir_of(cfg) / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 2  # one folder, appended
    found = scalars(folder)
    assert found["train_loss"] == pytest.approx({1: 2.0, 2: 1.5, 3: 0.9, 4: 0.8})
    assert found["final/test_error"] == {4: 45.0}
    # Preempted during the sharpness measure: the requeued job has no epoch left, only the record.
    write_cell(cfg, rows=[], record={**RECORD, "epochs": 4, "test_error": 44.0})
    found = scalars(folder)
    assert found["train_loss"] == pytest.approx({1: 2.0, 2: 1.5, 3: 0.9, 4: 0.8})
    assert found["final/test_error"] == {4: 44.0}


def test_tensorboard_root_gets_a_folder_per_cell(tmp_path):
    root = tmp_path / "tb"
    cfg = make_cfg(tmp_path, ["tensorboard"], f"logger.tensorboard.log_dir={root}")
    write_cell(cfg, rows=ROWS[:1], record=None)
    assert scalars(root / "exp" / CELL)["train_loss"] == {1: 2.0}
    assert not (run_dir_of(cfg) / "tensorboard").exists()


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the event folder should go")
    cfg = make_cfg(tmp_path, ["tensorboard"], f"logger.tensorboard.log_dir={blocker}")
    with caplog.at_level(logging.WARNING, logger="runner.loggers"):
        opened = write_cell(cfg)  # every call returns; none raises
    warnings = [r.getMessage() for r in caplog.records if r.name == "runner.loggers"]
    assert len(warnings) == 1 and warnings[0].startswith("logger=tensorboard failed in log_epoch")
    assert opened.names == []


def test_a_tracker_that_cannot_start_is_left_out_and_the_others_log(tmp_path, caplog):
    cfg = make_cfg(tmp_path, ["tensorboard", "mlflow"], "logger.mlflow.tracking_uri=nosuchscheme://x")
    with caplog.at_level(logging.WARNING, logger="runner.loggers"):
        opened = write_cell(cfg)
    warnings = [r.getMessage() for r in caplog.records if r.name == "runner.loggers"]
    assert len(warnings) == 1 and warnings[0].startswith("logger=mlflow could not start")
    assert opened.names == ["tensorboard"]
    assert scalars(run_dir_of(cfg) / "tensorboard")["train_loss"] == {1: 2.0, 2: 1.5, 3: 1.0}


class SlowTracker:
    """A tracker whose every call takes 0.3 s, like a tracking server across a slow network."""

    name = "slow"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_epoch(self, step, metrics):
        time.sleep(0.3)
        self.calls.append(("epoch", step, metrics["train_loss"]))

    def log_final(self, step, metrics, record):
        self.calls.append(("final", step, metrics["final/test_error"]))

    def close(self, status):
        self.calls.append(("close", status))


def test_logging_returns_at_once_and_close_waits_for_the_queue():
    tracker = SlowTracker()
    opened = loggers.Loggers([tracker])
    started = time.monotonic()
    for row in ROWS:
        opened.log_epoch(row)
    opened.log_final(RECORD)
    assert time.monotonic() - started < 0.25  # the training loop never waits for a tracker
    opened.close()
    assert tracker.calls == [
        ("epoch", 1, 2.0),
        ("epoch", 2, 1.5),
        ("epoch", 3, 1.0),
        ("final", 3, 45.0),
        ("close", "completed"),
    ]
    opened.log_epoch(ROWS[0])  # after close: ignored, no error
    assert len(tracker.calls) == 5


# ---------------------------------------------------------------- W&B (offline)


def wandb_records(path: Path) -> list:
    """The records of a W&B `.wandb` file: a 7-byte header, then LevelDB-log blocks of protobuf Records."""
    from wandb.proto import wandb_internal_pb2

    data, block, records, pending, pos = path.read_bytes(), 32768, [], b"", 7
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, or LAST of a record split over blocks
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def finished_records(folder: Path, timeout_s: float = 120.0) -> list:
    """The run's records once its `exit` record is on disk: `run.finish()` returns before wandb-core's
    writer has always flushed the file (the service process writes it moments later)."""
    deadline = time.monotonic() + timeout_s
    while not any(folder.glob("run-*.wandb")) and time.monotonic() < deadline:  # not even created yet
        time.sleep(0.1)
    while True:
        records = wandb_records(next(folder.glob("run-*.wandb")))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


def wandb_run(folder: Path) -> dict:
    records = finished_records(folder)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            history[items["_step"]] = items
    summary = {}
    for r in records:
        if r.WhichOneof("record_type") == "summary":
            summary.update({"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in r.summary.update})
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    return {
        "id": run.run_id,
        "group": run.run_group,
        "tags": list(run.tags),
        "name": run.display_name,
        "project": run.project,
        "config": config,
        "history": history,
        "summary": summary,
    }


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a real key
    (tmp_path / "wandb-dir").mkdir()
    return tmp_path / "wandb-dir" / "wandb"


def test_wandb_offline_run_holds_epochs_final_values_and_tags(tmp_path, monkeypatch, wandb_env, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(tmp_path, ["csv", "wandb"], "logger.wandb.tags=[mine]")
    with caplog.at_level(logging.WARNING, logger="runner.loggers"):
        opened = write_cell(cfg)
    assert [r.getMessage() for r in caplog.records if r.name == "runner.loggers"] == []
    assert opened.names == ["wandb"]
    folders = sorted(wandb_env.glob("offline-run-*"))
    assert len(folders) == 1
    run = wandb_run(folders[0])
    assert run["id"] == run_key(run_dir_of(cfg)) and folders[0].name.endswith(run["id"])
    assert run["group"] == "exp" and run["name"] == CELL and run["project"] == "sam-sweeps"
    assert run["tags"] == [
        "dataset=synthetic",
        "model=resnet18",
        "optimizer=sam",
        "schedule=constant",
        "variant=rho=0.1",
        "seed=0",
        "mine",
    ]
    assert run["config"]["optimizer"]["rho"] == 0.1 and run["config"]["cell"] == CELL
    assert [run["history"][step]["train_loss"] for step in (1, 2, 3)] == [2.0, 1.5, 1.0]
    assert "test_error" not in run["history"][1] and run["history"][3]["test_error"] == 45.0
    assert run["summary"]["final/test_error"] == 45.0 and run["summary"]["sharpness/worst_linf"] == 0.05
    assert run["summary"]["status"] == "completed"


def test_wandb_requeued_cell_resumes_the_same_run_and_force_starts_another(tmp_path, monkeypatch, wandb_env, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(tmp_path, ["wandb"])
    with caplog.at_level(logging.WARNING, logger="runner.loggers"):
        write_cell(cfg, rows=ROWS[:2], record=None)  # preempted
        write_cell(cfg, rows=ROWS[2:])  # requeued
    assert [r.getMessage() for r in caplog.records if r.name == "runner.loggers"] == []
    runs = [wandb_run(folder) for folder in sorted(wandb_env.glob("offline-run-*"))]
    assert [run["id"] for run in runs] == [run_key(run_dir_of(cfg))] * 2
    assert sorted(runs[0]["history"]) == [1, 2] and sorted(runs[1]["history"]) == [3]
    write_cell(cfg, rows=ROWS[:1], record=None, fresh=True)  # force=true: a new run for the retrained cell
    ids = {wandb_run(folder)["id"] for folder in wandb_env.glob("offline-run-*")}
    assert ids == {run_key(run_dir_of(cfg)), run_key(run_dir_of(cfg)) + "-1"}


def online_fallback(tmp_path, monkeypatch, wandb_env, caplog) -> list[str]:
    """Open W&B online against a closed port, log, close: the warnings, after checking the run went offline."""
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    cfg = make_cfg(tmp_path, ["wandb"], "logger.wandb.init_timeout=3")
    with caplog.at_level(logging.WARNING, logger="runner.loggers"):
        opened = loggers.open_loggers(cfg, run_dir_of(cfg), IDENTITY)
        assert opened.names == ["wandb"]
        for row in ROWS:
            opened.log_epoch(row)
        opened.log_final(RECORD)
        opened.close()
    assert opened.names == ["wandb"]
    (folder,) = wandb_env.glob("offline-run-*")
    run = wandb_run(folder)
    assert run["id"] == run_key(run_dir_of(cfg)) and sorted(run["history"]) == [1, 2, 3]
    return [r.getMessage() for r in caplog.records if r.name == "runner.loggers"]


def test_wandb_without_credentials_falls_back_to_offline_with_one_warning(tmp_path, monkeypatch, wandb_env, caplog):
    warnings = online_fallback(tmp_path, monkeypatch, wandb_env, caplog)
    assert len(warnings) == 1 and "cannot reach W&B (UsageError" in warnings[0] and "logging offline" in warnings[0]


@pytest.mark.slow  # waits logger.wandb.init_timeout for the server
def test_wandb_unreachable_server_falls_back_to_offline_with_one_warning(tmp_path, monkeypatch, wandb_env, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)  # a well-formed key, so W&B tries the (closed) server
    warnings = online_fallback(tmp_path, monkeypatch, wandb_env, caplog)
    assert len(warnings) == 1 and "cannot reach W&B" in warnings[0] and "logging offline" in warnings[0]


# ---------------------------------------------------------------- MLflow (the default SQLite store)


def mlflow_client(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_mlflow_params_metrics_and_tags_read_back(tmp_path):
    cfg = make_cfg(tmp_path, ["csv", "mlflow"])
    assert write_cell(cfg).names == ["mlflow"]
    client = mlflow_client(tmp_path)
    experiment = client.get_experiment_by_name("exp")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == CELL
    tags = run.data.tags
    assert {k: tags[k] for k in ("dataset", "model", "optimizer", "schedule", "variant", "seed")} == {
        "dataset": "synthetic",
        "model": "resnet18",
        "optimizer": "sam",
        "schedule": "constant",
        "variant": "rho=0.1",
        "seed": "0",
    }
    assert tags["sam.run_key"] == run_key(run_dir_of(cfg)) and tags["status"] == "completed"
    params = run.data.params
    assert params["optimizer.rho"] == "0.1" and params["optimizer.name"] == "sam" and params["cell"] == CELL
    assert json.loads(params["train.increasing_batch_sizes"]) == list(cfg.train.increasing_batch_sizes)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert {m.step: m.value for m in history} == {1: 2.0, 2: 1.5, 3: 1.0}
    assert run.data.metrics["final/test_error"] == 45.0 and run.data.metrics["sharpness/hessian_trace"] == 12.5
    state = json.loads((run_dir_of(cfg) / TRACKERS_FILE).read_text())
    assert state["mlflow"]["run_id"] == run.info.run_id


def test_mlflow_requeued_cell_continues_the_same_run(tmp_path, caplog):
    cfg = make_cfg(tmp_path, ["mlflow"])
    with caplog.at_level(logging.WARNING, logger="runner.loggers"):
        write_cell(cfg, rows=ROWS[:2], record=None)  # preempted
    client = mlflow_client(tmp_path)
    experiment_id = client.get_experiment_by_name("exp").experiment_id
    (first,) = client.search_runs([experiment_id])
    assert first.info.status == "KILLED"
    write_cell(cfg, rows=ROWS[2:])  # requeued, trackers.json in place
    (run,) = client.search_runs([experiment_id])
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert {m.step for m in client.get_metric_history(run.info.run_id, "train_loss")} == {1, 2, 3}
    (run_dir_of(cfg) / TRACKERS_FILE).unlink()  # lost: the run-key tag still finds the run
    write_cell(cfg, rows=[{**ROWS[2], "epoch": 4}], record=None)
    (again,) = client.search_runs([experiment_id])
    assert again.info.run_id == run.info.run_id
    write_cell(cfg, rows=ROWS[:1], record=None, fresh=True)
    assert len(client.search_runs([experiment_id])) == 2
    assert json.loads((run_dir_of(cfg) / TRACKERS_FILE).read_text())["generation"] == 1
    assert [r.getMessage() for r in caplog.records if r.name == "runner.loggers"] == []


# ---------------------------------------------------------------- a real cell killed and resumed


@pytest.mark.slow  # a SIGKILL raced against wandb's service process: not reliable in the default suite yet
def test_a_killed_and_resumed_cell_keeps_every_epoch_in_wandb_and_mlflow(tmp_path, monkeypatch):
    """SIGKILL after two epochs, relaunch: W&B's run file of the resumed attempt and MLflow's run, read back
    with the trackers' own readers (MLflow's `search_runs` with nothing but the store's URI), hold all four."""
    import mlflow

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    results = tmp_path / "results"
    args = [
        *QUICK,
        "model.width=16",
        "dataset.train_size=2048",
        "train.epochs=4",
        "logger=[wandb,mlflow]",
        "tags=[resumed]",
        f"results_root={results}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env["HOME"] = str(tmp_path)  # no W&B login from the machine
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # W&B's service process goes down with the cell
    )
    deadline = time.time() + 300
    metrics = None
    while process.poll() is None and time.time() < deadline:
        found = list(results.rglob("metrics.csv"))
        if found and len(found[0].read_text().strip().splitlines()) >= 3:  # header and two epochs
            metrics = found[0]
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert metrics is not None, "the cell ended before its second epoch"
    run_dir = metrics.parent
    assert not (run_dir / "result.json").exists(), "the kill came too late to test a resume"

    resumed = launch(args, env={"WANDB_MODE": "offline", "WANDB_SILENT": "true", "HOME": str(tmp_path)}, check=True)
    assert "resuming" in (run_dir / "run.log").read_text(), resumed.stderr
    epochs = [1, 2, 3, 4]

    last_attempt = sorted((run_dir / "wandb").glob("offline-run-*"))[-1]
    run = wandb_run(last_attempt)
    assert sorted(run["history"]) == epochs
    assert "resumed" in run["tags"] and run["summary"]["status"] == "completed"

    mlflow.set_tracking_uri(f"sqlite:///{results / 'mlflow.db'}")
    frame = mlflow.search_runs(experiment_names=["adhoc"])
    assert len(frame) == 1 and frame.loc[0, "status"] == "FINISHED" and frame.loc[0, "tags.tags"] == "resumed"
    history = mlflow.MlflowClient().get_metric_history(frame.loc[0, "run_id"], "train_loss")
    assert sorted({metric.step for metric in history}) == epochs


def test_mlflow_local_stores_become_absolute(tmp_path, monkeypatch):
    from runner.loggers.mlflow_logger import normalize_uri

    monkeypatch.chdir(tmp_path)
    assert normalize_uri("sqlite:///results/mlflow.db") == f"sqlite:///{tmp_path}/results/mlflow.db"
    assert normalize_uri(f"sqlite:///{tmp_path}/a.db") == f"sqlite:///{tmp_path}/a.db"
    assert normalize_uri("file:mlruns") == (tmp_path / "mlruns").as_uri()
    assert normalize_uri("http://host:5000") == "http://host:5000"
