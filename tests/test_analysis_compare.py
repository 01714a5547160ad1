"""analysis.compare: columns of a grid compared across variants, per optimizer and paired by seed.

The records are written with known sharpness values, so every count, ratio and
p below is exact: + B against the step-matched constant control (variant
epochs=62), as the study runs it.
"""

from __future__ import annotations

import math
import re

import pytest
from test_analysis_variants import write_run

import analysis
from analysis.compare import Column, compare_columns, main

CONTROL = {"train.epochs": 62}
# optimizer -> (+ B sharpness, control sharpness) per seed
VALUES = {
    "sgd": [(0.05, 0.10), (0.04, 0.08), (0.03, 0.06)],  # x0.5 in every seed
    "sam": [(0.01, 0.04), (0.02, 0.08), (0.03, 0.12)],  # x0.25
    "gsam": [(0.02, 0.04), (0.02, 0.04), (0.08, 0.04)],  # x0.5, x0.5, then x2: fails in seed 2
}


@pytest.fixture
def study(tmp_path):
    for optimizer, pairs in VALUES.items():
        for seed, (batch, control) in enumerate(pairs):
            write_run(tmp_path, optimizer=optimizer, schedule="batch", seed=seed, test_error=2.0, sharpness=batch)
            write_run(
                tmp_path,
                optimizer=optimizer,
                schedule="constant",
                seed=seed,
                test_error=3.0,
                sharpness=control,
                variant_values=CONTROL,
            )
            # The preset's constant column is there too and must not be taken for the control.
            write_run(tmp_path, optimizer=optimizer, schedule="constant", seed=seed, test_error=3.0, sharpness=1e-6)
    return tmp_path


@pytest.mark.parametrize(
    "text, column",
    [
        ("batch", Column("batch")),
        ("constant@epochs=62", Column("constant", "epochs=62")),
        ("sam/constant@rho=0.1", Column("constant", "rho=0.1", "sam")),
        ("gsam/cosine", Column("cosine", "", "gsam")),
    ],
)
def test_columns_parse_and_print_back(text, column):
    assert Column.parse(text) == column
    assert str(column) == text


@pytest.mark.parametrize("text", ["", "sam/", "a/b/c", "@rho=0.1"])
def test_a_malformed_column_is_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match=r"\[optimizer/\]schedule\[@variant\]"):
        Column.parse(text)


def test_batch_against_the_step_matched_control_per_optimizer_and_overall(study):
    table = compare_columns(analysis.load_runs(study), Column.parse("batch"), Column.parse("constant@epochs=62"))
    stats = table.stats.set_index("comparison")
    sgd = stats.loc["SGD + B < SGD @epochs=62"]
    assert (sgd.verdict, sgd.seeds, sgd.seeds_holding) == ("holds", 3, 3)
    assert sgd.effect == pytest.approx(0.5) and sgd.effect_min == pytest.approx(0.5)
    assert sgd.p == pytest.approx(1 / 8)  # three seeds, all in the claim's direction
    assert stats.loc["SAM + B < SAM @epochs=62"].effect == pytest.approx(0.25)
    gsam = stats.loc["GSAM + B < GSAM @epochs=62"]
    assert (gsam.verdict, gsam.seeds_holding, gsam.effect_max) == ("mixed", 2, pytest.approx(2.0))
    overall = stats.loc["each optimizer"]
    assert (overall.verdict, overall.seeds, overall.seeds_holding) == ("mixed", 3, 2)
    ratios = [b / c for pairs in VALUES.values() for b, c in pairs]
    assert overall.effect == pytest.approx(math.exp(sum(map(math.log, ratios)) / len(ratios)))
    # Per-seed mean log ratios: seeds 0 and 1 at log(0.5*0.25*0.5)/3 < 0, seed 2 at log(0.5*0.25*2)/3 < 0:
    # all three negative, so the sign-flip test gives its smallest p.
    assert overall.p == pytest.approx(1 / 8)
    assert table.rows[0][-2:] == ["0.04", "0.08"]  # the means of each side, SGD's row


def test_one_optimizer_against_another_on_test_error(study):
    runs = analysis.load_runs(study)
    table = compare_columns(runs, Column.parse("sam/batch"), Column.parse("sgd/constant@epochs=62"), "test_error")
    [row] = table.stats.to_dict("records")
    assert (row["comparison"], row["verdict"]) == ("SAM + B < SGD @epochs=62", "holds")
    assert row["effect_kind"] == "difference"
    assert row["effect"] == pytest.approx(-1.0)


def test_a_single_seed_is_said_plainly(tmp_path):
    write_run(tmp_path, optimizer="sam", schedule="batch", seed=0, test_error=2.0, sharpness=0.1)
    write_run(tmp_path, optimizer="sam", schedule="constant", seed=0, test_error=2.0, sharpness=0.2)
    table = compare_columns(analysis.load_runs(tmp_path), Column("batch"), Column("constant"))
    assert table.rows[0][:5] == ["SAM + B < SAM", "holds", "1/1", "×0.5", "one seed"]
    assert any("One seed" in note for note in table.notes)


@pytest.mark.parametrize("typo", ["constant@epoch=62", "cosine", "adam/batch"])
def test_a_column_without_runs_is_refused_naming_the_columns_there(study, typo):
    with pytest.raises(ValueError) as error:
        compare_columns(analysis.load_runs(study), Column("batch"), Column.parse(typo))
    assert str(error.value) == (
        f"column {typo!r} has no completed run here; columns: batch, constant, constant@epochs=62"
    )


def test_columns_without_a_common_seed_say_so(tmp_path):
    write_run(tmp_path, optimizer="sam", schedule="batch", seed=0, test_error=2.0, sharpness=0.1)
    write_run(tmp_path, optimizer="sam", schedule="constant", seed=1, test_error=2.0, sharpness=0.2)
    table = compare_columns(analysis.load_runs(tmp_path), Column("batch"), Column("constant"))
    assert {row[1] for row in table.rows} == {"n/a"}
    assert any("No seed has both sides" in note for note in table.notes)


def test_runs_of_two_experiments_must_be_told_apart(study):
    write_run(study, optimizer="sgd", schedule="batch", seed=0, test_error=2.0, sharpness=0.1, experiment="other")
    runs = analysis.load_runs(study)
    with pytest.raises(ValueError, match="several experiments.*other, study"):
        compare_columns(runs, Column("batch"), Column("constant", "epochs=62"))
    table = compare_columns(runs, Column("batch"), Column("constant", "epochs=62"), experiment="study")
    assert table.stats.set_index("comparison").loc["each optimizer"].seeds == 3


def test_cli_prints_the_table_and_refuses_bad_input_in_one_line(study, capsys):
    assert main([str(study), "batch", "constant@epochs=62"]) == 0
    out = capsys.readouterr().out
    assert "digits/resnet18: batch < constant@epochs=62 on sharpness (worst_linf)" in out
    assert re.search(r"\|\s*SGD \+ B < SGD @epochs=62\s*\|\s*holds\s*\|\s*3/3\s*\|", out)
    assert main([str(study), "batch", "a/b/c"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: column 'a/b/c'")
    assert main([str(study / "missing"), "batch", "constant"]) == 2
    assert "does not exist" in capsys.readouterr().err
