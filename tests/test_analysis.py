"""Tests of the analysis package on records written here, with known answers."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import analysis
from analysis.cli import main
from analysis.tables import decimals_for, format_mean_std

PAPER_COLUMNS = ["SGD", "SAM", "GSAM", "SGD + B", "SAM + B", "GSAM + B", "SGD + C", "SAM + C", "GSAM + C"]
SHARED_REPORTED = Path(__file__).resolve().parents[2] / "shared" / "paper" / "reported_results.csv"


def write_record(
    root: Path,
    *,
    experiment="t",
    dataset="cifar10",
    model="resnet18",
    optimizer="sgd",
    schedule="constant",
    seed=0,
    status="completed",
    test_error=None,
    sharpness=None,
    raw: str | None = None,
    **extra,
) -> Path:
    """Write one run folder the way the runner lays it out; `raw` writes the file text as given."""
    run_dir = root / experiment / f"{dataset}-{model}" / f"{optimizer}-{schedule}" / f"seed={seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        (run_dir / "result.json").write_text(raw)
        return run_dir
    record = {
        "schema_version": 1,
        "status": status,
        "experiment": experiment,
        "dataset": dataset,
        "model": model,
        "optimizer": optimizer,
        "schedule": schedule,
        "seed": seed,
        "test_error": test_error,
        "test_loss": 0.2 if test_error is not None else None,
        "train_error": 0.1,
        "train_loss": 0.01,
        "sharpness": {k: {"value": v, "rho": 0.0002} for k, v in (sharpness or {}).items()},
        "epochs": 2,
        "steps": 10,
        "wall_time_s": 1.5,
        "precision": "fp32",
        "config": {},
        "versions": {"torch": "x"},
        "git_commit": "abc",
        "error": None,
        "diverged_at_step": None,
    }
    record.update(extra)
    (run_dir / "result.json").write_text(json.dumps(record))
    return run_dir


# Test errors and sharpness (worst_linf) per cell and seed. GSAM + C has no run.
GRID = {
    ("sgd", "constant"): ([7.0, 7.2, 7.4], [100.0, 110.0, 120.0]),
    ("sam", "constant"): ([6.0, 6.5, 7.0], [50.0, 52.0, 54.0]),
    ("gsam", "constant"): ([6.1, 6.2, 6.3], [48.0, 49.0, 50.0]),
    ("sgd", "batch"): ([6.4, 6.4, 6.4], [8.0, 9.0, 10.0]),
    ("sam", "batch"): ([6.0, 6.1], [4.0, 4.5]),  # two seeds (a third failed)
    ("gsam", "batch"): ([6.0, 6.2, 6.4], [4.0, 4.1, 4.2]),  # plus a corrupt record
    ("sgd", "cosine"): ([6.6, 6.7, 6.8], [140.0, 141.0, 142.0]),
    ("sam", "cosine"): ([6.1], [88.0]),  # a single seed
}


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for (opt, sched), (errors, sharps) in GRID.items():
        for seed, (err, sharp) in enumerate(zip(errors, sharps)):
            write_record(
                root, optimizer=opt, schedule=sched, seed=seed, test_error=err, sharpness={"worst_linf": sharp}
            )
    write_record(
        root,
        optimizer="sam",
        schedule="batch",
        seed=2,
        status="failed",
        error="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory",
    )
    write_record(root, optimizer="gsam", schedule="batch", seed=9, raw='{"schema_version": 1, "status": "compl')
    write_record(root, optimizer="gsam", schedule="cosine", seed=0, raw="")
    write_record(root, optimizer="sgd", schedule="cosine", seed=7, test_error=1.0, schema_version=0)
    write_record(root, optimizer="sgd", schedule="cosine", seed=8, test_error=1.0, schema_version=3)
    older = write_record(root, optimizer="sgd", schedule="cosine", seed=9, test_error=1.0)
    record = json.loads((older / "result.json").read_text())
    del record["schema_version"]
    (older / "result.json").write_text(json.dumps(record))
    unfinished = root / "t" / "cifar10-resnet18" / "sam-cosine" / "seed=5"
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.csv").write_text("epoch,train_loss\n0,1.0\n")
    return root


def test_load_keeps_readable_records_and_reports_the_rest(results: Path) -> None:
    loaded = analysis.load_results(results)
    runs = loaded.runs
    assert len(runs) == sum(len(e) for e, _ in GRID.values()) + 1  # + the failed one
    assert set(runs["status"]) == {"completed", "failed"}
    kinds = {p.path: p.kind for p in loaded.problems}
    assert kinds == {
        "t/cifar10-resnet18/sam-batch/seed=2": "failed",
        "t/cifar10-resnet18/gsam-batch/seed=9": "corrupt",
        "t/cifar10-resnet18/gsam-cosine/seed=0": "corrupt",
        "t/cifar10-resnet18/sgd-cosine/seed=7": "schema",
        "t/cifar10-resnet18/sgd-cosine/seed=8": "schema",
        "t/cifar10-resnet18/sgd-cosine/seed=9": "schema",
        "t/cifar10-resnet18/sam-cosine/seed=5": "incomplete",
    }
    failed = next(p for p in loaded.problems if p.kind == "failed")
    assert failed.reason == "RuntimeError: CUDA out of memory"  # the traceback's last line
    summary = analysis.summarize_problems(loaded.problems)
    assert summary.startswith("7 records left out")
    assert "older schema_version 0" in summary and "newer schema_version 3" in summary
    assert analysis.load_runs(results).equals(runs)


def test_paper_table_means_stds_order_and_markers(results: Path) -> None:
    runs = analysis.load_runs(results)
    table = analysis.paper_table(runs, "cifar10", "resnet18")
    assert table.title == "CIFAR-10, ResNet-18"
    assert table.header == [""] + PAPER_COLUMNS
    frame = table.frame()
    assert list(frame.index) == ["Test Error (%)", "Sharpness"]
    assert frame.loc["Test Error (%)"].tolist() == [
        "7.20 ± 0.20 (n=3)",
        "6.50 ± 0.50 (n=3)",
        "6.20 ± 0.10 (n=3)",
        "6.40 ± 0.00 (n=3)",
        "6.05 ± 0.07 (n=2)",
        "6.20 ± 0.20 (n=3)",
        "6.70 ± 0.10 (n=3)",
        "6.10 (n=1)",
        "-",
    ]
    assert frame.loc["Sharpness"].tolist() == [
        "110.00 ± 10.00 (n=3)",
        "52.00 ± 2.00 (n=3)",
        "49.00 ± 1.00 (n=3)",
        "9.00 ± 1.00 (n=3)",
        "4.25 ± 0.35 (n=2)",
        "4.10 ± 0.10 (n=3)",
        "141.00 ± 1.00 (n=3)",
        "88.00 (n=1)",
        "-",
    ]
    assert "Missing (no completed run): GSAM + C." in table.notes
    assert "Left out of the means: SAM + B (1 failed)." in table.notes
    assert "1 to 3 seeds per cell" in table.caption
    markdown = analysis.to_markdown(table)
    header = next(line for line in markdown.splitlines() if line.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == PAPER_COLUMNS
    assert "- Missing (no completed run): GSAM + C." in markdown
    # The numbers behind the strings.
    stats = table.stats.set_index(["cell", "metric"])
    assert stats.loc[("SAM + B", "test_error"), "n"] == 2
    assert stats.loc[("SAM + B", "test_error"), "std"] == pytest.approx(math.sqrt(0.005))


def test_equal_seed_counts_have_no_markers_and_linear_columns_follow(tmp_path: Path) -> None:
    for opt in ("sgd", "sam", "gsam"):
        for sched in ("constant", "linear"):
            for seed, err in enumerate((5.0, 6.0)):
                write_record(tmp_path, optimizer=opt, schedule=sched, seed=seed, test_error=err)
    table = analysis.paper_table(analysis.load_runs(tmp_path), "cifar10", "resnet18")
    assert table.header[1:] == PAPER_COLUMNS + ["SGD + L", "SAM + L", "GSAM + L"]
    row = table.frame().loc["Test Error (%)"]
    assert row["SGD + L"] == "5.50 ± 0.71" and row["SAM"] == "5.50 ± 0.71"
    assert not any("(n=" in cell for cell in row)
    assert "2 seeds per cell" in table.caption
    assert "These records hold no sharpness measure." in table.notes


def test_sharpness_row_choice_and_extra_rows(tmp_path: Path) -> None:
    write_record(tmp_path, seed=0, test_error=5.0, sharpness={"avg_l2": 0.5})
    write_record(tmp_path, seed=1, test_error=5.0, sharpness={"avg_l2": 0.7})
    runs = analysis.load_runs(tmp_path)
    only = analysis.paper_table(runs, "cifar10", "resnet18").frame()
    assert list(only.index) == ["Test Error (%)", "Sharpness"]  # the only measure present is the row
    assert only.loc["Sharpness", "SGD"] == "0.60 ± 0.14"
    write_record(tmp_path, seed=2, test_error=5.0, sharpness={"avg_l2": 0.6, "worst_linf": 0.004})
    runs = analysis.load_runs(tmp_path)
    both = analysis.paper_table(runs, "cifar10", "resnet18")
    assert list(both.frame().index) == ["Test Error (%)", "Sharpness", "Sharpness: avg_l2"]
    assert both.frame().loc["Sharpness", "SGD"] == "0.00400 (n=1)"  # tiny values keep 3 digits
    assert "sharpness (worst_linf)" in both.caption
    chosen = analysis.paper_table(runs, "cifar10", "resnet18", sharpness="avg_l2").frame()
    assert list(chosen.index) == ["Test Error (%)", "Sharpness", "Sharpness: worst_linf"]
    absent = analysis.paper_table(runs, "cifar10", "resnet18", sharpness="hessian_trace")
    assert absent.frame().loc["Sharpness", "SGD"] == "-"
    assert any("hessian_trace" in note for note in absent.notes)


def test_formatting_rules() -> None:
    assert format_mean_std(6.2, 0.2, 3, 2) == "6.20 ± 0.20"
    assert format_mean_std(6.2, math.nan, 1, 2) == "6.20"
    assert format_mean_std(6.2, 0.2, 3, 2, show_n=True) == "6.20 ± 0.20 (n=3)"
    assert decimals_for([106.46, 0.9]) == 2
    assert decimals_for([0.0032, 0.001]) == 5
    assert decimals_for([]) == 2


def _latex_balanced(tex: str) -> None:
    body = "\n".join(line for line in tex.splitlines() if not line.lstrip().startswith("%"))
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{(\w+\*?)\}", body):
        if kind == "begin":
            stack.append(name)
        else:
            assert stack and stack.pop() == name, f"\\end{{{name}}} does not close the open environment"
    assert not stack, f"unclosed environments: {stack}"
    depth = 0
    for i, ch in enumerate(body):
        if ch in "{}" and (i == 0 or body[i - 1] != "\\"):
            depth += 1 if ch == "{" else -1
            assert depth >= 0
    assert depth == 0
    assert body.count("$") % 2 == 0
    for tabular in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", body, re.S):
        spec, rows = tabular
        lines = [ln for ln in rows.splitlines() if ln.strip().endswith(r"\\")]
        for line in lines:
            assert len(re.findall(r"(?<!\\)&", line)) == len(spec) - 1, line
        assert r"\toprule" in rows and r"\midrule" in rows and r"\bottomrule" in rows


def test_latex_is_balanced_and_escaped(results: Path) -> None:
    report = analysis.build_report(results)
    tex = report.latex()
    _latex_balanced(tex)
    assert r"Test Error (\%)" in tex and r"7.20 $\pm$ 0.20 (n=3)" in tex
    # table, comparison, claims, claims per seed, the paper's own claims
    assert tex.count(r"\begin{table}") == 5
    assert r"$\times$" in tex and "×" not in tex
    assert r"\usepackage{booktabs}" in tex


def test_runs_csv_round_trips(results: Path, tmp_path: Path) -> None:
    runs = analysis.load_runs(results)
    path = tmp_path / "runs.csv"
    analysis.write_runs_csv(runs, path)
    back = analysis.read_runs_csv(path)
    pd.testing.assert_frame_equal(back, runs)


def test_comparison_picks_the_published_value_for_every_cell(tmp_path: Path) -> None:
    reported = analysis.reported_results()
    assert len(reported) == 63
    if SHARED_REPORTED.exists():  # the shipped copy is the project's reference file
        pd.testing.assert_frame_equal(reported, pd.read_csv(SHARED_REPORTED))
    for row in reported.itertuples(index=False):
        cell = (row.dataset, row.model, row.optimizer, row.schedule)
        assert analysis.reported_value(*cell, "test_error") == row.test_error_pct
        assert analysis.reported_value(*cell, "sharpness") == row.sharpness
        # Our run: the paper's numbers plus a known offset, so the differences are known too.
        write_record(
            tmp_path,
            experiment=f"paper/{row.dataset}_{row.model}",
            dataset=row.dataset,
            model=row.model,
            optimizer=row.optimizer,
            schedule=row.schedule,
            test_error=row.test_error_pct + 1.0,
            sharpness={"worst_linf": row.sharpness * 2},
        )
    assert analysis.reported_value("digits", "resnet18", "sgd", "constant", "test_error") is None
    runs = analysis.load_runs(tmp_path)
    for (dataset, model), expected in reported.groupby(["dataset", "model"]):
        table = analysis.compare_with_paper(runs, dataset, model)
        frame = table.frame()
        assert list(frame.columns) == PAPER_COLUMNS
        stats = table.stats.set_index(["cell", "metric"])
        for row in expected.itertuples(index=False):
            cell = analysis.names.cell_label(row.optimizer, row.schedule)
            assert frame.loc["Test Error (%): paper", cell] == f"{row.test_error_pct:.2f}"
            assert frame.loc["Test Error (%): ours - paper", cell] == "+1.00"
            assert frame.loc["Sharpness: paper", cell] == f"{row.sharpness:.2f}"
            assert stats.loc[(cell, "sharpness"), "paper"] == row.sharpness
            assert stats.loc[(cell, "sharpness"), "difference"] == pytest.approx(row.sharpness)
    assert analysis.compare_with_paper(runs, "digits", "resnet18") is None


def test_claims_hold_fail_and_not_checked(results: Path) -> None:
    claims = analysis.check_claims(analysis.load_runs(results), "cifar10", "resnet18")
    assert claims.header == [
        "Claim",
        "Ours",
        "Seeds holding",
        "Effect (ours)",
        "p (ours)",
        "Paper: comparisons",
        "Effect (paper)",
        "Paper: this table",
    ]
    verdicts = {row[0]: row[1:] for row in claims.rows}
    # + B sharpness: seeds 0 and 1 have every pair (9 < 100, 4 < 50, 4 < 48; ...); seed 2 lacks SAM + B
    # and no pair fails there, so it decides nothing. Also in the paper.
    b = verdicts["+ B sharpness < constant sharpness, for each optimizer"]
    assert b[:2] == ["holds", "2/2"] and b[3] == "2 seeds: no test"
    assert b[4:] == ["21/21 (7/7 tables)", "×0.0576 (0.00862–0.156)", "holds"]
    # + C: SGD + C (140..142) is sharper than SGD (100..120) in every seed: one failing pair decides a seed
    # even though GSAM + C is missing. The paper's own numbers fail too (0 of 21).
    c = verdicts["+ C sharpness < constant sharpness, for each optimizer"]
    assert c[:2] == ["fails", "0/3"] and c[4] == "0/21 (0/7 tables)" and c[6] == "fails"
    # + B test error: SAM + B 6.0 = SAM 6.0 in seed 0; GSAM + B >= GSAM in seeds 1 and 2.
    assert verdicts["+ B test error < constant test error, for each optimizer"][:2] == ["fails", "0/3"]
    # SAM and GSAM flatter than SGD at constant: every seed, three seeds, so an exact test: p = 1/8.
    constant = verdicts["SAM and GSAM sharpness < SGD sharpness, constant"]
    assert constant[:4] == ["holds", "3/3", "×0.46 (0.417–0.5)", "0.125"]  # geometric mean of 6 ratios
    # ... at + C: GSAM + C is missing and SAM + C holds: nothing decided.
    assert verdicts["SAM and GSAM sharpness < SGD sharpness, + C"][:3] == ["n/a", "-", "×0.629"]
    assert any(n.startswith("n/a (") and "GSAM + C" in n for n in claims.notes)
    assert any("abstract says a decaying learning rate finds flatter minima" in n for n in claims.notes)
    assert not any("+ L" in text for text in verdicts)
    stats = claims.stats.set_index("claim")
    assert stats.loc["SAM and GSAM sharpness < SGD sharpness, constant", "p"] == 0.125
    assert stats.loc["+ C sharpness < constant sharpness, for each optimizer", "paper_contradicts_abstract"]


def test_two_experiments_on_one_pair_are_kept_apart(tmp_path: Path) -> None:
    write_record(tmp_path, experiment="a", test_error=5.0)
    write_record(tmp_path, experiment="b", test_error=9.0)
    runs = analysis.load_runs(tmp_path)
    with pytest.raises(ValueError, match="pass experiment="):
        analysis.paper_table(runs, "cifar10", "resnet18")
    table = analysis.paper_table(runs, "cifar10", "resnet18", experiment="b")
    assert table.title == "CIFAR-10, ResNet-18 (experiment b)"
    assert table.frame().loc["Test Error (%)", "SGD"] == "9.00"
    assert len(analysis.build_report(tmp_path).sections) == 2


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_are_valid_png(results: Path, tmp_path: Path) -> None:
    runs = analysis.load_runs(results)
    paths = analysis.save_figure(analysis.plot_table(runs, "cifar10", "resnet18"), tmp_path / "bars", ("png",))
    assert paths == [tmp_path / "bars.png"] and _is_png(paths[0])
    run_dir = results / "t" / "cifar10-resnet18" / "sgd-batch" / "seed=0"
    (run_dir / "metrics.csv").write_text(
        "epoch,stage,batch_size,lr,rho,train_loss,train_error,test_loss,test_error,grad_norm,wall_time_s\n"
        "0,0,16,0.1,0.05,2.0,50.0,2.1,52.0,,1.0\n1,1,32,0.1,0.05,1.0,30.0,1.2,33.0,,2.0\n"
    )
    paths = analysis.save_figure(analysis.plot_curves(run_dir), tmp_path / "curves" / "seed=0", ("png",))
    assert _is_png(paths[0])


def test_cli_writes_everything_and_survives_bad_records(results: Path, tmp_path: Path, capsys) -> None:
    run_dir = results / "t" / "cifar10-resnet18" / "sgd-batch" / "seed=0"
    (run_dir / "metrics.csv").write_text("epoch,train_loss,test_error\n0,1.0,50.0\n1,0.5,40.0\n")
    broken = results / "t" / "cifar10-resnet18" / "sgd-batch" / "seed=1"
    (broken / "metrics.csv").write_text("")  # curves cannot be drawn: a warning, not a crash
    out = tmp_path / "out"
    assert main([str(results), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "## CIFAR-10, ResNet-18" in printed.out and "7.20 ± 0.20 (n=3)" in printed.out
    assert "7 records left out of the tables" in printed.out
    assert "warning: could not draw the curves for t/cifar10-resnet18/sgd-batch/seed=1" in printed.err
    for name in ("tables.md", "tables.tex", "runs.csv", "cells.csv", "comparison.csv", "claims.csv"):
        assert (out / name).is_file(), name
    assert _is_png(out / "figures" / "cifar10-resnet18.png")
    assert (out / "figures" / "cifar10-resnet18.pdf").read_bytes()[:5] == b"%PDF-"
    assert _is_png(out / "figures" / "curves" / "t" / "cifar10-resnet18" / "sgd-batch" / "seed=0.png")
    cells = pd.read_csv(out / "cells.csv")
    assert set(cells["cell"]) == set(PAPER_COLUMNS) - {"GSAM + C"}


def test_cli_formats_and_exit_codes(results: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "only_tex"
    assert main([str(results), "--out", str(out), "--format", "tex", "--figures", "none", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tables.tex"]
    assert capsys.readouterr().out == ""
    assert main([str(tmp_path / "nowhere")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--figures", "none"]) == 2  # no runs: nothing is written into it
    assert "holds no runs" in capsys.readouterr().err and not list(empty.iterdir())
    with pytest.raises(SystemExit):
        main([str(results), "--format", "docx"])


def _good(root: Path) -> None:
    for seed, err in enumerate((5.0, 7.0)):
        write_record(root, seed=seed, test_error=err)


@pytest.mark.parametrize(
    "field, value, kind, reason",
    [
        ("seed", "zero", "invalid", "seed is 'zero', not a number"),
        ("seed", 1.5, "invalid", "seed is 1.5, not an integer"),
        ("test_error", "abc", "invalid", "test_error is 'abc', not a number"),
        ("test_error", True, "invalid", "test_error is True, not a number"),
        ("status", 5, "invalid", "status is 5, expected a name"),
        ("status", "finished", "invalid", "unknown status 'finished'"),
        ("dataset", None, "invalid", "dataset is None, expected a name"),
        ("sharpness", [1, 2], "invalid", "sharpness is list, not a mapping"),
        ("schema_version", "2", "schema", "unknown schema_version '2'"),
        ("config", [1, 2], "invalid", "config is a list, not a mapping"),
        ("config", {"a": {"b": {"c": {"d": 1}}}, "deep": json.loads("[" * 50 + "]" * 50)}, None, None),
    ],
)
def test_wrongly_typed_records_are_left_out_with_the_reason(tmp_path: Path, field, value, kind, reason) -> None:
    _good(tmp_path)
    run_dir = write_record(tmp_path, seed=2, test_error=6.0)
    record = json.loads((run_dir / "result.json").read_text())
    record[field] = value
    (run_dir / "result.json").write_text(json.dumps(record))
    loaded = analysis.load_results(tmp_path)
    if kind is None:  # odd but valid: a nested config and a deep list value are fine
        assert len(loaded.runs) == 3 and loaded.problems == []
        return
    assert len(loaded.runs) == 2
    (problem,) = loaded.problems
    assert (problem.kind, problem.path) == (kind, "t/cifar10-resnet18/sgd-constant/seed=2")
    assert reason in problem.reason


def test_huge_and_deeply_nested_records_are_skipped_not_fatal(tmp_path: Path, capsys) -> None:
    _good(tmp_path)
    # 100,000 nested lists: json's parser runs out of stack (RecursionError) -> a corrupt record.
    write_record(tmp_path, seed=3, raw="[" * 100_000 + "]" * 100_000)
    # A config nested 40 levels deep and one with 10,000 keys: bogus, never flattened into columns.
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["x"] = {}
        node = node["x"]
    write_record(tmp_path, seed=4, test_error=1.0, config=deep)
    write_record(tmp_path, seed=5, test_error=1.0, config={f"k{i}": i for i in range(10_000)})
    write_record(
        tmp_path,
        seed=6,
        test_error=1.0,
        schema_version=2,
        variant="v",
        variant_values={"x": json.loads("[" * 40 + "]" * 40)},
    )
    # 30 MB of bogus text in one record: read, found wanting, left out.
    bogus = {"schema_version": 2, "status": "completed", "junk": "x" * 30_000_000}
    write_record(tmp_path, seed=7, raw=json.dumps(bogus))
    loaded = analysis.load_results(tmp_path)
    assert list(loaded.runs["seed"]) == [0, 1]
    reasons = {p.path.rsplit("/", 1)[1]: (p.kind, p.reason) for p in loaded.problems}
    assert reasons == {
        "seed=3": ("corrupt", "JSON nested too deeply to be a record"),
        "seed=4": ("invalid", "config is nested deeper than 32 levels"),
        "seed=5": ("invalid", "config has more than 5000 keys"),
        "seed=6": ("invalid", "variant_values is nested deeper than 32 levels"),
        "seed=7": ("invalid", "dataset is None, expected a name"),
    }
    out = tmp_path / "out"
    assert main([str(tmp_path), "--out", str(out), "--figures", "none", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "warning: 5 records could not be used (unreadable, malformed or duplicate); listed under 'Records left out'"
    ]
    assert "JSON nested too deeply" in (out / "tables.md").read_text()


def test_read_only_results_fall_back_to_a_writable_folder(results: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """As root permissions stop nothing, so the default --out is blocked by a file named `analysis`."""
    (results / "analysis").write_text("not a folder")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main([str(results), "--figures", "none", "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    fallback = work / "analysis-results"
    assert err[0] == (f"note: cannot write to {results / 'analysis'} (File exists); writing to {fallback} instead")
    assert (fallback / "tables.md").is_file() and (fallback / "runs.csv").is_file()
    assert (results / "analysis").read_text() == "not a folder"
    # An explicit --out is never replaced: one error line, exit status 2.
    assert main([str(results), "--out", str(results / "analysis" / "sub"), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: cannot write to --out ") and line.endswith("Not a directory")


def test_no_writable_folder_is_one_error_line(tmp_path: Path) -> None:
    from analysis.output import OutputError, output_folder

    blocker = tmp_path / "file"
    blocker.write_text("")
    results = tmp_path / "results"
    (results / "cell").mkdir(parents=True)
    (results / "cell" / "result.json").write_text("{}")  # a folder with a run: only the writing fails
    (results / "analysis").write_text("")
    with pytest.raises(OutputError) as caught:
        output_folder(results, None, fallbacks=[blocker / "a", blocker / "b"])
    message = str(caught.value)
    assert "\n" not in message and message.endswith("pass --out DIR")
    assert f"{blocker / 'a'} (Not a directory)" in message
    assert output_folder(results, None, fallbacks=[blocker / "a", tmp_path / "ok"]) == (
        tmp_path / "ok",
        f"note: cannot write to {results / 'analysis'} (File exists); writing to {tmp_path / 'ok'} instead",
    )


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="as root, permission bits stop no write")
def test_chmod_read_only_tree_falls_back(results: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    modes = {}
    for path in [results, *results.rglob("*")]:
        modes[path] = path.stat().st_mode
        path.chmod(modes[path] & ~0o222)
    try:
        assert main([str(results), "--figures", "none", "--quiet"]) == 0
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert "writing to" in capsys.readouterr().err
    assert (work / "analysis-results" / "tables.md").is_file()
    assert not (results / "analysis").exists()
