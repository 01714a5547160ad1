"""Claims with statistics: counts per seed, effect sizes, the exact sign-flip test, and the paper's own tables.

Records are written with known ratios between cells, so every count, ratio
and p below is exact; the paper's counts are recomputed here from
reported_results.csv by a second, plain implementation.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pandas as pd
import pytest

import analysis
from analysis.claim_stats import RATIO, Comparison, sign_flip_p, summarize
from analysis.cli import main

OPTIMIZERS = ("sgd", "sam", "gsam")
CONSTANT = {"sgd": 1.0, "sam": 0.5, "gsam": 0.4}  # sharpness at constant, per optimizer
CONSTANT_ERROR = {"sgd": 8.0, "sam": 7.0, "gsam": 6.5}


def write(
    root: Path, optimizer: str, schedule: str, seed: int, test_error: float, sharpness: float, dataset: str = "digits"
) -> None:
    run_dir = root / "claims" / f"{dataset}-resnet18" / f"{optimizer}-{schedule}" / f"seed={seed}"
    run_dir.mkdir(parents=True)
    record = {
        "schema_version": 2,
        "status": "completed",
        "experiment": "claims",
        "dataset": dataset,
        "model": "resnet18",
        "optimizer": optimizer,
        "schedule": schedule,
        "seed": seed,
        "variant": "",
        "variant_values": {},
        "test_error": test_error,
        "sharpness": {"worst_linf": {"value": sharpness}},
        "config": {},
    }
    (run_dir / "result.json").write_text(json.dumps(record))


def grid(root: Path, seeds: tuple[int, ...]) -> Path:
    """+ B is 10x flatter than constant, except GSAM + B in seed 2 (1000x sharper); + C is 2x sharper.

    Test errors: + B is 1 point lower, + C 0.5 point higher; seed k adds k/10 to every cell.
    """
    for seed in seeds:
        scale = 1.0 + seed  # the same factor in every cell of a seed: ratios stay exact
        for opt in OPTIMIZERS:
            base, error = CONSTANT[opt] * scale, CONSTANT_ERROR[opt] + seed / 10
            batch = base * (1000.0 if (opt, seed) == ("gsam", 2) else 0.1)
            write(root, opt, "constant", seed, error, base)
            write(root, opt, "batch", seed, error - 1.0, batch)
            write(root, opt, "cosine", seed, error + 0.5, base * 2.0)
    return root


def rows_by_claim(table: analysis.Table) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table.rows}


def test_sign_flip_p_is_exact() -> None:
    assert sign_flip_p([-1.0, -2.0, -3.0]) == 1 / 8
    assert sign_flip_p([-0.1] * 5) == 1 / 32
    assert sign_flip_p([-1.0, -1.0, 0.5]) == 2 / 8  # (-,-,-) and the observed (-,-,+)
    assert sign_flip_p([1.0, 2.0, 3.0]) == 1.0
    assert sign_flip_p([-4.0]) == 0.5
    values = [-0.3, 0.1, -0.7, -0.2, 0.4, -0.05]
    brute = sum(
        sum(s * abs(v) for s, v in zip(signs, values)) <= sum(values) + 1e-12
        for signs in itertools.product((-1, 1), repeat=len(values))
    ) / 2 ** len(values)
    assert sign_flip_p(values) == brute
    # Beyond 16 values the patterns are sampled (10,000 of them): none beats all-negative, p = 1 / 10,001.
    assert sign_flip_p([-1.0] * 22) == 1 / 10_001
    assert sign_flip_p([-1.0, 1.0] * 11) == pytest.approx(0.5 + math.comb(22, 11) / 2**23, abs=0.01)
    with pytest.raises(ValueError):
        sign_flip_p([])


def test_summary_counts_decided_seeds_only() -> None:
    a, b, c = ("sam", "batch"), ("sam", "constant"), ("gsam", "batch")
    d = ("gsam", "constant")
    found = [
        Comparison(a, b, 0, 1.0, 2.0),
        Comparison(c, d, 0, 1.0, 4.0),  # seed 0: both hold
        Comparison(a, b, 1, 3.0, 2.0),  # seed 1: one pair fails, the other is missing: fails
        Comparison(c, d, 2, 1.0, 2.0),
    ]  # seed 2: one pair holds, the other is missing: undecided
    s = summarize(found, pairs=2, kind=RATIO)
    assert (s.replicates, s.replicates_holding, s.tested, s.comparisons, s.comparisons_holding) == (2, 1, 1, 4, 3)
    assert s.verdict == "mixed" and s.p is None
    assert s.effect == pytest.approx(math.exp((math.log(0.5) + math.log(0.25) + math.log(1.5) + math.log(0.5)) / 4))
    assert (s.effect_min, s.effect_max) == (0.25, 1.5)


def test_claims_over_three_seeds_with_a_failing_seed(tmp_path: Path) -> None:
    runs = analysis.load_runs(grid(tmp_path, (0, 1, 2)))
    table = analysis.check_claims(runs, "digits", "resnet18")
    claims = rows_by_claim(table)
    stats = table.stats.set_index("claim")

    b = "+ B sharpness < constant sharpness, for each optimizer"
    # Eight comparisons at ratio 0.1, one (GSAM, seed 2) at 1000: geometric mean 10^((-8 + 3) / 9).
    assert claims[b][:4] == ["mixed", "2/3", "×0.278 (0.1–1e+03)", "0.25"]
    assert stats.loc[b, "effect"] == pytest.approx(10 ** (-5 / 9))
    assert (stats.loc[b, "comparisons"], stats.loc[b, "comparisons_holding"]) == (9, 8)
    # Per-seed means of log ratios: ln 0.1, ln 0.1, (2 ln 0.1 + ln 1000) / 3 > 0: two of eight sign patterns
    # are at least as negative as the observed one.
    assert stats.loc[b, "p"] == 0.25

    c = "+ C sharpness < constant sharpness, for each optimizer"
    assert claims[c][:4] == ["fails", "0/3", "×2 (2–2)", "1"]
    constant = "SAM and GSAM sharpness < SGD sharpness, constant"
    assert claims[constant][:4] == ["holds", "3/3", f"×{math.sqrt(0.2):.3g} (0.4–0.5)", "0.125"]
    # SAM + B < SGD + B holds; GSAM + B in seed 2 is 400x SGD + B.
    assert claims["SAM and GSAM sharpness < SGD sharpness, + B"][:2] == ["mixed", "2/3"]

    error_b = "+ B test error < constant test error, for each optimizer"
    assert claims[error_b][:4] == ["holds", "3/3", "-1.00 pp (-1.00 to -1.00)", "0.125"]
    assert claims["+ C test error < constant test error, for each optimizer"][:2] == ["fails", "0/3"]
    # The paper's counts sit next to ours in every claims table.
    assert claims[c][4] == "0/21 (0/7 tables)" and claims[b][4] == "21/21 (7/7 tables)"
    assert not any("one seed" in n for n in table.notes)
    assert any(n.startswith("p: exact one-sided sign-flip permutation test") for n in table.notes)

    detail = analysis.claims_per_seed(runs, "digits", "resnet18")
    assert detail.header == ["Claim", "Cells", "seed 0", "seed 1", "seed 2", "Holds", "Effect", "p"]
    gsam = next(r for r in detail.rows if r[1] == "GSAM + B < GSAM")
    # Geometric mean (0.1 * 0.1 * 1000)^(1/3) = 10^(1/3); log ratios (-2.3, -2.3, +6.9) sum to -2.3*2 + 6.9 = +2.3:
    # 5 of the 8 sign patterns of (2.3, 2.3, 6.9) sum to at most that.
    assert gsam[2:] == ["0.1", "0.1", "1e+03", "2/3", "×2.15 (0.1–1e+03)", "0.625"]
    sgd_error = next(r for r in detail.rows if r[0] == error_b)
    assert sgd_error[1] == "SGD + B < SGD"
    assert sgd_error[2:5] == ["-1.00", "-1.00", "-1.00"]
    per = detail.stats
    failing = per[(per["lower"] == "GSAM + B") & (per["higher"] == "GSAM") & (per["metric"] == "sharpness")]
    assert failing.set_index("seed")["holds"].to_dict() == {0: True, 1: True, 2: False}
    assert failing.set_index("seed").loc[2, "effect"] == pytest.approx(1000.0)


def test_a_single_seed_is_said_plainly(tmp_path: Path) -> None:
    runs = analysis.load_runs(grid(tmp_path, (0,)))
    table = analysis.check_claims(runs, "digits", "resnet18")
    claims = rows_by_claim(table)
    assert claims["+ B sharpness < constant sharpness, for each optimizer"][:4] == [
        "holds",
        "1/1 (one seed)",
        "×0.1 (0.1–0.1)",
        "one seed",
    ]
    assert table.notes[0].startswith("Every claim checked here rests on one seed")
    assert not any(n.startswith("p: exact") for n in table.notes)


def _paper_counts(metric: str, pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> tuple[int, int, int]:
    """(comparisons holding, comparisons, tables where every pair holds), straight from the CSV."""
    frame = pd.read_csv(Path(analysis.__file__).parent / "data" / "reported_results.csv")
    column = {"sharpness": "sharpness", "test_error": "test_error_pct"}[metric]
    holding = total = tables = 0
    for _, table in frame.groupby(["dataset", "model"]):
        value = table.set_index(["optimizer", "schedule"])[column]
        held = [value[lo] < value[hi] for lo, hi in pairs]
        holding, total, tables = holding + sum(held), total + len(held), tables + all(held)
    return holding, total, tables


def test_the_paper_tables_checked_like_seeds() -> None:
    table = analysis.paper_claims()
    claims = rows_by_claim(table)
    each = [((o, "batch"), (o, "constant")) for o in OPTIMIZERS]
    assert _paper_counts("sharpness", each) == (21, 21, 7)
    assert claims["+ B sharpness < constant sharpness, for each optimizer"][:5] == [
        "holds",
        "7/7",
        "21/21",
        "×0.0576 (0.00862–0.156)",
        "0.00781",
    ]
    cosine = [((o, "cosine"), (o, "constant")) for o in OPTIMIZERS]
    assert _paper_counts("sharpness", cosine) == (0, 21, 0)  # + C is sharper than constant in 21 of 21
    assert claims["+ C sharpness < constant sharpness, for each optimizer"][:3] == ["fails", "0/7", "0/21"]
    for schedule in ("constant", "batch", "cosine"):
        pairs = [((o, schedule), ("sgd", schedule)) for o in ("sam", "gsam")]
        assert _paper_counts("sharpness", pairs) == (14, 14, 7)
        label = "constant" if schedule == "constant" else {"batch": "+ B", "cosine": "+ C"}[schedule]
        assert claims[f"SAM and GSAM sharpness < SGD sharpness, {label}"][:3] == ["holds", "7/7", "14/14"]
    assert _paper_counts("test_error", cosine) == (18, 21, 4)
    assert claims["+ C test error < constant test error, for each optimizer"][:3] == ["mixed", "4/7", "18/21"]
    # Only + C sharpness goes against the abstract ("a decaying learning rate finds flatter minima").
    abstract = {text: row[-1] for text, row in claims.items()}
    assert abstract["+ C sharpness < constant sharpness, for each optimizer"] == "contradicts it"
    assert abstract["+ B sharpness < constant sharpness, for each optimizer"] == "agrees"
    assert sum(v == "contradicts it" for v in abstract.values()) == 1
    (note,) = table.notes
    assert "decaying learning rate finds flatter minima" in note and "holds in 0 of 21 comparisons" in note
    assert list(table.stats.loc[table.stats["contradicts_abstract"], "claim"]) == [
        "+ C sharpness < constant sharpness, for each optimizer"
    ]


def test_claims_of_a_paper_pair_show_that_table_and_the_cli_writes_the_numbers(tmp_path: Path, capsys) -> None:
    for seed in (0, 1):
        for opt in OPTIMIZERS:
            for sched in ("constant", "batch", "cosine"):
                sharp = analysis.reported_value("cifar10", "resnet18", opt, sched, "sharpness") * (1 + seed)
                error = analysis.reported_value("cifar10", "resnet18", opt, sched, "test_error")
                write(tmp_path, opt, sched, seed, error, sharp, dataset="cifar10")
    table = analysis.check_claims(analysis.load_runs(tmp_path), "cifar10", "resnet18")
    claims = rows_by_claim(table)
    # Our runs are the paper's numbers, so our verdicts equal the paper's verdict on this table.
    assert [row[-1] for row in claims.values()] == [row[0] for row in claims.values()]
    assert claims["+ C sharpness < constant sharpness, for each optimizer"][:2] == ["fails", "0/2"]
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out), "--figures", "none", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    for name in ("claims.csv", "claims_per_seed.csv", "paper_claims.csv"):
        assert (out / name).stat().st_size > 0, name
    saved = pd.read_csv(out / "claims.csv").set_index("claim")
    assert saved.loc["+ B sharpness < constant sharpness, for each optimizer", "replicates_holding"] == 2
    assert saved.loc["+ B sharpness < constant sharpness, for each optimizer", "paper_comparisons"] == 21
    markdown = (out / "tables.md").read_text()
    assert "## The paper's own numbers: its claims across its 7 tables" in markdown


def test_many_seeds_keep_the_per_seed_table_readable(tmp_path: Path) -> None:
    runs = analysis.load_runs(grid(tmp_path, tuple(range(13))))
    detail = analysis.claims_per_seed(runs, "digits", "resnet18")
    assert detail.header == ["Claim", "Cells", "Holds", "Effect", "p"]
    assert "13 seeds" in detail.caption and len(detail.stats) > 13 * 9
    row = next(r for r in detail.rows if r[1] == "SAM + B < SAM")
    assert row[2:] == ["13/13", "×0.1 (0.1–0.1)", f"{1 / 2**13:.3g}"]
