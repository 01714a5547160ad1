"""Every option of every config group and every experiment preset composes and instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from runner.models import build_model
from runner.sweep.validate import problems
from runner.training.build import build_optimizer
from runner.training.schedule import Schedule

CONF = Path(__file__).resolve().parent.parent / "conf"


def options(group: str) -> list[str]:
    folder = CONF / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def compose_with(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def test_every_group_has_its_options():
    assert options("dataset") == ["cifar10", "cifar100", "digits", "imagenet", "synthetic", "tiny_imagenet"]
    assert options("model") == ["resnet18", "resnet50", "vit_small", "vit_tiny", "wrn28_10"]
    assert set(options("optimizer")) >= {"sgd", "sam", "gsam", "base/sgd", "base/adamw"}
    assert options("schedule") == ["batch", "constant", "cosine", "linear"]
    assert set(options("experiment")) == {
        "demo",
        "paper/cifar10_resnet18",
        "paper/cifar10_wrn28_10",
        "paper/cifar100_resnet18",
        "paper/cifar100_wrn28_10",
        "paper/tiny_imagenet_resnet18",
        "paper/tiny_imagenet_wrn28_10",
        "paper/imagenet_resnet50",
        "paper/cifar100_vit_tiny",
        "grid",
        "digits_study",
    }


@pytest.mark.parametrize("dataset", options("dataset"))
def test_dataset_options_compose(dataset):
    cfg = compose_with([f"dataset={dataset}"])
    assert cfg.dataset.name == dataset
    assert cfg.model.num_classes == cfg.dataset.num_classes  # by interpolation, never by copy
    assert f"/{dataset}-resnet18/" in cfg.run_dir


@pytest.mark.parametrize("model", options("model"))
def test_model_options_instantiate(model):
    dataset = "imagenet" if model == "resnet50" else "cifar10"
    cfg = compose_with([f"model={model}", f"dataset={dataset}"])
    net = build_model(cfg.model)
    size = cfg.dataset.image_size if model != "resnet50" else 64
    out = net.eval()(torch.zeros(1, cfg.dataset.channels, size, size))
    assert out.shape == (1, cfg.dataset.num_classes)


@pytest.mark.parametrize("optimizer", ["sgd", "sam", "gsam"])
@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_optimizer_options_instantiate(optimizer, base):
    import sam_opt

    cfg = compose_with([f"optimizer={optimizer}", f"optimizer/base={base}", "model.width=4"])
    model = build_model(cfg.model)
    opt = build_optimizer(cfg.optimizer, model)
    assert isinstance(opt, sam_opt.GSAM if optimizer == "gsam" else sam_opt.SAM)
    group = opt.param_groups[0]
    assert group["lr"] == cfg.optimizer.lr
    assert group["rho"] == (0.0 if optimizer == "sgd" else cfg.sam.rho)
    expected_base = torch.optim.AdamW if base == "adamw" else torch.optim.SGD
    assert isinstance(opt.base_optimizer, expected_base)


@pytest.mark.parametrize("exact", [None, True])
def test_exact_restore_reaches_the_optimizer_from_the_command_line(exact):
    overrides = ["optimizer=gsam", "model.width=4"] + ([f"+optimizer.exact_restore={exact}"] if exact else [])
    cfg = compose_with(overrides)
    opt = build_optimizer(cfg.optimizer, build_model(cfg.model))
    assert opt.exact_restore is bool(exact)


@pytest.mark.parametrize("schedule", options("schedule"))
def test_schedule_options_build(schedule):
    cfg = compose_with([f"schedule={schedule}"])
    built = Schedule.from_config(cfg.schedule, 50000)
    assert built.epochs == cfg.train.epochs
    sizes = [built.batch_size_at(e) for e in range(built.epochs)]
    if schedule == "batch":
        assert sizes[0] == 16 and sizes[-1] == 256 and sorted(sizes) == sizes
    else:
        assert set(sizes) == {128}
    first, last = built.lr_factor(0), built.lr_factor(built.total_steps - 1)
    assert first == 1.0
    assert last == pytest.approx({"cosine": 0.01, "linear": 0.01}.get(schedule, 1.0))


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_presets_compose_and_validate(experiment):
    cfg = compose_with([f"experiment={experiment}"])
    assert cfg.experiment_name == experiment
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        full = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = full.hydra.sweeper.params
    assert params.optimizer == "sgd,sam,gsam" and params.schedule == "constant,batch,cosine"
    # Every cell of the grid composes to a config without problems (data availability aside).
    for optimizer in ("sgd", "sam", "gsam"):
        for schedule in ("constant", "batch", "cosine"):
            cell = compose_with([f"experiment={experiment}", f"optimizer={optimizer}", f"schedule={schedule}"])
            assert problems(cell) == [], (optimizer, schedule)


def test_paper_hyperparameters_match_the_protocol():
    cfg = compose_with(["experiment=paper/cifar10_resnet18", "schedule=batch", "optimizer=gsam"])
    assert [dict(s) for s in cfg.schedule.stages] == [{"batch_size": b, "epochs": 40} for b in (16, 32, 64, 128, 256)]
    assert cfg.optimizer.lr == 0.1 and cfg.optimizer.rho == 0.05 and cfg.optimizer.alpha == 0.02
    assert cfg.optimizer.base.momentum == 0.0 and cfg.optimizer.base.weight_decay == 0.0
    cosine = compose_with(["experiment=paper/cifar10_resnet18", "schedule=cosine"])
    assert cosine.schedule.min_lr_ratio == 0.01 and not cosine.schedule.rho_follows_lr
    vit = compose_with(["experiment=paper/cifar100_vit_tiny", "schedule=batch", "optimizer=sam"])
    assert [s.batch_size for s in vit.schedule.stages] == [64, 128, 256, 512]
    assert vit.optimizer.base._target_ == "torch.optim.AdamW" and vit.optimizer.rho == 0.6


def test_sweeping_optimizers_keeps_sgd_unperturbed():
    cfg = compose_with(["optimizer=sgd", "sam.rho=0.3"])
    assert cfg.optimizer.rho == 0.0
    assert compose_with(["optimizer=sam", "sam.rho=0.3"]).optimizer.rho == 0.3
    assert compose_with(["optimizer=sam", "optimizer.rho=0.1"]).optimizer.rho == 0.1


def test_increasing_batch_follows_train_epochs():
    cfg = compose_with(["schedule=batch", "train.epochs=12"])
    assert [(s.batch_size, s.epochs) for s in cfg.schedule.stages] == [(16, 2), (32, 2), (64, 2), (128, 3), (256, 3)]


def test_resolved_config_round_trips_through_yaml():
    cfg = compose_with(["experiment=demo", "schedule=batch"])
    text = OmegaConf.to_yaml(cfg, resolve=True)
    assert OmegaConf.to_container(OmegaConf.create(text)) == OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.parametrize(("recipe", "mirrors"), [("crop_flip", True), ("crop", False)])
def test_the_training_loader_mirrors_only_when_the_recipe_does(recipe, mirrors):
    from runner.training.pipeline import build_pipelines

    cfg = compose_with(["experiment=demo", f"dataset.augment={recipe}"])
    assert problems(cfg) == []
    train = build_pipelines(cfg, torch.device("cpu")).train
    assert train.augment and train.pad == 1 and train.flip is mirrors
