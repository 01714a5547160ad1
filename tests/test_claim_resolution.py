"""Test-error claims a run's test set cannot resolve are shown as such, not counted as failures.

Records are written in the runner's result.json format into a real results tree and
read back through `analysis.load_runs`, as `python -m analysis` reads them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import analysis
from analysis.claim_resolution import UNRESOLVED, evaluated_test_size, resolvable_difference

OPTIMIZERS = ("sgd", "sam", "gsam")
SHARPNESS = {"constant": 1.0, "batch": 0.2, "cosine": 0.6}  # SAM and GSAM at half of SGD's
ERROR_CLAIMS = [
    "+ B test error < constant test error, for each optimizer",
    "+ C test error < constant test error, for each optimizer",
    "SAM and GSAM test error < SGD test error, constant",
    "SAM and GSAM test error < SGD test error, + B",
    "SAM and GSAM test error < SGD test error, + C",
]


def write_grid(root: Path, errors: dict[tuple[str, str], float], test_size: int | None, seeds=(0, 1)) -> Path:
    for seed in seeds:
        for opt in OPTIMIZERS:
            for sched, sharp in SHARPNESS.items():
                run_dir = root / "demo" / "digits-resnet18" / f"{opt}-{sched}" / f"seed={seed}"
                run_dir.mkdir(parents=True)
                record = {
                    "schema_version": 2,
                    "status": "completed",
                    "experiment": "demo",
                    "dataset": "digits",
                    "model": "resnet18",
                    "optimizer": opt,
                    "schedule": sched,
                    "seed": seed,
                    "variant": "",
                    "variant_values": {},
                    "test_error": errors[(opt, sched)] + 0.1 * seed,
                    "sharpness": {"worst_linf": {"value": sharp * (0.5 if opt != "sgd" else 1.0) * (1 + seed)}},
                    "config": {"dataset": {"name": "digits", "test_size": test_size}} if test_size else {},
                }
                (run_dir / "result.json").write_text(json.dumps(record))
    return root


def by_claim(table: analysis.Table) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table.rows}


def test_resolution_is_two_standard_errors_of_a_difference_and_at_least_one_image():
    # 2 % error, 359 images, 2 seeds: 2 * sqrt(2 * 0.02 * 0.98 / 718) = 1.478 points.
    assert resolvable_difference(2.0, 359, 2) == pytest.approx(200 * math.sqrt(2 * 0.02 * 0.98 / 718))
    assert resolvable_difference(2.0, 359, 8) == pytest.approx(resolvable_difference(2.0, 359, 2) / 2)
    # A perfect model has no binomial noise, but one image is still the smallest step.
    assert resolvable_difference(0.0, 359, 2) == pytest.approx(100 / 359)
    # CIFAR's 10,000 test images at 5 %: 0.62 points with one seed.
    assert resolvable_difference(5.0, 10_000, 1) == pytest.approx(200 * math.sqrt(2 * 0.05 * 0.95 / 10_000))
    with pytest.raises(ValueError, match="test_size=0"):
        resolvable_difference(2.0, 0, 2)


def test_small_test_error_differences_are_unresolved_not_failed(tmp_path: Path):
    # Every test-error difference is a fraction of a point on 359 images: none can be told from noise.
    errors = {(o, s): 2.0 + 0.1 * i for i, (o, s) in enumerate((o, s) for o in OPTIMIZERS for s in SHARPNESS)}
    runs = analysis.load_runs(write_grid(tmp_path, errors, test_size=359))
    assert evaluated_test_size(runs) == 359
    table = analysis.check_claims(runs, "digits", "resnet18")
    claims = by_claim(table)
    for text in ERROR_CLAIMS:
        assert claims[text][0] == UNRESOLVED, (text, claims[text])
        assert "resolves ±1." in claims[text][2]
    # The sharpness claims are judged as before, and the count says how many claims were judged.
    assert claims["+ B sharpness < constant sharpness, for each optimizer"][0] == "holds"
    assert table.caption.startswith("5 of the 5 claims this run can resolve hold in every seed")
    assert "5 test-error claims are below what its test set and seeds can resolve" in table.caption
    (note,) = [n for n in table.notes if n.startswith("unresolved:")]
    assert "359 test images" in note and "one test image is 0.28 points" in note
    stats = table.stats.set_index("claim")
    assert (stats.loc[ERROR_CLAIMS, "ours"] == UNRESOLVED).all()
    assert stats.loc[ERROR_CLAIMS, "resolvable_pp"].between(1.0, 2.0).all()
    assert stats["resolvable_pp"].isna().sum() == 5  # the sharpness claims have none


def test_a_large_test_error_effect_is_still_judged(tmp_path: Path):
    # + B 5 points below constant for every optimizer: far beyond 359 images' resolution.
    errors = {(o, s): {"constant": 8.0, "batch": 3.0, "cosine": 8.2}[s] for o in OPTIMIZERS for s in SHARPNESS}
    table = analysis.check_claims(analysis.load_runs(write_grid(tmp_path, errors, 359)), "digits", "resnet18")
    claims = by_claim(table)
    assert claims["+ B test error < constant test error, for each optimizer"][:2] == ["holds", "2/2"]
    assert claims["+ C test error < constant test error, for each optimizer"][0] == UNRESOLVED


def test_without_a_recorded_test_size_every_claim_is_judged(tmp_path: Path):
    errors = {(o, s): 2.0 + (0.2 if s == "batch" else 0.0) for o in OPTIMIZERS for s in SHARPNESS}
    runs = analysis.load_runs(write_grid(tmp_path, errors, test_size=None))
    assert evaluated_test_size(runs) is None
    claims = by_claim(analysis.check_claims(runs, "digits", "resnet18"))
    assert claims["+ B test error < constant test error, for each optimizer"][0] == "fails"


def test_the_abstract_is_credited_only_with_what_it_says():
    """The abstract speaks of flatness; test-error claims are the project's reading of the tables."""
    table = analysis.paper_claims()
    abstract = {row[0]: row[-1] for row in table.rows}
    for text in ERROR_CLAIMS:
        assert abstract[text] == "-", text
    assert abstract["+ B sharpness < constant sharpness, for each optimizer"] == "agrees"
    assert abstract["+ C sharpness < constant sharpness, for each optimizer"] == "contradicts it"
    assert "the abstract does not mention test error" in table.caption
