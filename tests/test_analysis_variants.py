"""Variants in the analysis: run identity with a variant, config columns, tables per variant, sweep views.

Records are written here as the runner lays them out (schema 2, the variant
folder segment between the cell and the seed), with known numbers, so every
mean and std below is exact.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.lines import Line2D
from test_analysis import _latex_balanced

import analysis
from analysis.cli import main

PRESET_RHO = 0.05


def config_of(
    optimizer: str,
    schedule: str,
    seed: int,
    *,
    rho: float | None,
    lr: float = 0.1,
    width: int = 16,
    experiment: str = "study",
) -> dict:
    """A resolved config shaped like the runner's (nested groups, neutral keys included)."""
    optimizer_node = {"name": optimizer, "_target_": "sam_opt.SAM", "lr": lr, "rho": 0.0 if rho is None else rho}
    if optimizer == "gsam":
        optimizer_node.update({"_target_": "sam_opt.GSAM", "alpha": 0.02})
    return {
        "experiment_name": experiment,
        "seed": seed,
        "results_root": "/somewhere",
        "run_dir": f"/x/{seed}",
        "dataset": {"name": "digits", "num_classes": 10},
        "model": {"name": "resnet18", "_target_": "runner.models.cifar_resnet18", "width": width},
        "optimizer": optimizer_node,
        "schedule": {"name": schedule, "lr_policy": "cosine" if schedule == "cosine" else "constant"},
        "train": {"epochs": 15, "batch_size": 64, "increasing_batch_sizes": [16, 32, 64]},
        "sam": {"rho": PRESET_RHO if rho is None else rho},
        "hydra": {"job": {"name": "launch"}},
    }


def write_run(
    root: Path,
    *,
    optimizer: str,
    schedule: str,
    seed: int,
    test_error: float,
    sharpness: float | None = None,
    variant_values: dict | None = None,
    experiment: str = "study",
    schema_version: int = 2,
    config: dict | None = None,
    status: str = "completed",
) -> Path:
    """One run folder `<root>/<experiment>/digits-resnet18/<opt>-<sched>/[<variant>/]seed=<k>/result.json`."""
    variant_values = variant_values or {}
    variant = ",".join(f"{k.split('.')[-1]}={v}" for k, v in sorted(variant_values.items()))
    run_dir = root / experiment / "digits-resnet18" / f"{optimizer}-{schedule}"
    run_dir = (run_dir / variant if variant else run_dir) / f"seed={seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    rho = variant_values.get("optimizer.rho", PRESET_RHO if optimizer != "sgd" else None)
    record = {
        "schema_version": schema_version,
        "status": status,
        "experiment": experiment,
        "dataset": "digits",
        "model": "resnet18",
        "optimizer": optimizer,
        "schedule": schedule,
        "seed": seed,
        "test_error": test_error,
        "test_loss": 0.3,
        "train_error": 0.5,
        "train_loss": 0.02,
        "sharpness": {"worst_linf": {"value": sharpness, "rho": 0.0002}} if sharpness is not None else {},
        "epochs": 15,
        "steps": 300,
        "wall_time_s": 10.0,
        "precision": "fp32",
        "config": config
        if config is not None
        else config_of(
            optimizer,
            schedule,
            seed,
            rho=rho if optimizer != "sgd" else None,
            experiment=experiment,
            lr=variant_values.get("optimizer.lr", 0.1),
        ),
        "versions": {"torch": "2.14.1"},
        "git_commit": "abc",
        "error": None,
        "diverged_at_step": None,
    }
    if schema_version >= 2:
        record.update({"variant": variant, "variant_values": variant_values})
    (run_dir / "result.json").write_text(json.dumps(record))
    return run_dir


# rho sweep: (optimizer, schedule) -> rho -> [(test error, sharpness) per seed]; None = the preset (0.05).
SWEEP = {
    ("sam", "constant"): {
        0.01: [(6.0, 0.30), (7.0, 0.50)],
        None: [(5.0, 0.20), (5.5, 0.30)],
        0.1: [(6.5, 0.10), (6.5, 0.14)],
    },
    ("gsam", "constant"): {
        0.01: [(6.2, 0.28), (6.4, 0.32)],
        None: [(5.2, 0.18), (5.4, 0.22)],
        0.1: [(6.0, 0.08), (7.0, 0.12)],
    },
    ("sam", "batch"): {
        0.01: [(4.0, 0.05), (4.2, 0.07)],
        None: [(4.4, 0.04), (4.4, 0.04)],
        0.1: [(5.0, 0.02), (5.2, 0.03)],
    },
}
# SGD's optimizer.rho is 0 whatever sam.rho says, so it has the preset's variant only.
SGD = {("sgd", "constant"): [(7.0, 0.40), (8.0, 0.60)]}


