"""The summary of records that cannot enter the tables, and why.

A sweep of hundreds of runs always has a few that failed, diverged, were
killed while writing, or come from an older version of the runner. The
analysis never stops on them: each becomes a `Problem`, the tables are built
from the rest, and the summary says how many were left out, where, and why,
so a reader knows what stands behind (and what is missing from) each number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# Kinds, in the order the summary lists them: (one, several).
KINDS = {
    "failed": ("failed run", "failed runs"),
    "diverged": ("diverged run", "diverged runs"),
    "corrupt": ("unreadable or half-written result.json", "unreadable or half-written result.json files"),
    "schema": ("record of an older or unknown schema_version", "records of an older or unknown schema_version"),
    "invalid": ("record with missing or malformed fields", "records with missing or malformed fields"),
    "incomplete": (
        "run folder without a result.json (still running, killed, or its sweep stopped)",
        "run folders without a result.json (still running, killed, or their sweep stopped)",
    ),
    "duplicate": ("duplicate record of the same run", "duplicate records of the same run"),
}


@dataclass(frozen=True)
class Problem:
    """One record (or run folder) left out of the tables."""

    path: str  # run folder or file, relative to the analysed folder
    kind: str  # a key of KINDS
    reason: str  # one line a person can act on

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


def one_line(text: object, limit: int = 160) -> str:
    """First line of an error message, shortened: tracebacks do not belong in a summary."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    # The last line of a traceback names the exception; prefer it when there are many.
    line = lines[-1] if len(lines) > 1 and lines[0].startswith("Traceback") else (lines[0] if lines else "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def summarize_problems(problems: list[Problem], *, max_per_kind: int = 10) -> str:
    """Plain-text summary (valid Markdown): counts per kind, then the folders and reasons.

    At most `max_per_kind` folders are listed per kind, so a sweep with
    thousands of failures still gives a readable terminal.
    """
    if not problems:
        return "All records were read; none were left out."
    counts = Counter(p.kind for p in problems)
    kinds = [k for k in KINDS if counts[k]] + sorted(k for k in counts if k not in KINDS)
    total = len(problems)
    head = f"{total} record{'s' if total != 1 else ''} left out of the tables:"
    lines = [head, ""]
    for kind in kinds:
        one, several = KINDS.get(kind, (kind, kind))
        lines.append(f"- {counts[kind]} {one if counts[kind] == 1 else several}")
        listed = [p for p in problems if p.kind == kind]
        for problem in listed[:max_per_kind]:
            lines.append(f"  - {problem.line()}")
        if len(listed) > max_per_kind:
            lines.append(f"  - ... and {len(listed) - max_per_kind} more")
    return "\n".join(lines)
