"""SIGTERM of the launching process ends its sweep as Ctrl-C does, instead of orphaning its cells.

`kill PID`, `timeout`, a process manager stopping what a login node runs: each sends
SIGTERM, whose default action ends the process at once. For a local or pool
sweep that left every cell (or pool worker) running with no one to wait for it,
still holding the cores and writing results. While a sweep launches and waits,
SIGTERM therefore raises `Terminated`, a KeyboardInterrupt, so it takes Ctrl-C's
path: the local launcher stops its cells, joblib's pool stops its workers, SLURM
jobs go on as they do after Ctrl-C, and the command ends in one line with status
143 (128 + SIGTERM) rather than 130. A handler someone else installed (a
scheduler's, an embedding program's) is left alone.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived while a sweep was launching or waiting for its cells."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside: SIGTERM raises `Terminated` (main thread, default handler only); outside, as before."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