@pytest.fixture()
def rho_sweep(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for (opt, sched), by_rho in SWEEP.items():
        for rho, seeds in by_rho.items():
            for seed, (err, sharp) in enumerate(seeds):
                values = {"optimizer.rho": rho} if rho is not None else {}
                write_run(
                    root,
                    optimizer=opt,
                    schedule=sched,
                    seed=seed,
                    test_error=err,
                    sharpness=sharp,
                    variant_values=values,
                )
    for (opt, sched), seeds in SGD.items():
        for seed, (err, sharp) in enumerate(seeds):
            write_run(root, optimizer=opt, schedule=sched, seed=seed, test_error=err, sharpness=sharp)
    return root


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_variant_runs_are_distinct_and_carry_their_config(rho_sweep: Path, tmp_path: Path) -> None:
    loaded = analysis.load_results(rho_sweep)
    assert loaded.problems == []
    runs = loaded.runs
    assert len(runs) == 3 * 3 * 2 + 2  # no record is a duplicate of another variant's
    assert set(runs["variant"]) == {"", "rho=0.01", "rho=0.1"}
    rel = runs["run_dir"].str.replace(str(rho_sweep.resolve()) + "/", "", regex=False)
    assert "study/digits-resnet18/sam-constant/rho=0.1/seed=1" in set(rel)
    # Config columns: what varies across the folder, with its own dtype; constant and neutral keys are left out.
    config = [c for c in runs.columns if c.startswith("config.")]
    assert config == ["config.optimizer.rho", "config.sam.rho"]
    assert runs["config.optimizer.rho"].dtype == "float64"
    at = runs.set_index(rel)
    assert at.loc["study/digits-resnet18/sam-batch/rho=0.01/seed=0", "config.optimizer.rho"] == 0.01
    assert at.loc["study/digits-resnet18/sgd-constant/seed=0", "config.optimizer.rho"] == 0.0
    assert json.loads(at.loc["study/digits-resnet18/gsam-constant/rho=0.1/seed=0", "variant_values"]) == {
        "optimizer.rho": 0.1
    }
    for neutral in (
        "config.run_dir",
        "config.seed",
        "config.optimizer.name",
        "config.model.width",
        "config.optimizer._target_",
        "config.hydra.job.name",
        "config.optimizer.alpha",
    ):
        assert neutral not in runs.columns
    path = tmp_path / "runs.csv"
    analysis.write_runs_csv(runs, path)
    pd.testing.assert_frame_equal(analysis.read_runs_csv(path), runs)


def test_duplicates_are_judged_with_the_variant(tmp_path: Path) -> None:
    write_run(tmp_path, optimizer="sam", schedule="constant", seed=0, test_error=5.0)
    write_run(
        tmp_path, optimizer="sam", schedule="constant", seed=0, test_error=6.0, variant_values={"optimizer.rho": 0.1}
    )
    # The same run a second time, in a folder of another experiment name but with the same identity.
    copy = tmp_path / "copy" / "study" / "digits-resnet18" / "sam-constant" / "rho=0.1" / "seed=0"
    copy.mkdir(parents=True)
    source = tmp_path / "study" / "digits-resnet18" / "sam-constant" / "rho=0.1" / "seed=0" / "result.json"
    (copy / "result.json").write_text(source.read_text())
    loaded = analysis.load_results(tmp_path)
    assert len(loaded.runs) == 2
    assert [(p.kind, p.path) for p in loaded.problems] == [
        ("duplicate", "study/digits-resnet18/sam-constant/rho=0.1/seed=0")
    ]


def test_two_variants_give_two_tables_and_only_the_preset_is_compared(tmp_path: Path) -> None:
    for seed, (a, b) in enumerate([(5.0, 6.0), (5.4, 6.6)]):
        write_run(tmp_path, optimizer="sgd", schedule="constant", seed=seed, test_error=a, sharpness=1.0)
        write_run(
            tmp_path,
            optimizer="sgd",
            schedule="constant",
            seed=seed,
            test_error=b,
            sharpness=2.0,
            variant_values={"optimizer.lr": 0.05},
        )
    runs = analysis.load_runs(tmp_path)
    assert analysis.table_keys(runs) == [
        ("study", "digits", "resnet18", ""),
        ("study", "digits", "resnet18", "lr=0.05"),
    ]
    with pytest.raises(ValueError, match="pass variant="):
        analysis.paper_table(runs, "digits", "resnet18")
    preset = analysis.paper_table(runs, "digits", "resnet18", variant="")
    lower = analysis.paper_table(runs, "digits", "resnet18", variant="lr=0.05")
    assert preset.title == "Digits, ResNet-18, preset values" and preset.key == "digits-resnet18"
    assert lower.title == "Digits, ResNet-18, lr=0.05" and lower.key == "digits-resnet18-lr=0.05"
    assert preset.frame().loc["Test Error (%)", "SGD"] == "5.20 ± 0.28"
    assert lower.frame().loc["Test Error (%)", "SGD"] == "6.30 ± 0.42"
    assert set(lower.stats["variant"]) == {"lr=0.05"}
    report = analysis.build_report(tmp_path)
    assert [(s.variant, s.table.title) for s in report.sections] == [
        ("", "Digits, ResNet-18, preset values"),
        ("lr=0.05", "Digits, ResNet-18, lr=0.05"),
    ]
    # A single-key sweep with two values (lr 0.1 of the preset and 0.05): a sweep view too.
    assert [view.sweep.key for view in report.sweeps] == ["optimizer.lr"]


def test_paper_comparison_uses_the_preset_values_only(tmp_path: Path) -> None:
    for optimizer in ("sgd", "sam"):
        run = write_run(tmp_path, optimizer=optimizer, schedule="constant", seed=0, test_error=7.0, sharpness=100.0)
        record = json.loads((run / "result.json").read_text())
        record.update(dataset="cifar10")
        (run / "result.json").write_text(json.dumps(record))
    run = write_run(
        tmp_path,
        optimizer="sam",
        schedule="constant",
        seed=0,
        test_error=1.0,
        sharpness=1.0,
        variant_values={"optimizer.rho": 0.1},
    )
    record = json.loads((run / "result.json").read_text())
    record.update(dataset="cifar10")
    (run / "result.json").write_text(json.dumps(record))
    report = analysis.build_report(tmp_path)
    by_variant = {s.variant: s for s in report.sections}
    assert by_variant["rho=0.1"].comparison is None
    comparison = by_variant[""].comparison.frame()
    assert comparison.loc["Test Error (%): ours", "SAM"] == "7.00"  # not pooled with rho=0.1's 1.00
    assert comparison.loc["Test Error (%): ours - paper", "SAM"] == "+0.66"  # paper: 6.34


def test_schema_1_records_are_the_preset_variant(tmp_path: Path) -> None:
    old = write_run(tmp_path, optimizer="sgd", schedule="constant", seed=0, test_error=5.0, schema_version=1, config={})
    write_run(tmp_path, optimizer="sgd", schedule="constant", seed=1, test_error=7.0)
    record = json.loads((old / "result.json").read_text())
    assert "variant" not in record and record["schema_version"] == 1
    loaded = analysis.load_results(tmp_path)
    assert loaded.problems == []
    assert list(loaded.runs["variant"]) == ["", ""] and list(loaded.runs["variant_values"]) == ["{}", "{}"]
    table = analysis.paper_table(loaded.runs, "digits", "resnet18")
    assert table.frame().loc["Test Error (%)", "SGD"] == "6.00 ± 1.41"
    # Without an experiment field the experiment is read from the path, variant folder or not.
    for values in ({}, {"optimizer.lr": 0.05}):
        run = write_run(
            tmp_path / "nameless",
            optimizer="sgd",
            schedule="constant",
            seed=0,
            test_error=5.0,
            experiment="fromdir",
            variant_values=values,
        )
        record = json.loads((run / "result.json").read_text())
        del record["experiment"]
        (run / "result.json").write_text(json.dumps(record))
    assert set(analysis.load_runs(tmp_path / "nameless")["experiment"]) == {"fromdir"}


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("variant", 3, "variant is 3"),
        ("variant_values", ["optimizer.rho"], "variant_values is a list"),
        ("config", "lr=0.1", "config is a str"),
    ],
)
def test_wrongly_typed_variant_fields_are_reported(tmp_path: Path, field: str, value, reason: str) -> None:
    run = write_run(tmp_path, optimizer="sgd", schedule="constant", seed=0, test_error=5.0)
    write_run(tmp_path, optimizer="sgd", schedule="constant", seed=1, test_error=5.0)
    record = json.loads((run / "result.json").read_text())
    record[field] = value
    (run / "result.json").write_text(json.dumps(record))
    loaded = analysis.load_results(tmp_path)
    assert len(loaded.runs) == 1
    (problem,) = loaded.problems
    assert problem.kind == "invalid" and reason in problem.reason


