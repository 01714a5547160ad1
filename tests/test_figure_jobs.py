"""Figures drawn in forked workers: the same files, in the same order, as drawn one by one."""

from __future__ import annotations

from functools import partial

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.figure_jobs import FigureJob, render_figures


def _line(slope: float) -> Figure:
    figure = Figure(figsize=(2, 2))
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1, 2], [0, slope, 2 * slope])
    return figure


def _broken() -> Figure:
    raise ValueError("no data\nsecond line")


def _jobs(folder):
    jobs = [FigureJob(folder / f"line{k}", partial(_line, float(k)), f"line {k}") for k in range(4)]
    jobs.insert(2, FigureJob(folder / "broken", _broken, "figure for the broken table"))
    return jobs


def test_workers_write_what_one_process_writes_and_a_failure_is_one_warning(tmp_path):
    serial, serial_warnings = render_figures(_jobs(tmp_path / "serial"), workers=1)
    forked, forked_warnings = render_figures(_jobs(tmp_path / "forked"), workers=2)
    assert [p.relative_to(tmp_path / "serial") for p in serial] == [p.relative_to(tmp_path / "forked") for p in forked]
    assert [p.name for p in forked][:4] == ["line0.png", "line0.pdf", "line1.png", "line1.pdf"]
    for a, b in zip(serial, forked, strict=True):
        if a.suffix == ".png":  # PDFs carry their creation time; the pixels must agree
            assert a.read_bytes() == b.read_bytes()
    assert serial_warnings == forked_warnings == ["figure for the broken table: no data"]
    assert not (tmp_path / "forked" / "broken.png").exists()
