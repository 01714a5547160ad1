"""Checkpoints are data, never code: crafted pickles are refused unrun, broken files are named and moved aside."""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from runner.training import checkpoint as ckpt
from runner.training.checkpoint import CorruptCheckpoint, Progress

REPO = Path(__file__).resolve().parents[1]


class WritesAFile:
    """Unpickling this opens (creates) a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


class RunsAShellCommand:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(torch.randn(16, 4)).square().mean()
    loss.backward()
    optimizer.step()  # momentum buffers: optimizer state worth restoring
    return model, optimizer


def _crafted_files(folder: Path, target: Path) -> dict[str, Path]:
    """checkpoint.pt files whose loading with pickle would create `target`, in each form a loader meets."""
    files = {}
    for name, payload in (("open", WritesAFile(target)), ("system", RunsAShellCommand(target))):
        for protocol in (2, pickle.DEFAULT_PROTOCOL):  # a raw pickle, as the legacy torch format reads it
            path = folder / f"raw-{name}-{protocol}" / ckpt.CHECKPOINT_FILE
            path.parent.mkdir(parents=True)
            path.write_bytes(pickle.dumps({"model": payload, "config": {}}, protocol=protocol))
            files[path.parent.name] = path
        path = folder / f"zip-{name}" / ckpt.CHECKPOINT_FILE  # torch's own zip format, payload in data.pkl
        path.parent.mkdir(parents=True)
        torch.save(
            {
                "model": {},
                "optimizer": {},
                "epoch": 1,
                "step": 1,
                "wall_time_s": 0.0,
                "metrics": [],
                "rng": {},
                "config": {"note": payload},
            },
            path,
        )
        files[path.parent.name] = path
    return files


def test_the_crafted_payload_would_run_under_plain_pickle(tmp_path: Path) -> None:
    """The fixture is a real threat: unpickling it without restrictions does create the file."""
    target = tmp_path / "created"
    handle = pickle.loads(pickle.dumps(WritesAFile(target)))
    handle.close()
    assert target.exists()


@pytest.mark.parametrize("loader", ["load_checkpoint", "checkpoint_config", "read_checkpoint"])
def test_crafted_pickle_is_refused_and_never_runs(tmp_path: Path, loader: str) -> None:
    target = tmp_path / "pwned"
    model, optimizer = _model_and_optimizer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name, path in _crafted_files(tmp_path, target).items():
        with pytest.raises(CorruptCheckpoint) as caught:
            if loader == "load_checkpoint":
                ckpt.load_checkpoint(path, model, optimizer)
            else:
                getattr(ckpt, loader)(path)
        assert not target.exists(), f"{name}: the payload ran"
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{path}: unreadable checkpoint ("), message
        assert caught.value.path == path
    if loader == "load_checkpoint":
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert not target.exists()


def test_refusal_names_the_foreign_function(tmp_path: Path) -> None:
    path = _crafted_files(tmp_path, tmp_path / "pwned")["zip-system"]
    with pytest.raises(CorruptCheckpoint, match=r"it names posix\.system, which a checkpoint never holds"):
        ckpt.read_checkpoint(path)


def _saved(run_dir: Path) -> tuple[Path, nn.Module, torch.optim.Optimizer]:
    model, optimizer = _model_and_optimizer()
    path = ckpt.save_checkpoint(
        run_dir,
        model,
        optimizer,
        Progress(3, 30, 1.5, [{"epoch": 1, "lr": np.float64(0.1)}]),
        {"seed": 0, "model": {"name": "resnet18"}, "stages": [32, 64]},
    )
    return path, model, optimizer


def test_truncated_checkpoint_is_corrupt_and_quarantine_moves_it(tmp_path: Path) -> None:
    path, model, optimizer = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a kill during a copy, a full disk
    for load in (lambda: ckpt.load_checkpoint(path, model, optimizer), lambda: ckpt.checkpoint_config(path)):
        with pytest.raises(CorruptCheckpoint, match=r"unreadable checkpoint \(truncated or (not a torch file|damaged)"):
            load()
    moved = ckpt.quarantine(path)
    assert re.fullmatch(r"checkpoint\.pt\.corrupt-\d{8}T\d{6}Z", moved.name), moved.name
    assert moved.parent == tmp_path and not path.exists()
    assert moved.read_bytes() == data[: len(data) // 2]
    assert ckpt.checkpoint_config(path) is None  # no checkpoint now: the run starts over
    path.write_bytes(b"again")
    second = ckpt.quarantine(path)  # a second one in the same second keeps the first
    assert second != moved and moved.exists() and second.exists()


def test_files_that_are_not_checkpoints_are_corrupt(tmp_path: Path) -> None:
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(CorruptCheckpoint, match="it holds a Tensor, not a checkpoint dict"):
        ckpt.read_checkpoint(tensor_file)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CorruptCheckpoint, match="no model, optimizer, .* in it"):
        ckpt.checkpoint_config(foreign)
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CorruptCheckpoint, match="not a torch zip file"):
        ckpt.read_checkpoint(text)


def test_missing_checkpoint_has_no_config(tmp_path: Path) -> None:
    assert ckpt.checkpoint_config(tmp_path / ckpt.CHECKPOINT_FILE) is None


def _seed_and_draw() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # a cached Gaussian in both Python's and NumPy's state
    np.random.standard_normal()


def test_round_trip_restores_every_rng_and_state_exactly(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer()
    _seed_and_draw()
    saved_states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    path = ckpt.save_checkpoint(
        tmp_path,
        model,
        optimizer,
        Progress(3, 30, 1.5, [{"epoch": 1, "lr": np.float64(0.1)}]),
        {"seed": 0, "model": {"name": "resnet18"}, "stages": [32, 64]},
    )
    expected_draws = (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(5),
        np.random.standard_normal(),
        torch.rand(5),
    )

    state = torch.load(path, weights_only=True)  # the format itself needs nothing but weights-only loading
    assert state["config"] == {"seed": 0, "model": {"name": "resnet18"}, "stages": [32, 64]}
    assert type(state["metrics"][0]["lr"]) is float

    random.seed(99)  # the process moved on (or is a new one)
    np.random.seed(99)
    torch.manual_seed(99)
    fresh_model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    fresh_optimizer = torch.optim.SGD(fresh_model.parameters(), lr=0.1, momentum=0.9)
    progress = ckpt.load_checkpoint(path, fresh_model, fresh_optimizer)

    assert random.getstate() == saved_states[0]
    numpy_now, numpy_saved = np.random.get_state(), saved_states[1]
    assert numpy_now[0] == numpy_saved[0] and np.array_equal(numpy_now[1], numpy_saved[1])
    assert numpy_now[1].dtype == numpy_saved[1].dtype and numpy_now[2:] == numpy_saved[2:]
    assert torch.equal(torch.get_rng_state(), saved_states[2])
    draws = (random.random(), random.gauss(0, 1), np.random.rand(5), np.random.standard_normal(), torch.rand(5))
    assert draws[0] == expected_draws[0] and draws[1] == expected_draws[1]
    assert np.array_equal(draws[2], expected_draws[2]) and draws[3] == expected_draws[3]
    assert torch.equal(draws[4], expected_draws[4])

    assert progress == Progress(3, 30, 1.5, [{"epoch": 1, "lr": 0.1}])
    for key, value in model.state_dict().items():
        assert torch.equal(fresh_model.state_dict()[key], value), key
    momentum = [s["momentum_buffer"] for s in optimizer.state_dict()["state"].values()]
    restored = [s["momentum_buffer"] for s in fresh_optimizer.state_dict()["state"].values()]
    assert len(momentum) == 6 and all(torch.equal(a, b) for a, b in zip(momentum, restored))


# -- model constructors only from the registry ------------------------------------------------------------

CONF_MODELS = sorted((REPO / "conf" / "model").glob("*.yaml"))


@pytest.mark.parametrize("path", CONF_MODELS, ids=[p.stem for p in CONF_MODELS])
def test_every_model_option_passes_the_registry_checks(path: Path) -> None:
    from omegaconf import OmegaConf

    from runner.models import MODELS, constructor_path, model_problems

    option = OmegaConf.load(path)
    assert option.name == path.stem and option.name in MODELS
    assert option._target_ == constructor_path(option.name)
    assert model_problems(option) == []


def test_a_foreign_target_is_refused_and_never_called(tmp_path: Path) -> None:
    from runner.models import build_model, model_problems

    target = tmp_path / "truncated-by-open"
    config = {"name": "resnet18", "_target_": "io.open", "file": str(target), "mode": "w"}
    with pytest.raises(ValueError) as caught:
        build_model(config)
    assert str(caught.value) == (
        "model._target_='io.open' is not the constructor of model.name='resnet18' (runner.models.cifar_resnet18)"
    )
    assert model_problems(config)[1:] == [
        "model.file is not an argument of runner.models.cifar_resnet18 (valid: num_classes, width, in_channels)",
        "model.mode is not an argument of runner.models.cifar_resnet18 (valid: num_classes, width, in_channels)",
    ]
    nested = {"name": "resnet18", "width": {"_target_": "io.open", "file": str(target), "mode": "w"}}
    with pytest.raises(Exception):  # handed over as a dict, not instantiated: the constructor rejects it
        build_model(nested)
    assert not target.exists()


@pytest.mark.parametrize(
    "config, message",
    [
        (
            {"name": "foo", "_target_": "runner.models.cifar_resnet18"},
            "model.name='foo' must be one of resnet18, wrn28_10, resnet50, vit_tiny, vit_small",
        ),
        ({"_target_": "runner.models.cifar_resnet18"}, "model.name=None must be one of resnet18, "),
        (
            {"name": "resnet18", "_target_": "runner.models.vit"},
            "model._target_='runner.models.vit' is not the constructor of model.name='resnet18' "
            "(runner.models.cifar_resnet18)",
        ),
        (
            {"name": "wrn28_10", "_target_": "runner.models.wide_resnet", "_partial_": True},
            "model._partial_ is not an argument of runner.models.wide_resnet",
        ),
    ],
)
def test_names_and_targets_outside_the_registry_are_refused(config: dict, message: str) -> None:
    from runner.models import build_model, model_problems

    with pytest.raises(ValueError, match=re.escape(message)):
        build_model(config)
    assert model_problems(config)[0].startswith(message)
    assert "\n" not in model_problems(config)[0]


def test_registered_models_build_with_or_without_a_target() -> None:
    from runner.models import build_model
    from runner.models.resnet_cifar import CifarResNet

    for config in (
        {"name": "resnet18", "_target_": "runner.models.cifar_resnet18", "width": 4},
        {"name": "resnet18", "_target_": "runner.models.resnet_cifar.cifar_resnet18", "width": 4},
        {"name": "resnet18", "family": "cnn", "width": 4},
    ):
        model = build_model(config)
        assert isinstance(model, CifarResNet) and model.eval()(torch.zeros(1, 3, 8, 8)).shape == (1, 10)


# -- python -m sharpness on a crafted run folder ----------------------------------------------------------


def _crafted_run(folder: Path, target: Path, *, in_result: bool) -> Path:
    """A completed run folder whose model config names io.open with arguments that would create `target`."""
    from omegaconf import OmegaConf

    from runner.models import build_model

    good = {
        "name": "resnet18",
        "family": "cnn",
        "_target_": "runner.models.cifar_resnet18",
        "num_classes": 10,
        "in_channels": 3,
        "width": 2,
    }
    crafted = {"name": "resnet18", "family": "cnn", "_target_": "io.open", "file": str(target), "mode": "w"}
    config = {
        "seed": 0,
        "model": good if in_result else crafted,
        "dataset": {"name": "synthetic", "num_classes": 10, "image_size": 8, "channels": 3},
    }
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
    torch.save(build_model(good).state_dict(), folder / "model.pt")
    record = {
        "schema_version": 2,
        "status": "completed",
        "seed": 0,
        "sharpness": {},
        "config": {**config, "model": crafted if in_result else good},
    }
    (folder / "result.json").write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize("in_result", [False, True], ids=["config.yaml", "result.json"])
def test_sharpness_cli_refuses_a_foreign_model_target(tmp_path: Path, in_result: bool) -> None:
    target = tmp_path / "created-by-io-open"
    folder = _crafted_run(
        tmp_path / "results" / "exp" / "synthetic-resnet18" / "sam-constant" / "seed=0", target, in_result=in_result
    )
    before = (folder / "result.json").read_text()
    result = subprocess.run(
        [sys.executable, "-m", "sharpness", str(folder), "sharpness=worst_linf", "device=cpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert not target.exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    source = folder.resolve() / ("result.json" if in_result else "config.yaml")
    assert errors == [
        f"error: {source}: model._target_='io.open' is not the constructor of model.name='resnet18' "
        f"(runner.models.cifar_resnet18); refused, nothing was built from it"
    ], result.stderr
    assert (folder / "result.json").read_text() == before
