"""Run identity: a cell's folder is its grid axes plus the values that differ from the preset."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import runner  # noqa: F401  (registers the config resolvers)
from runner.sweep import identity

PRESETS = sorted(
    str(p.relative_to(REPO / "conf" / "experiment").with_suffix(""))
    for p in (REPO / "conf" / "experiment" / "paper").glob("*.yaml")
    if not p.name.startswith("_")
)
GRID = [(o, s) for o in ("sgd", "sam", "gsam") for s in ("constant", "batch", "cosine")]


@pytest.fixture(scope="module")
def composer():
    cache: dict[tuple[str, ...], DictConfig] = {}
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):

        def compose_cell(overrides: list[str]) -> DictConfig:
            key = tuple(overrides)
            if key not in cache:  # a preset cell is its own reference: compose it once
                cache[key] = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
            return cache[key]

        yield compose_cell


def variant_of(composer, overrides: list[str]) -> identity.Identity:
    cfg = composer(overrides)
    return identity.cell_identity(cfg, overrides, composer, dict(cfg.hydra.runtime.choices))


def test_every_paper_preset_cell_keeps_todays_folder(composer):
    assert len(PRESETS) >= 8
    for preset in [*PRESETS, "demo"]:
        for optimizer, schedule in GRID:
            overrides = [f"experiment={preset}", f"optimizer={optimizer}", f"schedule={schedule}", "seed=2"]
            found = variant_of(composer, overrides)
            assert found == identity.Identity(), (overrides, found)


def test_equivalent_spellings_name_one_folder(composer):
    by_alias = variant_of(composer, ["optimizer=sam", "sam.rho=0.1"])
    direct = variant_of(composer, ["optimizer=sam", "optimizer.rho=0.1"])
    assert by_alias == direct == identity.Identity("rho=0.1", {"optimizer.rho": 0.1})
    assert variant_of(composer, ["optimizer=sam", "optimizer.lr=1"]) == variant_of(
        composer, ["optimizer=sam", "optimizer.lr=1.0"]
    )


def test_keys_a_cell_does_not_use_leave_its_folder_alone(composer):
    # SGD has no rho; the increasing-batch schedule ignores train.batch_size; sharpness and device are neutral.
    assert variant_of(composer, ["optimizer=sgd", "sam.rho=0.1"]).name == ""
    assert variant_of(composer, ["schedule=batch", "train.batch_size=64"]).name == ""
    assert variant_of(composer, ["sharpness=none", "device=cpu", "progress=false"]).name == ""
    assert variant_of(composer, ["schedule=constant", "train.batch_size=64"]).name == "batch_size=64"
    assert (
        variant_of(composer, ["schedule=batch", "train.increasing_batch_sizes=[8,16]", "train.epochs=10"]).name
        == "epochs=10,increasing_batch_sizes=8-16"
    )


def test_group_choices_and_hand_written_stages_are_named(composer):
    assert variant_of(composer, ["optimizer/base=adamw"]).name == "base=adamw"
    found = variant_of(
        composer, ["schedule=batch", "schedule.stages=[{batch_size:16,epochs:150},{batch_size:32,epochs:50}]"]
    )
    assert found.name == "stages=16x150-32x50"


def test_long_variants_stay_bounded_and_distinct(composer):
    base = [
        "optimizer=gsam",
        "sam.rho=0.123456789",
        "sam.alpha=0.0123456789",
        "optimizer.lr=0.0987654321",
        "train.epochs=123",
        "model.width=17",
        "train.label_smoothing=0.05",
        "dataset.test_fraction=0.3",
    ]
    first = variant_of(composer, base)
    second = variant_of(composer, [*base[:-1], "dataset.test_fraction=0.25"])
    assert len(first.name) <= identity.MAX_NAME and len(second.name) <= identity.MAX_NAME
    assert first.name != second.name and "+" in first.name
    assert first.name.startswith("alpha=0.0123456789")


def test_names_are_safe_folder_segments():
    name = identity.variant_name({"optimizer.base._target_": "torch.optim/Adam W", "train.x": [1, 2]})
    assert "/" not in name and " " not in name
    assert name == "_target_=torch.optim_Adam_W,x=1-2"


def test_differences_compare_numbers_by_value():
    assert identity.differences({"a": 1, "b": [1, 2]}, {"a": 1.0, "b": [1, 2]}) == {}
    assert identity.differences({"a": True}, {"a": 1}) == {"a": True}
    assert identity.differences({"a": 1}, {}) == {"a": 1}


def test_a_run_records_its_variant(tmp_path):
    import json

    from conftest import QUICK, launch

    launch([*QUICK, "optimizer=sam", "sam.rho=0.1", f"results_root={tmp_path}"], check=True)
    (path,) = list(tmp_path.rglob("result.json"))
    record = json.loads(path.read_text())
    assert record["schema_version"] == 2
    assert "rho=0.1" in record["variant"] and record["variant_values"]["optimizer.rho"] == 0.1
    assert path.parent.parent.name == record["variant"]
    assert path.parent.parent.parent == Path(tmp_path) / "adhoc" / "synthetic-resnet18" / "sam-constant"


def test_a_cpu_run_recorded_with_precision_auto_is_the_same_cell_as_fp32():
    """`auto` meant fp32 on the CPU, so results made before fp32 became the default still resume."""
    from runner.sweep.identity import computed_values, differences

    base = {"device": "cpu", "precision": "fp32", "train": {"epochs": 3}}
    old = {**base, "precision": "auto"}
    assert differences(computed_values(base), computed_values(old)) == {}
    # On a device that may be CUDA, auto may have been bf16: a different computation.
    assert differences(computed_values({**base, "device": "auto"}), computed_values({**old, "device": "auto"}))
