"""What the launching process shows while the cells of a sweep run: a live table, or one line per event.

Hydra's launchers block until every job has ended (basic: in this process,
local: subprocesses, SLURM: jobs on other nodes), so the view runs in a
background thread of the launching process and reads each cell's state from
its files the way `runner.status` does (docs/status.md). It works the same for
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

from runner import status as st

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
    """runner.status's scheduler query, answered from the last answer for a while."""

    def __init__(self, every: float) -> None:
        self.every, self.asked_at, self.answer = every, -float("inf"), None

    def __call__(self, job_ids: Sequence[str]) -> dict[str, str] | None:
        now = time.monotonic()
        known = self.answer is not None and set(job_ids) <= set(self.answer)
        if now - self.asked_at >= self.every or not known:
            self.answer, self.asked_at = st.query_scheduler(job_ids), now
        return self.answer


def launched_cells(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The cells this launch runs (plan action `launch`); every cell found when there is no plan."""
    if status.get("plan") is None:
        return list(status["cells"])
    return [c for c in status["cells"] if c.get("in_plan") and c.get("action") == "launch"]


# ---------------------------------------------------------------- one line per event


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _end_key(cell: dict[str, Any]) -> tuple[str, float | None]:
    """A cell's end as (state, when its files say so): a cell that ends twice ends twice."""
    run_dir = Path(cell["run_dir"])
    names = [st.RESULT_FILE] if cell["state"] in st.RESULT_STATES else [st.METRICS_FILE, st.CHECKPOINT_FILE]
    times = [st._mtime(run_dir / name) for name in names]
    return cell["state"], max((t for t in times if t is not None), default=None)


class EventLog:
    """Turns successive snapshots into lines: each cell's start, epochs, and end, each said once."""

    def __init__(self) -> None:
        self._seen: dict[str, dict[str, Any]] = {}

    def start(self, cells: list[dict[str, Any]]) -> None:
        """What the cells held before this launch ran them (resumable epochs, an earlier end): not news."""
        for cell in cells:
            ended = cell["state"] not in st.ACTIVE_STATES
            self._seen[cell["cell"]] = {
                "started": False,
                "epoch": cell["epoch"] or 0,
                "end": _end_key(cell) if ended else None,
            }

    def lines(self, cells: list[dict[str, Any]], final: bool = False) -> list[str]:
        """The events since the last snapshot, in cell order; epochs from metrics.csv, so none is skipped.

        `final`: the launcher has returned, so a cell that is not done has stopped.
        """
        out: list[str] = []
        for cell in cells:
            seen = self._seen.setdefault(cell["cell"], {"started": False, "epoch": 0, "end": None})
            out += [f"{cell['cell']}: {what}" for what in self._cell_events(cell, seen, final)]
        return out

    def _cell_events(self, cell: dict[str, Any], seen: dict[str, Any], final: bool) -> list[str]:
        state, epoch, epochs = cell["state"], cell["epoch"] or 0, cell["epochs"] or "?"
        ended = state not in st.ACTIVE_STATES
        end = _end_key(cell) if ended else None
        events: list[str] = []
        if state == "pending":
            if seen["started"] and seen["end"] != "pending":
                events.append("pending again (requeued); it resumes from its checkpoint")
                seen["end"] = "pending"
            return events
        untouched = ended and end == seen["end"] and epoch == seen["epoch"]
        if not seen["started"] and untouched:
            return events  # as it was before the launch: nobody has picked it up yet
        if state == "unfinished" and not final and (untouched or end is None or end[1] is None):
            # The job has begun (its outcome record says so) and holds no lock yet: starting, not stopped.
            ended = False
        if not seen["started"]:
            seen["started"] = True
            if state == "busy":
                events.append("busy: another process trains it")
            else:
                events.append(f"started (from epoch {seen['epoch']}/{epochs})" if seen["epoch"] else "started")
        elif seen["end"] == "pending" and not ended:
            events.append("running again")
        if not ended:
            seen["end"] = None
        if epoch > seen["epoch"]:
            rows = st.read_metrics(Path(cell["run_dir"]))
            for k in range(seen["epoch"] + 1, epoch + 1):
                row = rows[k - 1] if k - 1 < len(rows) else {}
                tested = f", test err {_pct(row.get('test_error'))}" if row.get("test_error") is not None else ""
                events.append(f"epoch {k}/{epochs} done (train err {_pct(row.get('train_error'))}{tested})")
            seen["epoch"] = epoch
        if ended and end != seen["end"]:
            seen["end"] = end
            events.append(_end_event(cell))
        return events


def _end_event(cell: dict[str, Any]) -> str:
    state, log = cell["state"], cell.get("log") or str(Path(cell["run_dir"]) / "run.log")
    if state == "completed":
        return f"completed (test err {_pct(cell['test_error'])}, {st.format_duration(cell['wall_time_s'])})"
    if state == "unfinished":
        slurm = f", SLURM {cell['scheduler_state']}" if cell.get("scheduler_state") else ""
        return f"stopped before the end (unfinished{slurm}; a relaunch resumes it); log: {log}"
    return f"{state.upper()}: {cell.get('error') or 'no error message'}; log: {log}"


# ---------------------------------------------------------------- the table


def render_table(status: dict[str, Any], width: int, height: int, final: bool = False) -> list[str]:
    """The compact table of the launched cells, each line shorter than `width`, at most `height` lines.

    Until the launcher returns (`final`), a cell whose job has begun but holds no lock yet is `starting`.
    """
    cells = launched_cells(status)
    names, shared = st.short_names([c["cell"] for c in cells])
    rows = []
    for c, name in zip(cells, names):
        epoch = "-" if c["epoch"] is None and c["epochs"] is None else f"{c['epoch'] or 0}/{c['epochs'] or '?'}"
        eta = st.format_duration(c["eta_s"]) if c["state"] in st.ACTIVE_STATES else "-"
        eta = "~" + eta if c["eta_estimated"] and c["eta_s"] is not None else eta
        wall = st.format_duration(c["wall_time_s"])
        starting = not final and c["state"] == "unfinished" and _end_key(c)[1] is None
        rows.append((name, "starting" if starting else c["state"], epoch, _pct(c["test_error"]), wall, eta))
    head = ("cell", "state", "epoch", "test err", "wall", "eta")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    widths[0] = max(min(widths[0], width - 1 - sum(widths[1:]) - 2 * (len(head) - 1)), 12)

    def line(values: tuple[str, ...]) -> str:
        parts = [st._shorten(values[0], widths[0]).ljust(widths[0]), values[1].ljust(widths[1])]
        parts += [v.rjust(w) for v, w in zip(values[2:], widths[2:])]
        return "  ".join(parts).rstrip()

    counts = {state: sum(c["state"] == state for c in cells) for state in st.STATES}
    tally = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    eta = status["eta_s"]
    when = "" if not eta else time.strftime(" (about %H:%M)", time.localtime(status["generated_at"] + eta))
    top = f"{len(cells)} cell{'s' if len(cells) != 1 else ''}: {tally}; ETA {st.format_duration(eta)}{when}"
    footer = [  # the last errors; the summary at the end lists every one with its whole log path
        _error_line(c, name, width - 1) for c, name in zip(cells, names) if c["state"] in ("failed", "diverged")
    ][-3:]
    lines = [top] + ([f"cells: {shared}"] if shared else []) + [line(head)]
    room = max(height - len(lines) - len(footer) - 1, 1)
    shown = [line(r) for r in rows]
    if len(shown) > room:  # the running and failed rows first, then the rest in order
        order = sorted(range(len(rows)), key=lambda i: (rows[i][1] not in ("running", "busy", "failed"), i))
        kept = sorted(order[: room - 1])
        shown = [shown[i] for i in kept] + [f"... and {len(rows) - len(kept)} more"]
    return [st._shorten(text, width - 1) for text in lines + shown + footer]


def _error_line(cell: dict[str, Any], name: str, width: int) -> str:
    """`failed <cell>: <error> (log: <path>)` in `width` columns: the log path gives way first, from its left."""
    text = f"{cell['state']} {name}: {cell['error'] or 'no error message'}"
    log = str(cell.get("log") or Path(cell["run_dir"]) / "run.log")
    room = width - len(text) - len(" (log: ...)")
    if room >= len(log):
        return f"{text} (log: {log})"
    if room >= 12:
        return f"{text} (log: ...{log[len(log) - room :]})"
    return st._shorten(text, width)


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