def test_rho_sweep_view_exact_means_and_stds(rho_sweep: Path) -> None:
    runs = analysis.load_runs(rho_sweep)
    (sweep,) = analysis.find_sweeps(runs)
    assert (sweep.key, sweep.base, sweep.experiment) == ("optimizer.rho", {}, "study")
    stats = analysis.sweep_stats(sweep).set_index(["cell", "value", "metric"])
    for (opt, sched), by_rho in SWEEP.items():
        cell = analysis.names.cell_label(opt, sched)
        for rho, seeds in by_rho.items():
            label = f"{rho if rho is not None else PRESET_RHO:g}"
            for i, metric in enumerate(("test_error", "sharpness")):
                mean, std = _mean_std([s[i] for s in seeds])
                row = stats.loc[(cell, label, metric)]
                assert row["mean"] == pytest.approx(mean, abs=1e-12), (cell, label, metric)
                assert row["std"] == pytest.approx(std, abs=1e-12), (cell, label, metric)
                assert row["n"] == 2 and bool(row["preset"]) == (rho is None)
    # SGD sits at its own rho, 0, once.
    sgd = stats.loc[("SGD", "0", "test_error")]
    assert (sgd["mean"], sgd["n"]) == (7.5, 2)
    assert stats.loc[("SAM", "0.05", "sharpness"), "measure"] == "worst_linf"

    table = analysis.sweep_table(sweep)
    assert table.title == "Digits, ResNet-18: sweep over optimizer.rho"
    assert table.header == ["", "optimizer.rho", "SGD", "SAM", "GSAM", "SAM + B"]
    grid = {(r[0] or None, r[1]): r[2:] for r in table.rows}
    assert [r[1] for r in table.rows] == ["0", "0.01", "0.05 (preset)", "0.1"] * 2
    assert table.rows[0][0] == "Test Error (%)" and table.rows[4][0] == "Sharpness (worst_linf)"
    assert table.rows[1][2:] == ["-", "6.50 ± 0.71", "6.30 ± 0.14", "4.10 ± 0.14"]
    assert table.rows[2][2:] == ["-", "5.25 ± 0.35", "5.30 ± 0.14", "4.40 ± 0.00"]
    assert table.rows[0][2:] == ["7.50 ± 0.71", "-", "-", "-"]
    assert table.rows[7][2:] == ["-", "0.12 ± 0.03", "0.10 ± 0.03", "0.03 ± 0.01"]
    assert grid  # every row has its label
    assert table.notes == [
        "One value only, not swept: SGD (optimizer.rho = 0); the figure draws them as horizontal lines."
    ]

    variant_table = analysis.paper_table(runs, "digits", "resnet18", variant="rho=0.1")
    assert any(n.startswith("Run with the preset values only") and n.endswith(": SGD.") for n in variant_table.notes)

    figure = analysis.plot_sweep(sweep)
    axes = figure.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["Test error (%)", "Sharpness (worst_linf)"]
    assert axes[0].get_xscale() == "log"  # rho 0.01 to 0.1
    for ax in axes:
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 0 and ln.get_marker() == "o"]
        assert len(lines) == 3  # SAM, GSAM, SAM + B swept
        assert sorted(len(ln.get_xdata()) for ln in lines) == [3, 3, 3]
        flat = [ln for ln in ax.get_lines() if ln.get_marker() != "o" and list(ln.get_xdata()) == [0, 1]]
        assert len(flat) == 1  # SGD: a horizontal reference line
    sam = next(c for c in axes[0].containers if c.get_label() == "SAM").lines[0]
    assert list(sam.get_xdata()) == [0.01, 0.05, 0.1]
    assert list(sam.get_ydata()) == pytest.approx([6.5, 5.25, 6.5])


