"""What stopped a command, in one line: Hydra's composition errors and the machine's faults.

Hydra reports an unknown key, an unknown option or an override it cannot parse
in several lines (with the options, a grammar link and a hint about
`HYDRA_FULL_ERROR`); a full disk or a read-only folder surfaces as whatever
library was writing (torch's zip writer, Python's logging). The entry points
(`runner.sweep.launch.run_app`) turn each into one `error:` line that names the
value or the file and what to do, and into an exit status: 2 for a command
that cannot work as written, 1 for a fault of the machine.
"""

from __future__ import annotations

import difflib
import errno
import os
import re

# errno values that mean "the disk cannot take this file" and "this folder cannot be written".
NO_SPACE = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def suggestion(key: str, known: list[str]) -> str:
    """`; did you mean x?` for the known key closest to `key` (same last part preferred), else ''."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if not close:
        leaf = key.rpartition(".")[2]
        by_leaf = {name.rpartition(".")[2]: name for name in known}
        leaves = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.8)
        close = [by_leaf[leaves[0]]] if leaves and len(leaf) > 2 else []
    return f"; did you mean {close[0]}?" if close else ""


def _schema_keys() -> list[str]:
    from runner.sweep.validate import KEYS

    return list(KEYS)


def _collapse(text: str) -> str:
    """Hydra's multi-line message as one line: details dropped, option lists joined by commas."""
    parts: list[str] = []
    options: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Config search path"):
            break  # where Hydra looked: the option list before it says what exists
        if not line or line.startswith(("full_key:", "object_type=", "See https://", "Set the environment")):
            continue
        if raw.startswith("\t") and "=" not in line:  # an indented option of "Available options in ..."
            options.append(line)
            continue
        if options:
            parts[-1] += " " + ", ".join(options)
            options = []
        parts.append(line.rstrip("."))
    if options and parts:
        parts[-1] += " " + ", ".join(options)
    return "; ".join(parts)


def _hydra_line(error: BaseException) -> str:
    unknown = re.match(r"Could not override '([\w.]+)'", str(error))
    if unknown:
        key = unknown.group(1)
        return (
            f"{key} is not a key of the config{suggestion(key, _schema_keys())} (python launch.py --cfg job lists them)"
        )
    line = _collapse(str(error))
    cause = error.__cause__
    if cause is not None and str(cause).strip():
        cause_line = _collapse(str(cause))
        if cause_line and cause_line not in line:
            line = f"{line} ({cause_line})"
    if "Lexer" in type(error).__name__ or "override_grammar" in str(error) or "no viable alternative" in line:
        line += " (an override is key=value; quote values with spaces, newlines or YAML tags)"
    return line


def io_line(error: OSError, doing: str = "write") -> str:
    """One line for a failed read or write, naming the file and the remedy."""
    where = error.filename or "a file"
    reason = error.strerror or str(error)
    if error.errno in NO_SPACE:
        return (
            f"cannot {doing} {where}: {reason}; free space on that disk, or set results_root= to a folder on "
            f"another one, then rerun the same command to resume"
        )
    if error.errno in NOT_WRITABLE:
        return (
            f"cannot {doing} {where}: {reason}; make the folder writable, or set results_root= to a writable "
            f"folder (finished cells are skipped without writing)"
        )
    return f"cannot {doing} {where}: {reason}"


def _io_error_in(error: BaseException) -> OSError | None:
    """The OSError behind `error` (itself, a cause or a context), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and current.errno is not None:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _where(error: BaseException) -> str | None:
    """A path the failing code was writing (a file or folder in its innermost frame), when the error names none.

    Python's `write()` on an open file raises without a file name; the frame that
    opened it (Hydra saving `.hydra/`, a log handler) still holds the path.
    """
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, (str, os.PathLike)) and os.sep in os.fspath(value) and len(os.fspath(value)) < 4096:
                return os.fspath(value)
    return None


def describe(error: BaseException) -> tuple[int, str]:
    """(exit status, one line) for an exception that ended a command."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from runner.sweep.validate import ConfigError

    if isinstance(error, ConfigError):
        return 2, "; ".join(str(error).splitlines())
    if isinstance(error, (HydraException, OmegaConfBaseException)) and _io_error_in(error) is None:
        return 2, _hydra_line(error)
    found = _io_error_in(error)
    if found is not None:
        if found.filename is None:
            found.filename = _where(found)
        return 1, io_line(found)
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return 1, f"{type(error).__name__}: {first}" if first else type(error).__name__
