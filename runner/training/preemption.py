"""Preemption without lost work: a signal that ends the job is noted, and acted on between optimizer steps.

SLURM sends the requeue signal (USR2 through submitit, `signal_delay_s` before
the time limit and when the job is preempted) and, at the limit itself, SIGTERM.
In a submitit job the USR2 handler calls the launcher's `checkpoint()` (Hydra's
submitit launcher resubmits the same job) and exits, wherever the training
loop happens to be, so the running epoch used to be lost.

`Preemption` puts a hook in front of those handlers while the epochs run. The
hook only notes the signal: a Python list the loop reads after each optimizer
step (no host sync). The loop then writes a checkpoint of that exact step and
calls `forward()`, which hands the signal to the handler that was installed
before: submitit's requeue, a handler of the caller's, or the default action
(the process ends by that signal). The job ends as it would have, minus the
lost work. A signal that arrives outside the epoch loop (building the cell, the
final evaluation, the sharpness measures) goes straight to that handler, as
before: the last checkpoint on disk is then all there is to keep.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger("runner")

# submitit reads the name of its requeue signal from this variable (default USR2).
SUBMITIT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"


def watched_signals() -> tuple[signal.Signals, ...]:
    """submitit's requeue signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL names another) and SIGTERM."""
    name = os.environ.get(SUBMITIT_SIGNAL_ENV, "USR2").upper().removeprefix("SIG")
    requeue = getattr(signal, f"SIG{name}", signal.SIGUSR2)
    return tuple(dict.fromkeys([signal.Signals(requeue), signal.SIGTERM]))


class Preemption:
    """While entered, the watched signals are noted instead of handled; `forward()` hands them on.

    Hooks go in only in the main thread (Python delivers signals there alone);
    elsewhere, and for a signal whose handler was installed outside Python
    (which could not be put back), nothing is hooked and the signals act as
    they did. On leaving, the previous handlers are put back, and a signal noted
    but not yet forwarded is forwarded then (unless an exception is on its way
    out, whose record must be written first).
    """

    def __init__(self, signals: tuple[int, ...] | None = None) -> None:
        self.signals = tuple(signals) if signals is not None else watched_signals()
        self._previous: dict[int, Any] = {}
        self._pending: list[int] = []

    def requested(self) -> bool:
        """Whether a watched signal arrived and was not forwarded yet (cheap: the loop asks every step)."""
        return bool(self._pending)

    def names(self) -> str:
        """The pending signals' names, for the log (under DDP another rank may have received the signal)."""
        return ", ".join(signal.Signals(signum).name for signum in self._pending) or "a signal to another rank"

    def __enter__(self) -> Preemption:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            previous = signal.getsignal(signum)
            if previous is None:  # a handler installed from C: leave it alone
                continue
            signal.signal(signum, self._note)
            self._previous[signum] = previous
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if signum not in self._pending:
            self._pending.append(signum)

    def forward(self) -> None:
        """Hand each pending signal to the handler that was there before; may end the process."""
        while self._pending:
            signum = self._pending.pop(0)
            previous = self._previous.get(signum, signal.SIG_DFL)
            log.info("handing %s on to %s", signal.Signals(signum).name, _describe(previous))
            if callable(previous):
                previous(signum, None)  # submitit's requeue exits here; other handlers may return
            elif previous == signal.SIG_DFL:
                self._restore()
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)  # the default action: for USR2 and TERM, the process ends here
            # SIG_IGN: ignored, as it would have been

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._restore()
        if exc_type is None:
            self.forward()
        self._previous.clear()

    def _restore(self) -> None:
        """Put the previous handlers back where the hook is still the one installed."""
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._note:
                signal.signal(signum, previous)


def _describe(handler: Any) -> str:
    if handler == signal.SIG_DFL:
        return "the default action"
    if handler == signal.SIG_IGN:
        return "SIG_IGN (ignored)"
    return getattr(handler, "__qualname__", repr(handler))
