"""One registry per concept, and the configs, the checks and the code all agree with it.

Sharpness kinds (`sharpness.kinds.KINDS`), datasets (`runner.data.DATASETS`), augmentation
recipes and crops (`runner.data.AUGMENTATIONS`, `runner.data.CROPS`), loaders
(`runner.data.LOADERS`) and lr policies (`runner.training.schedule.LR_POLICIES`): each test reads the
registry and the files under conf/ that name its entries, so a new entry that a config lacks,
or a config value no registry knows, fails here rather than at launch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

import sharpness
from sharpness.kinds import DATA_DEFAULTS, KINDS, defaults
from sharpness.settings import normalize

CONF = Path(__file__).resolve().parent.parent / "conf"
SHARPNESS_OPTIONS = sorted(p for p in (CONF / "sharpness").glob("*.yaml") if p.stem != "none")


def option_measures(path: Path) -> dict:
    """The measures a conf/sharpness option defines, as plain dicts: {name: settings}."""
    return OmegaConf.to_container(OmegaConf.load(path))


# -- sharpness kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHARPNESS_OPTIONS, ids=lambda p: p.stem)
def test_every_sharpness_option_spells_out_exactly_its_kinds_settings(path):
    ((name, settings),) = option_measures(path).items()
    assert name == path.stem  # the measure's name is the option's name
    assert settings["kind"] in KINDS
    assert list(settings) == list(defaults(settings["kind"]))  # the same keys, in the records' order
    assert normalize(name, settings) == settings  # nothing dropped, nothing added


def test_every_kind_is_offered_by_some_option():
    offered = {option_measures(path)[path.stem]["kind"] for path in SHARPNESS_OPTIONS}
    assert offered == set(KINDS)


def test_the_package_exports_the_one_registry():
    assert sharpness.KINDS is KINDS
    for kind, entry in KINDS.items():
        assert callable(entry.measure)
        assert not set(entry.settings) & (set(DATA_DEFAULTS) | {"kind"})  # each setting defined once
        assert defaults(kind)["kind"] == kind


def test_an_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"kind='sharpest': must be one of \['worst_case', 'average_case'"):
        defaults("sharpest")


# -- lr policies -------------------------------------------------------------------------------------


def test_every_schedule_option_names_a_known_lr_policy():
    from runner.training.schedule import LR_POLICIES

    named = {OmegaConf.load(path).lr_policy for path in (CONF / "schedule").glob("*.yaml")}
    assert named <= set(LR_POLICIES)
    assert set(LR_POLICIES) == {"constant", "cosine", "linear"}


def test_each_lr_policy_starts_at_the_peak_and_the_decays_end_at_the_floor():
    from runner.training.schedule import LR_POLICIES

    for name, policy in LR_POLICIES.items():
        assert policy(0.0, 0.05) == 1.0
        assert policy(1.0, 0.05) == pytest.approx(1.0 if name == "constant" else 0.05)
        assert policy(0.5, 0.05) == pytest.approx({"constant": 1.0, "cosine": 0.525, "linear": 0.525}[name])


def test_an_unknown_lr_policy_is_refused_not_taken_for_linear():
    from runner.training.schedule import Schedule, Stage

    # Stages, ratios and warm-up are checked by runner.sweep.validate at launch (tests/test_validation.py);
    # the policy name is the one value Schedule itself checks, as it looks it up.
    with pytest.raises(ValueError, match=r"schedule.lr_policy='step' is not one of constant, cosine, linear"):
        Schedule([Stage(10, 1)], 100, lr_policy="step")


# -- datasets, augmentation recipes, crops, loaders ----------------------------------------------------

DATASET_OPTIONS = sorted((CONF / "dataset").glob("*.yaml"))
REPO = CONF.parent


def dataset_option(path: Path) -> dict:
    return OmegaConf.to_container(OmegaConf.load(path))  # unresolved: ${data_dir} stays a string


def test_every_dataset_has_an_option_and_every_option_a_registered_dataset():
    from runner.data import DATASETS

    assert sorted(dataset_option(path)["name"] for path in DATASET_OPTIONS) == sorted(DATASETS)
    assert all(dataset_option(path)["name"] == path.stem for path in DATASET_OPTIONS)


@pytest.mark.parametrize("path", DATASET_OPTIONS, ids=lambda p: p.stem)
def test_every_dataset_option_names_registered_recipes_and_a_loader_that_serves_it(path):
    from runner.data import AUGMENTATIONS, CROPS, LOADERS, loader_problems

    option = dataset_option(path)
    assert option["augment"] in AUGMENTATIONS
    assert option.get("crop", "padded") in CROPS
    assert option["loader"] in LOADERS
    assert loader_problems(option) == []


def test_the_dataset_name_is_compared_nowhere_but_in_the_data_registry():
    """`runner/data/api.py` maps names to readers; everything else reads the dataset's config keys."""
    import ast

    from runner.data import DATASETS

    found = []
    for path in sorted([*(REPO / "runner").rglob("*.py"), *(REPO / "sharpness").rglob("*.py")]):
        if path == REPO / "runner" / "data" / "api.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare):
                constants = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                found += [f"{path.relative_to(REPO)}:{node.lineno}" for c in constants if c in DATASETS]
    assert found == []


def test_the_loaders_are_one_tuple():
    import runner.data
    from runner.data.api import LOADERS

    assert runner.data.LOADERS is LOADERS == ("device", "torchvision")


def test_every_registered_loader_has_a_pipeline_builder_and_no_other():
    from runner.data import LOADERS
    from runner.training.pipeline import BUILDERS

    assert tuple(BUILDERS) == LOADERS


# -- the validation layer reads the same registries ------------------------------------------------------


@pytest.mark.parametrize(
    "key, registry",
    [
        ("dataset.name", "runner.data:DATASETS"),
        ("dataset.augment", "runner.data:AUGMENTATIONS"),
        ("dataset.loader", "runner.data:LOADERS"),
        ("dataset.crop", "runner.data:CROPS"),
        ("schedule.lr_policy", "runner.training.schedule:LR_POLICIES"),
    ],
)
def test_validation_accepts_exactly_the_registered_values(key, registry):
    import importlib

    from runner.sweep.validate import KEYS

    module, name = registry.split(":")
    values = list(getattr(importlib.import_module(module), name))
    assert [value for value in values if KEYS[key].check(value) is not None] == []
    assert KEYS[key].check("not-registered") is not None
