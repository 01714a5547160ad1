"""What the launching process shows while the cells of a sweep run: a live table, or one line per event.

Hydra's launchers block until every job has ended (basic: in this process,
local: subprocesses, SLURM: jobs on other nodes), so the view runs in a
background thread of the launching process and reads each cell's state from
its files the way `runner.sweep.status` does (docs/status.md). It works the same for
every launcher and never talks to the jobs.

- On a terminal, a compact table (cell, state, epoch k/N, test error, wall
  time, ETA, the last errors with their logs) is redrawn in place. Whatever
  else this process prints (Hydra's launch lines, the log of a cell trained in
  this process) is written above the table, which is then drawn again.
- Otherwise (a pipe, a file, a batch job) it prints one plain line per cell
  per event: started, each epoch done, completed, failed or diverged with its
  log, stopped before the end.

While the view is on, this process's stdout and stderr are not terminals to
whoever writes to them, so a cell trained here (the basic launcher) draws no
progress bar; its log files get every line as before.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from runner.sweep import status as st
from runner.sweep.live_text import EventLog, launched_cells, render_table

MODES = ("auto", "table", "lines", "off")
# squeue/sacct are asked at most this often, however often the files are read.
SCHEDULER_EVERY_S = 15.0


def resolve_mode(mode: str, stream: TextIO) -> str:
    """`auto` is a table on a terminal (not TERM=dumb), lines anywhere else; ValueError names a bad mode."""
    if mode not in MODES:
        raise ValueError(f"hydra.sweeper.live={mode!r} is not one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return "table" if terminal and os.environ.get("TERM", "") != "dumb" else "lines"


class _CachedScheduler:
    """runner.sweep.status's scheduler query, answered from the last answer for a while."""

    def __init__(self, every: float) -> None:
        self.every, self.asked_at, self.answer = every, -float("inf"), None

    def forget(self) -> None:
        self.asked_at, self.answer = -float("inf"), None

    def __call__(self, job_ids: Sequence[str]) -> dict[str, str] | None:
        now = time.monotonic()
        known = self.answer is not None and set(job_ids) <= set(self.answer)
        if now - self.asked_at >= self.every or not known:
            self.answer, self.asked_at = st.query_scheduler(job_ids), now
        return self.answer


# ---------------------------------------------------------------- the view


class _Stream(io.TextIOBase):
    """Stands in for stdout or stderr while the view is on: not a terminal, and (table) writes above the table."""

    def __init__(self, view: LiveView, real: TextIO) -> None:
        self._view, self._real = view, real

    def write(self, text: str) -> int:
        self._view._write(self._real, text)
        return len(text)

    def flush(self) -> None:
        self._real.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")


class LiveView:
    """Context manager: shows the sweep in `sweep_dir` while the block runs, every `every` seconds."""

    def __init__(self, sweep_dir: str | os.PathLike, mode: str = "auto", every: float = 2.0) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.mode = resolve_mode(mode, sys.stdout)
        self.every = every
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events = EventLog()
        self._scheduler = _CachedScheduler(max(SCHEDULER_EVERY_S, every))
        self._table: list[str] = []
        self._drawn = 0
        self._partial: dict[int, str] = {}
        self._saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> LiveView:
        if self.mode == "off":
            return self
        self._out, self._err = sys.stdout, sys.stderr
        try:
            self._events.start(launched_cells(st.collect(self.sweep_dir, scheduler=self._scheduler)))
        except Exception:  # nothing readable yet: every cell is news
            pass
        if self.mode == "lines":
            self._out.write(f"[{time.strftime('%H:%M:%S')}] one line per cell event (hydra.sweeper.live=off: none)\n")
        self._swap_streams()
        self._thread = threading.Thread(target=self._run, name="live-view", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.mode == "off" or self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=60)
        self._scheduler.forget()  # every job has ended: ask the scheduler afresh
        self._poll(final=True)  # the last state: every event said, the final table left on screen
        with self._lock:
            for real, text in list(self._partial.items()):
                stream = self._out if real == id(self._out) else self._err
                self._above(stream, text + "\n")
            self._partial.clear()
            self._drawn = 0  # the final table stays
            self._restore_streams()

    def _swap_streams(self) -> None:
        """Point stdout, stderr and the log handlers that write to them at stand-ins."""
        out, err = _Stream(self, self._out), _Stream(self, self._err)
        self._saved = [(sys, ("stdout", sys.stdout)), (sys, ("stderr", sys.stderr))]
        sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
        for handler in _stream_handlers():
            if handler.stream in (self._out, self._err):
                self._saved.append((handler, handler.stream))
                handler.setStream(out if handler.stream is self._out else err)

    def _restore_streams(self) -> None:
        for owner, saved in self._saved:
            if owner is sys:
                setattr(sys, *saved)
            else:
                owner.setStream(saved)
        self._saved = []

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._poll()

    def _poll(self, final: bool = False) -> None:
        try:
            status = st.collect(self.sweep_dir, scheduler=self._scheduler)
        except Exception:  # a view must never stop the sweep: a half-written folder is read next time
            return
        with self._lock:
            if self.mode == "table":
                size = os.get_terminal_size(self._out.fileno()) if self._out.isatty() else os.terminal_size((100, 40))
                self._table = render_table(status, size.columns, size.lines, final=final)
                self._erase()
                self._draw()
            else:
                stamp = time.strftime("%H:%M:%S")
                for text in self._events.lines(launched_cells(status), final=final):
                    self._out.write(f"[{stamp}] {text}\n")
                self._out.flush()

    def _write(self, real: TextIO, text: str) -> None:
        """What the process prints: whole lines go out (above the table), a partial line waits for its end."""
        if self.mode != "table" or self._stop.is_set() and not self._saved:
            real.write(text)
            return
        with self._lock:
            pending = self._partial.pop(id(real), "") + text
            head, newline, rest = pending.rpartition("\n")
            if rest:
                self._partial[id(real)] = rest
            if newline:
                self._above(real, head + "\n")

    def _above(self, real: TextIO, text: str) -> None:
        self._erase()
        real.write(text)
        real.flush()
        self._draw()

    def _erase(self) -> None:
        if self._drawn:
            self._out.write(f"\r\033[{self._drawn}A\033[J")
            self._drawn = 0

    def _draw(self) -> None:
        if self._table:
            self._out.write("\n".join(self._table) + "\n")
            self._drawn = len(self._table)
        self._out.flush()


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    return [h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler]