def test_cli_writes_the_sweep_view(rho_sweep: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main([str(rho_sweep), "--out", str(out), "--figures", "tables"]) == 0
    printed = capsys.readouterr().out
    assert "## Digits, ResNet-18: sweep over optimizer.rho" in printed
    assert "| 0.05 (preset) |" in printed
    sweeps = pd.read_csv(out / "sweeps.csv")
    row = sweeps[(sweeps["cell"] == "GSAM") & (sweeps["value"] == 0.1) & (sweeps["metric"] == "test_error")]
    assert row["mean"].tolist() == [6.5] and row["std"].tolist() == pytest.approx([math.sqrt(0.5)])
    figure = out / "figures" / "digits-resnet18-sweep-optimizer.rho.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # runs.csv carries the config that varies, so the rho of every row is there.
    runs = analysis.read_runs_csv(out / "runs.csv")
    assert sorted(runs["config.optimizer.rho"].unique()) == [0.0, 0.01, 0.05, 0.1]
    # One table per variant: the preset's, rho=0.01 and rho=0.1.
    assert sum(line.startswith("## Digits, ResNet-18, ") for line in printed.splitlines()) == 3
    cells = pd.read_csv(out / "cells.csv", keep_default_na=False)
    assert set(cells["variant"]) == {"", "rho=0.01", "rho=0.1"}
    tex = (out / "tables.tex").read_text()
    _latex_balanced(tex)
    assert "sweep over optimizer.rho" in tex and "0.05 (preset)" in tex


def test_two_keys_give_a_sweep_per_key_and_base(tmp_path: Path) -> None:
    grid = {
        (): 5.0,
        (("optimizer.lr", 0.05),): 6.0,
        (("optimizer.rho", 0.1),): 7.0,
        (("optimizer.lr", 0.05), ("optimizer.rho", 0.1)): 8.0,
    }
    for values, err in grid.items():
        write_run(tmp_path, optimizer="sam", schedule="constant", seed=0, test_error=err, variant_values=dict(values))
    sweeps = analysis.find_sweeps(analysis.load_runs(tmp_path))
    found = {(s.key, json.dumps(s.base)) for s in sweeps}
    assert found == {
        ("optimizer.lr", "{}"),
        ("optimizer.lr", '{"optimizer.rho": 0.1}'),
        ("optimizer.rho", "{}"),
        ("optimizer.rho", '{"optimizer.lr": 0.05}'),
    }
    at = next(s for s in sweeps if s.key == "optimizer.rho" and s.base)
    assert at.title() == "Digits, ResNet-18: sweep over optimizer.rho at optimizer.lr=0.05"
    stats = analysis.sweep_stats(at).set_index(["value", "metric"])
    assert stats.loc[("0.05", "test_error"), "mean"] == 6.0 and stats.loc[("0.1", "test_error"), "mean"] == 8.0
    assert bool(stats.loc[("0.05", "test_error"), "preset"])


def test_a_list_valued_sweep_is_categorical(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_run(tmp_path, optimizer="sgd", schedule="batch", seed=seed, test_error=4.0 + seed)
        values = {"train.increasing_batch_sizes": [32, 64, 128]}
        run = write_run(
            tmp_path, optimizer="sgd", schedule="batch", seed=seed, test_error=5.0 + seed, variant_values=values
        )
        record = json.loads((run / "result.json").read_text())
        record["config"]["train"]["increasing_batch_sizes"] = [32, 64, 128]
        (run / "result.json").write_text(json.dumps(record))
    (sweep,) = analysis.find_sweeps(analysis.load_runs(tmp_path))
    table = analysis.sweep_table(sweep)
    assert [r[1] for r in table.rows[:2]] == ["[16, 32, 64] (preset)", "[32, 64, 128]"]
    assert table.rows[0][2:] == ["4.50 ± 0.71"] and table.rows[1][2:] == ["5.50 ± 0.71"]
    figure = analysis.plot_sweep(sweep)
    ax = figure.get_axes()[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["[16, 32, 64]", "[32, 64, 128]"]
    line = next(ln for ln in ax.get_lines() if isinstance(ln, Line2D) and ln.get_marker() == "o")
    assert list(line.get_xdata()) == [0.0, 1.0]
