"""Paper-style curves: the nine cells overlaid per table, mean and band over seeds, from metrics.csv files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

import analysis
from analysis.cli import main

OPTIMIZERS = ("sgd", "sam", "gsam")
SCHEDULES = ("constant", "batch", "cosine")
HEADER = "epoch,stage,batch_size,lr,rho,train_loss,train_error,test_loss,test_error,grad_norm,wall_time_s\n"
EPOCHS = 4


def train_loss(opt: int, sched: int, seed: int, epoch: int) -> float:
    """Known values: each cell and seed its own curve, decreasing in the epoch."""
    return (1.0 + opt + 3 * sched + seed / 10) / (epoch + 1)


def write_grid(root: Path, seeds: tuple[int, ...], *, grad_norm: bool = True) -> Path:
    for i, opt in enumerate(OPTIMIZERS):
        for j, sched in enumerate(SCHEDULES):
            for seed in seeds:
                run_dir = root / "curves" / "digits-resnet18" / f"{opt}-{sched}" / f"seed={seed}"
                run_dir.mkdir(parents=True)
                record = {
                    "schema_version": 2,
                    "status": "completed",
                    "experiment": "curves",
                    "dataset": "digits",
                    "model": "resnet18",
                    "optimizer": opt,
                    "schedule": sched,
                    "seed": seed,
                    "variant": "",
                    "variant_values": {},
                    "test_error": 5.0,
                    "sharpness": {},
                    "config": {},
                }
                (run_dir / "result.json").write_text(json.dumps(record))
                lines = []
                for epoch in range(EPOCHS):
                    # Test error only every other epoch (eval_every=2) and always at the last: blanks between.
                    evaluated = epoch % 2 == 1 or epoch == EPOCHS - 1
                    test_error = f"{50.0 - 10 * epoch + seed:.1f}" if evaluated else ""
                    norm = f"{2.0**-epoch * (1 + seed):.4f}" if grad_norm else ""
                    lines.append(
                        f"{epoch},0,16,0.1,0.05,{train_loss(i, j, seed, epoch)},10.0,0.5,{test_error},{norm},1.0\n"
                    )
                (run_dir / "metrics.csv").write_text(HEADER + "".join(lines))
    return root


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("seeds", [(0,), (0, 1, 2)])
def test_overlay_of_nine_cells(tmp_path: Path, seeds: tuple[int, ...]) -> None:
    runs = analysis.load_runs(write_grid(tmp_path, seeds))
    figure = analysis.plot_grid_curves(runs, "digits", "resnet18")
    axes = figure.get_axes()
    assert [ax.get_title() for ax in axes] == ["Training loss", "Test error (%)", "Full-gradient norm"]
    for ax in axes:
        assert len(ax.get_lines()) == 9  # one mean line per cell
        bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert len(bands) == (9 if len(seeds) > 1 else 0)  # a band only where there is a spread
    assert axes[0].get_yscale() == "log" and axes[1].get_yscale() == "linear"
    # Colour = optimizer, line style = schedule, in the paper's column order.
    lines = axes[0].get_lines()
    assert [ln.get_color() for ln in lines] == ["C0", "C1", "C2"] * 3
    assert [ln.get_linestyle() for ln in lines] == ["-"] * 3 + ["--"] * 3 + [":"] * 3
    # SAM + B (optimizer 1, schedule 1): the mean over seeds per epoch.
    sam_b = lines[4]
    expected = [np.mean([train_loss(1, 1, s, e) for s in seeds]) for e in range(EPOCHS)]
    assert list(sam_b.get_xdata()) == list(range(EPOCHS))
    assert np.allclose(sam_b.get_ydata(), expected)
    # Test error was evaluated at epochs 1 and 3 only: no point at the blank epochs.
    error = axes[1].get_lines()[0]
    assert list(error.get_xdata()) == [1, 3]
    assert np.allclose(error.get_ydata(), [40.0 + np.mean(seeds), 20.0 + np.mean(seeds)])
    if len(seeds) > 1:  # the band of SGD's test error spans the seeds: min and max
        band = [c for c in axes[1].collections if isinstance(c, PolyCollection)][0]
        ys = band.get_paths()[0].vertices[:, 1]
        assert ys.min() == pytest.approx(20.0) and ys.max() == pytest.approx(42.0)
    title = figure._suptitle.get_text()
    assert ("mean over 3 seeds, band: min to max" in title) == (len(seeds) == 3)
    assert ("one seed" in title) == (len(seeds) == 1)
    paths = analysis.save_figure(figure, tmp_path / "curves", ("png",))
    assert _is_png(paths[0])


def test_std_band_and_no_gradient_norm_panel(tmp_path: Path) -> None:
    runs = analysis.load_runs(write_grid(tmp_path, (0, 1), grad_norm=False))
    figure = analysis.plot_grid_curves(runs, "digits", "resnet18", band="std")
    assert [ax.get_title() for ax in figure.get_axes()] == ["Training loss", "Test error (%)"]
    band = [c for c in figure.get_axes()[1].collections if isinstance(c, PolyCollection)][0]
    ys = band.get_paths()[0].vertices[:, 1]  # SGD: 40 and 41 at epoch 1, 20 and 21 at epoch 3; std 0.707
    assert ys.min() == pytest.approx(20.5 - np.sqrt(0.5)) and ys.max() == pytest.approx(40.5 + np.sqrt(0.5))
    with pytest.raises(ValueError, match="band 'iqr'"):
        analysis.plot_grid_curves(runs, "digits", "resnet18", band="iqr")


def test_unreadable_metrics_are_reported_and_missing_ones_skipped(tmp_path: Path) -> None:
    root = write_grid(tmp_path, (0, 1))
    cell = root / "curves" / "digits-resnet18" / "sam-batch"
    (cell / "seed=0" / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage")
    (cell / "seed=1" / "metrics.csv").unlink()
    runs = analysis.load_runs(root)
    frame, problems = analysis.curve_frame(runs)
    assert set(frame["seed"]) == {0, 1} and len(frame) == (18 - 2) * EPOCHS
    assert len(problems) == 1 and "sam-batch/seed=0/metrics.csv" in problems[0]
    figure = analysis.plot_grid_curves(runs, "digits", "resnet18", frame=frame)
    assert len(figure.get_axes()[0].get_lines()) == 8  # SAM + B has no curve left
    for path in root.rglob("metrics.csv"):
        path.unlink()
    with pytest.raises(ValueError, match="no run of Digits, ResNet-18 has a readable metrics.csv"):
        analysis.plot_grid_curves(analysis.load_runs(root), "digits", "resnet18")


def test_cli_writes_the_overlay_next_to_the_bars(tmp_path: Path, capsys) -> None:
    root = write_grid(tmp_path / "results", (0, 1, 2))
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--figures", "tables", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    figures = out / "figures"
    assert _is_png(figures / "digits-resnet18-curves.png") and _is_png(figures / "digits-resnet18.png")
    assert (figures / "digits-resnet18-curves.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (figures / "curves").exists()  # per-run curves only with --figures all


def test_an_optimizer_has_one_colour_in_bars_and_curves(tmp_path: Path) -> None:
    """A folder with SAM and GSAM only: the bars take the colours the curves and sweep views give them."""
    from matplotlib.colors import to_hex

    from analysis.figures import cell_style, plot_table

    root = write_grid(tmp_path, (0,))
    for folder in (root / "curves" / "digits-resnet18").glob("sgd-*"):
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        folder.rmdir()
    runs = analysis.load_runs(root)
    figure = plot_table(runs, "digits", "resnet18", experiment="curves")
    bars = {to_hex(patch.get_facecolor()) for patch in figure.axes[0].patches}
    assert bars == {to_hex(cell_style(opt, "constant")["color"]) for opt in ("sam", "gsam")}
