"""The conf/sharpness/ options, the settings checks, and `measure_all` on a dataset config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import runner  # noqa: F401  (registers the config resolvers)
import runner.remeasure.examples
import runner.remeasure.measures
from runner.remeasure import measure_all
from sharpness.settings import config_problems, normalize, normalize_all

CONF = Path(__file__).resolve().parent.parent / "conf"
OPTIONS = sorted(p.stem for p in (CONF / "sharpness").glob("*.yaml"))


def compose_main(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def test_the_required_options_exist():
    assert set(OPTIONS) >= {
        "worst_linf",
        "worst_l2",
        "worst_linf_adaptive",
        "worst_l2_adaptive",
        "average_l2",
        "average_linf",
        "hessian_eig",
        "hessian_trace",
        "none",
    }


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_composes_to_one_valid_measure_named_after_it(option):
    measures = normalize_all(compose_main([f"sharpness={option}"]).sharpness)
    assert list(measures) == ([] if option == "none" else [option])


def test_the_default_is_the_papers_measure():
    ((name, settings),) = normalize_all(compose_main([]).sharpness).items()
    assert name == "worst_linf"
    assert settings == {
        "kind": "worst_case",
        "ball": "linf",
        "adaptive": False,
        "rho": 0.0002,
        "iterations": 20,
        "restarts": 1,
        "random_start": False,
        "examples": 1024,
        "batch_size": 128,
        "split": "train",
        "augment": False,
        "subset": "authors",
        "normalization": "authors",
        "seed": 0,
        "verbose": False,
    }


def test_options_merge_and_override_one_key():
    cfg = compose_main(["sharpness=[worst_linf,hessian_trace,worst_l2]", "sharpness.worst_linf.rho=0.001"])
    measures = normalize_all(cfg.sharpness)
    assert list(measures) == ["worst_linf", "hessian_trace", "worst_l2"]
    assert measures["worst_linf"]["rho"] == 0.001


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"kind": "worst_case", "rho": -0.1}, "rho=-0.1: must be a finite number >= 0"),
        ({"kind": "worst_case", "rho": float("nan")}, "rho=nan"),
        ({"kind": "sharpest"}, "kind='sharpest': must be one of"),
        ({"rho": 0.1}, "kind=None"),
        ({"kind": "worst_case", "rh0": 0.1}, "unknown key(s) ['rh0']"),
        ({"kind": "worst_case", "ball": "l1"}, "ball='l1'"),
        ({"kind": "worst_case", "batch_size": 256, "examples": 128}, "batch_size=256: m = batch_size must not exceed"),
        ({"kind": "worst_case", "examples": 1000}, "examples=1000: must be a multiple of batch_size=128"),
        ({"kind": "worst_case", "restarts": 3}, "restarts=3: restarts > 1 repeat"),
        ({"kind": "worst_case", "iterations": 0}, "iterations=0: must be an integer >= 1"),
        ({"kind": "worst_case", "iterations": 2.5}, "iterations=2.5"),
        ({"kind": "worst_case", "adaptive": "yes"}, "adaptive='yes': must be true or false"),
        ({"kind": "worst_case", "split": "val"}, "split='val'"),
        ({"kind": "worst_case", "split": "test", "augment": True}, "augment=True: augmentation applies"),
        ({"kind": "hessian_trace", "samples": 1}, "samples=1: must be an integer >= 2"),
        ({"kind": "hessian_eig", "tolerance": 0}, "tolerance=0"),
        ({"kind": "hessian_eig", "rho": 0.1}, "unknown key(s) ['rho']"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError) as caught:
        normalize("m", settings)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_hessian_batches_only_bound_memory():
    assert normalize("h", {"kind": "hessian_eig", "examples": 100, "batch_size": 64})["examples"] == 100
    assert normalize("h", {"kind": "hessian_trace", "examples": 64, "batch_size": 128})["batch_size"] == 128


def test_config_problems_check_the_dataset_size():
    dataset = {"train_size": 256, "test_size": 128}
    measures = {
        "w": {"kind": "worst_case", "examples": 512},
        "t": {"kind": "worst_case", "split": "test", "examples": 128},
        "bad": {"kind": "x"},
    }
    found = config_problems(measures, dataset)
    assert len(found) == 2
    assert "sharpness.w.examples=512: the train split has only 256" in found[0]
    assert "sharpness.bad.kind='x'" in found[1]


# -- measure_all on the synthetic dataset ------------------------------------------------------------


@pytest.fixture
def synthetic(tmp_path):
    cfg = OmegaConf.load(CONF / "dataset" / "synthetic.yaml")
    cfg.root = str(tmp_path)
    return cfg


def tiny_classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 4),
    ).eval()


SMALL = {
    "worst": {"kind": "worst_case", "rho": 0.01, "iterations": 3, "examples": 64, "batch_size": 32, "subset": "random"},
    "trace": {"kind": "hessian_trace", "samples": 2, "examples": 64, "batch_size": 32},
    "noise": {
        "kind": "average_case",
        "rho": 0.01,
        "samples": 2,
        "examples": 64,
        "batch_size": 32,
        "augment": True,
        "subset": "first",
    },
}


def test_measure_all_returns_the_records_and_is_deterministic(synthetic, monkeypatch):
    loads = []
    real_load = runner.remeasure.examples.example_batches

    def counting(*args, **kwargs):
        loads.append(kwargs["name"])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(runner.remeasure.measures, "example_batches", counting)
    model = tiny_classifier()
    first = measure_all(model, synthetic, SMALL, device="cpu", seed=0)
    assert list(first) == ["worst", "trace", "noise"]
    assert loads == ["worst", "trace", "noise"]  # the Hessian uses all examples; augmentation differs
    assert first["worst"]["value"] > 0 and first["worst"]["examples"] == 64 and first["worst"]["batches"] == 2
    assert first["trace"]["std_error"] is not None
    again = measure_all(model, synthetic, SMALL, device="cpu", seed=0)
    assert all(first[name]["value"] == again[name]["value"] for name in first)
    other_run = measure_all(model, synthetic, {"worst": SMALL["worst"]}, device="cpu", seed=1)
    assert other_run["worst"]["value"] != first["worst"]["value"]  # another run seed: other examples


def test_measures_with_the_same_examples_share_the_batches(synthetic, monkeypatch):
    import runner.remeasure.measures as api

    calls = []
    real_load = api.example_batches
    monkeypatch.setattr(api, "example_batches", lambda *a, **k: calls.append(1) or real_load(*a, **k))
    both = {"a": SMALL["worst"], "b": {**SMALL["worst"], "ball": "l2", "rho": 0.1}}
    measure_all(tiny_classifier(), synthetic, both, device="cpu", seed=0)
    assert len(calls) == 1


def test_too_few_examples_fail_before_any_measure(synthetic, monkeypatch):
    import runner.remeasure.measures as api

    monkeypatch.setattr(api, "measure", lambda *a, **k: pytest.fail("measured despite bad input"))
    measures = {"ok": SMALL["worst"], "big": {**SMALL["worst"], "examples": 512}}
    with pytest.raises(ValueError, match=r"sharpness.big: needs 512 examples .* the train split has 256"):
        measure_all(tiny_classifier(), synthetic, measures, device="cpu", seed=0)
    with pytest.raises(ValueError, match="rho=-1: must be"):
        measure_all(tiny_classifier(), synthetic, {"w": {**SMALL["worst"], "rho": -1}}, device="cpu", seed=0)


def test_no_measures_is_an_empty_record(synthetic):
    assert measure_all(tiny_classifier(), synthetic, {}, device="cpu", seed=0) == {}
    assert measure_all(tiny_classifier(), synthetic, None, device="cpu", seed=0) == {}


def test_batches_are_normalised_like_training(synthetic):
    from runner.data import load_tensors

    settings = normalize("w", {**SMALL["worst"], "subset": "first"})
    (x, y), _ = runner.remeasure.examples.example_batches(synthetic, settings, name="w", device="cpu", seed=0)
    images, labels = load_tensors(synthetic, "train")
    mean = torch.tensor(list(synthetic.mean)).view(1, 3, 1, 1)
    std = torch.tensor(list(synthetic.std)).view(1, 3, 1, 1)
    assert torch.equal(y, labels[:32])
    assert torch.allclose(x, (images[:32].float() / 255 - mean) / std)


def test_the_authors_normalisation_replaces_the_training_statistics_only_where_their_code_had_its_own():
    from runner.data import AUTHORS_MEASURE_STATS, measure_dataset_cfg

    cifar10 = dict(compose_main(["dataset=cifar10"]).dataset)
    authors = measure_dataset_cfg(cifar10, "authors")
    assert authors["std"] == [0.2023, 0.1994, 0.2010] and list(cifar10["std"]) != authors["std"]
    assert measure_dataset_cfg(cifar10, "training")["std"] == cifar10["std"]
    digits = dict(compose_main(["dataset=digits"]).dataset)
    assert "digits" not in AUTHORS_MEASURE_STATS
    assert measure_dataset_cfg(digits, "authors")["std"] == digits["std"]
    with pytest.raises(ValueError, match="normalization='train'"):
        normalize("w", {**SMALL["worst"], "normalization": "train"})


def test_the_first_examples_do_not_depend_on_the_run_seed(synthetic):
    settings = normalize("w", {**SMALL["worst"], "subset": "first"})
    one = runner.remeasure.examples.example_batches(synthetic, settings, name="w", device="cpu", seed=0)
    other = runner.remeasure.examples.example_batches(synthetic, settings, name="w", device="cpu", seed=7)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, other))


def test_the_authors_subset_is_their_first_examples_where_their_code_loads_the_dataset():
    from runner.data import measure_subset

    first = {name: measure_subset({"name": name}, "authors") for name in ("cifar10", "cifar100")}
    assert first == {"cifar10": "first", "cifar100": "first"}
    # stored class by class (or not in the authors' code): a seeded sample, not 3 of 200 classes
    assert {measure_subset({"name": n}, "authors") for n in ("tiny_imagenet", "imagenet", "digits")} == {"random"}
    assert measure_subset({"name": "tiny_imagenet"}, "first") == "first"
    with pytest.raises(ValueError, match="subset='all' must be one of authors, first, random"):
        measure_subset({"name": "cifar10"}, "all")
