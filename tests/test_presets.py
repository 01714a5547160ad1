"""The paper presets: one grid they all extend, and docs a clone of the repository actually has.

The presets are where a user meets the paper, so they must compose, sweep the
paper's nine cells, and point at documentation inside the repository (a clone
has no sibling folders of the developers' machine).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

import runner  # noqa: F401  (registers the config resolvers)
from runner.training.schedule import Schedule

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PAPER = CONF / "experiment" / "paper"
PRESETS = sorted(p.stem for p in PAPER.glob("*.yaml"))
OPTIMIZERS = ("sgd", "sam", "gsam")
SCHEDULES = ("constant", "batch", "cosine")  # the paper's column blocks, in order
# Written in two halves so this file does not contain what it looks for.
OUTSIDE_REFERENCES = (".." + "/shared", "shared" + "/paper")


def compose_full(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def swept_cells(params) -> list[tuple[str, str]]:
    """The (optimizer, schedule) jobs Hydra's basic sweeper makes of `hydra.sweeper.params`."""
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]
    return [tuple(dict(item.split("=", 1) for item in job)[key] for key in ("optimizer", "schedule")) for job in jobs]


@cache
def repository_files() -> tuple[Path, ...]:
    """Tracked files plus new ones git does not ignore: what a commit would give a clone."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"not a git checkout with git available ({error})")
    return tuple(REPO / name for name in sorted(set(listed.split("\0"))) if name and (REPO / name).is_file())


def test_there_are_paper_presets():
    assert len(PRESETS) >= 8, PRESETS


@pytest.mark.parametrize("preset", PRESETS)
def test_paper_preset_composes_and_sweeps_the_nine_cells(preset):
    cfg = compose_full([f"experiment=paper/{preset}"])
    params = cfg.hydra.sweeper.params
    assert (params.optimizer, params.schedule) == (",".join(OPTIMIZERS), ",".join(SCHEDULES))
    cells = swept_cells(params)
    assert sorted(cells) == sorted((o, s) for o in OPTIMIZERS for s in SCHEDULES) and len(cells) == 9
    # The preset's own values come after the grid's, so they win.
    assert cfg.experiment_name == f"paper/{preset}"
    dataset, model = cfg.dataset.name, cfg.model.name
    assert preset.startswith(f"{dataset}_") and preset.endswith(f"_{model}")


@pytest.mark.parametrize("preset", PRESETS)
def test_paper_presets_take_the_grid_from_the_base_alone(preset):
    text = (PAPER / f"{preset}.yaml").read_text(encoding="utf-8")
    assert "sweeper" not in text, f"{preset}.yaml repeats the grid; it comes from conf/experiment/grid.yaml"
    assert "- /experiment/grid" in text


def test_the_grid_alone_sweeps_any_dataset_and_model():
    cfg = compose_full(["experiment=grid", "dataset=synthetic", "model=vit_tiny"])
    assert cfg.experiment_name == "grid"
    assert (cfg.dataset.name, cfg.model.name) == ("synthetic", "vit_tiny")
    assert len(swept_cells(cfg.hydra.sweeper.params)) == 9


def test_a_preset_override_on_the_command_line_still_wins_over_the_grid():
    cfg = compose_full(["experiment=paper/cifar10_resnet18", "hydra.sweeper.params.schedule=linear"])
    assert swept_cells(cfg.hydra.sweeper.params) == [(o, "linear") for o in OPTIMIZERS]


def test_no_file_points_outside_the_repository():
    offenders = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary or unreadable: not documentation
        offenders += [f"{path.relative_to(REPO)}: {needle}" for needle in OUTSIDE_REFERENCES if needle in text]
    assert offenders == []


DOC_PATH = re.compile(r"docs/[\w./-]*?\.md\b")


def test_every_docs_page_named_in_conf_and_python_exists():
    sources = [p for p in repository_files() if p.suffix == ".py" or (p.suffix == ".yaml" and CONF in p.parents)]
    named = {(doc, str(p.relative_to(REPO))) for p in sources for doc in DOC_PATH.findall(p.read_text("utf-8"))}
    assert named, "expected conf/ and the code to cite pages under docs/"
    missing = sorted(f"{source} names {doc}" for doc, source in named if not (REPO / doc).is_file())
    assert missing == []


# ------------------------------------------------------------------ bench_train reads conf/


@pytest.fixture(scope="module")
def bench_train():
    spec = importlib.util.spec_from_file_location("bench_train_under_test", REPO / "bench" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_bench_projects_the_cells_the_runner_trains(bench_train):
    cells = bench_train.table_cells("cifar10_resnet18", 200)
    assert list(cells) == [(o, s) for o in OPTIMIZERS for s in SCHEDULES]
    for (optimizer, schedule), stages in cells.items():
        cfg = compose_full(["experiment=paper/cifar10_resnet18", f"optimizer={optimizer}", f"schedule={schedule}"])
        built = Schedule.from_config(cfg.schedule, int(cfg.dataset.train_size))
        assert stages == [(s.batch_size, s.epochs) for s in built.stages]
    assert bench_train.PaperTable("tiny_imagenet_resnet18", "tiny_resnet18").train_size == 100_000


def test_bench_optimizers_use_the_presets_hyperparameters(bench_train):
    import torch

    for optimizer in OPTIMIZERS:
        cfg = compose_full(["experiment=paper/cifar10_resnet18", f"optimizer={optimizer}"])
        research = bench_train.research_optimizer(cfg.optimizer, torch.nn.Linear(2, 2))
        group = research.param_groups[0]
        assert group["lr"] == cfg.optimizer.lr
        if optimizer != "sgd":
            assert group["rho"] == cfg.sam.rho
            assert group["alpha"] == (cfg.sam.alpha if optimizer == "gsam" else 0.0)


def test_bench_restates_no_value_that_conf_holds():
    source = (REPO / "bench" / "bench_train.py").read_text(encoding="utf-8")
    restated = []
    for path in (CONF / "dataset").glob("*.yaml"):
        dataset = OmegaConf.load(path)
        for value in [*dataset.get("mean", []), *dataset.get("std", [])]:
            if len(str(value)) >= 5 and str(value) in source:  # 0.4914, not 0.5
                restated.append(f"{path.stem} statistic {value}")
        size = dataset.get("train_size")
        if size and size >= 10_000 and (f"{size:_}" in source or f"{size}" in source):
            restated.append(f"{path.stem} training set size {size}")
    sizes = OmegaConf.load(CONF / "config.yaml").train.increasing_batch_sizes
    if ", ".join(map(str, sizes)) in source:
        restated.append(f"increasing batch sizes {list(sizes)}")
    assert restated == []
