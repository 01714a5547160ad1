"""What the live view says: one line per cell event, or a compact table, from runner.sweep.status snapshots.

Pure functions of the status (`runner.sweep.status.collect`) and the cells' files;
runner/sweep/live.py decides when to look and where to write.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runner.folder import CHECKPOINT_FILE, JOB_CODES, METRICS_FILE, RECORD_STATUSES, RESULT_FILE, RUN_LOG
from runner.sweep import status as st


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
    names = [RESULT_FILE] if cell["state"] in RECORD_STATUSES else [METRICS_FILE, CHECKPOINT_FILE]
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
    state, log = cell["state"], cell.get("log") or str(Path(cell["run_dir"]) / RUN_LOG)
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
    jobs = any(c["job_id"] for c in cells)  # SLURM: the job of each cell and its state (squeue's codes)
    rows = []
    for c, name in zip(cells, names):
        epoch = "-" if c["epoch"] is None and c["epochs"] is None else f"{c['epoch'] or 0}/{c['epochs'] or '?'}"
        eta = st.format_duration(c["eta_s"]) if c["state"] in st.ACTIVE_STATES else "-"
        eta = "~" + eta if c["eta_estimated"] and c["eta_s"] is not None else eta
        wall = st.format_duration(c["wall_time_s"])
        starting = not final and c["state"] == "unfinished" and _end_key(c)[1] is None
        row = (name, "starting" if starting else c["state"], epoch, _pct(c["test_error"]), wall, eta)
        if jobs:
            code = JOB_CODES.get(c["scheduler_state"] or "", c["scheduler_state"] or "")
            row += (f"{c['job_id'] or '-'} {code}".rstrip(),)
        rows.append(row)
    head = ("cell", "state", "epoch", "test err", "wall", "eta") + (("job",) if jobs else ())
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    widths[0] = max(min(widths[0], width - 1 - sum(widths[1:]) - 2 * (len(head) - 1)), 12)

    def line(values: tuple[str, ...]) -> str:
        parts = [st._shorten(values[0], widths[0]).ljust(widths[0]), values[1].ljust(widths[1])]
        parts += [v.rjust(w) for v, w in zip(values[2:6], widths[2:6])]
        parts += [v.ljust(w) for v, w in zip(values[6:], widths[6:])]  # the job column
        return "  ".join(parts).rstrip()

    counts = {state: sum(c["state"] == state for c in cells) for state in st.STATES}
    tally = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    top = f"{len(cells)} cell{'s' if len(cells) != 1 else ''}: {tally}"
    if any(c["state"] in st.ACTIVE_STATES for c in cells):
        eta = status["eta_s"]
        when = "" if not eta else time.strftime(" (about %H:%M)", time.localtime(status["generated_at"] + eta))
        top += f"; ETA {st.format_duration(eta)}{when}"
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
    log = str(cell.get("log") or Path(cell["run_dir"]) / RUN_LOG)
    room = width - len(text) - len(" (log: ...)")
    if room >= len(log):
        return f"{text} (log: {log})"
    if room >= 12:
        return f"{text} (log: ...{log[len(log) - room :]})"
    return st._shorten(text, width)
