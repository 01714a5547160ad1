"""Figures drawn in forked workers: the same files, in the same order, as drawn one by one."""

from __future__ import annotations

import os
import threading
from functools import partial
from pathlib import Path

from conftest import json_of_a_fresh_process
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.figure_jobs import FigureJob, render_figures


def _line(slope: float, pids: Path) -> Figure:
    with open(pids, "a", encoding="utf-8") as handle:  # which process drew it
        handle.write(f"{os.getpid()}\n")
    figure = Figure(figsize=(2, 2))
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1, 2], [0, slope, 2 * slope])
    return figure


def _broken() -> Figure:
    raise ValueError("no data\nsecond line")


def jobs(folder: Path) -> list[FigureJob]:
    folder.mkdir(parents=True, exist_ok=True)
    pids = folder / "pids.txt"
    drawn = [FigureJob(folder / f"line{k}", partial(_line, float(k), pids), f"line {k}") for k in range(4)]
    drawn.insert(2, FigureJob(folder / "broken", _broken, "figure for the broken table"))
    return drawn


def render_in_a_fresh_process(folder: Path, workers: int) -> dict:
    """render_figures in a process of its own, with no thread but its main one (pytest's workers have more)."""
    return json_of_a_fresh_process(
        "import json, sys; from pathlib import Path; sys.path.insert(0, 'tests'); "
        "from test_figure_jobs import jobs; from analysis.figure_jobs import render_figures; "
        f"written, warnings = render_figures(jobs(Path({str(folder)!r})), workers={workers}); "
        "print(json.dumps({'written': [str(p) for p in written], 'warnings': warnings}))"
    )


def test_workers_write_what_one_process_writes_and_a_failure_is_one_warning(tmp_path):
    serial = render_in_a_fresh_process(tmp_path / "serial", workers=1)
    forked = render_in_a_fresh_process(tmp_path / "forked", workers=2)
    names = [Path(p).relative_to(tmp_path / "forked") for p in forked["written"]]
    assert names == [Path(p).relative_to(tmp_path / "serial") for p in serial["written"]]
    assert [n.name for n in names][:4] == ["line0.png", "line0.pdf", "line1.png", "line1.pdf"]
    for a, b in zip(serial["written"], forked["written"], strict=True):
        if a.endswith(".png"):  # PDFs carry their creation time; the pixels must agree
            assert Path(a).read_bytes() == Path(b).read_bytes()
    assert serial["warnings"] == forked["warnings"] == ["figure for the broken table: no data"]
    assert not (tmp_path / "forked" / "broken.png").exists()
    # The forked figures were drawn by other processes than the serial ones, two of them.
    serial_pids = set((tmp_path / "serial" / "pids.txt").read_text().split())
    forked_pids = set((tmp_path / "forked" / "pids.txt").read_text().split())
    assert len(serial_pids) == 1 and len(forked_pids) == 2 and not serial_pids & forked_pids


def test_a_process_with_other_threads_draws_in_itself(tmp_path):
    """A fork would copy a lock another thread holds; with a second thread running nothing is forked."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        written, warnings = render_figures(jobs(tmp_path), workers=2)
    finally:
        stop.set()
        other.join()
    assert len(written) == 8 and warnings == ["figure for the broken table: no data"]
    assert (tmp_path / "pids.txt").read_text().split() == [str(os.getpid())] * 4
