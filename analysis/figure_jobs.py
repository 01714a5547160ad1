"""Figures drawn side by side: each one a job, the jobs spread over a few forked processes.

The analysis of a sweep draws dozens of independent figures, and matplotlib
spends most of the analysis's time laying them out and writing each as PNG and
PDF, one core at a time. The jobs are closures over the loaded runs, so the
workers are forked (they inherit the jobs rather than receive them pickled).
Where fork is not available, or one core is, or this process runs other
threads (a fork copies only the calling thread, and a lock another thread
held, of a stream or an allocator, would stay held in the child forever),
they are drawn here one by one.
Either way a figure that cannot be drawn is a warning, never a crash, and the
paths and warnings come back in the order of the jobs.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from .figures import save_figure
from .problems import one_line


@dataclass(frozen=True)
class FigureJob:
    """One figure: where it goes (`stem`.png, `stem`.pdf), how to draw it, what a failure is called."""

    stem: Path
    draw: Callable[[], Figure]
    failure: str


# The jobs of the render in progress: set before the workers fork, read by them by index.
_PENDING: Sequence[FigureJob] = ()


def _render(index: int) -> tuple[list[Path], str | None]:
    job = _PENDING[index]
    try:
        return save_figure(job.draw(), job.stem), None
    except Exception as exc:  # a plotting bug must not cost the other figures or the tables
        return [], f"{job.failure}: {one_line(exc)}"


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def render_figures(jobs: Sequence[FigureJob], workers: int | None = None) -> tuple[list[Path], list[str]]:
    """Draw and save every job, in up to `workers` processes (default: the available cores)."""
    global _PENDING
    workers = min(available_cores() if workers is None else workers, len(jobs))
    _PENDING = jobs
    try:
        if workers < 2 or "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
            results = [_render(index) for index in range(len(jobs))]
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                results = list(pool.map(_render, range(len(jobs))))
    finally:
        _PENDING = ()
    written = [path for paths, _ in results for path in paths]
    return written, [warning for _, warning in results if warning is not None]
