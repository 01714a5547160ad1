"""Where `python -m analysis` writes: FOLDER/analysis, or a writable place when FOLDER is read-only.

Results are often read where someone else wrote them: a labmate's folder on
shared storage, a read-only snapshot, an archive mounted read-only. The
default output folder sits inside the results folder, so there the analysis
falls back to `./analysis-<folder name>` in the working directory, then to
the same name in the temporary directory, and says in one line where it
wrote. An explicit `--out` is never replaced: if it cannot be written, that
is the error. Writability is probed by writing (and removing) a file, since
permission bits lie for root and on network file systems.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


class OutputError(OSError):
    """No folder to write the analysis to; the message is one line for the user."""


def cannot_write(folder: Path) -> str | None:
    """Why files cannot be written into `folder` (creating it if needed), or None when they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def holds_runs(folder: Path) -> bool:
    """Whether a `result.json` lies in `folder` or below (the walk stops at the first; unreadable parts skipped)."""
    for _, _, files in os.walk(folder):
        if "result.json" in files:
            return True
    return False


def fallback_folders(folder: Path) -> list[Path]:
    """`./analysis-<name>` in the working directory, then in the temporary directory."""
    name = f"analysis-{folder.resolve().name or 'results'}"
    return [Path.cwd() / name, Path(tempfile.gettempdir()) / name]


def output_folder(
    folder: Path, requested: Path | None, fallbacks: Sequence[Path] | None = None
) -> tuple[Path, str | None]:
    """(folder to write to, a note saying why it is not the default or None); raises `OutputError`.

    `requested` is `--out`; `fallbacks` default to `fallback_folders(folder)`. A folder that
    holds no run (`python -m analysis /etc`) is refused before anything is written anywhere.
    """
    if not holds_runs(folder):
        raise OutputError(f"{folder} holds no runs (no result.json in it or below); nothing was written")
    if requested is not None:
        problem = cannot_write(requested)
        if problem:
            raise OutputError(f"cannot write to --out {str(requested)!r}: {problem}")
        return requested, None
    default = folder / "analysis"
    problem = cannot_write(default)
    if problem is None:
        return default, None
    tried = [f"{default} ({problem})"]
    for candidate in fallbacks if fallbacks is not None else fallback_folders(folder):
        reason = cannot_write(candidate)
        if reason is None:
            return candidate, f"note: cannot write to {default} ({problem}); writing to {candidate} instead"
        tried.append(f"{candidate} ({reason})")
    raise OutputError(f"cannot write the analysis to {'; nor to '.join(tried)}; pass --out DIR")
