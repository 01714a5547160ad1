"""`function` over a list of items in a few forked processes, the results in the items' order.

Planning a sweep composes every cell with Hydra and validates it: about a
second a cell on a slow CPU, all of it Python, so one core does it while the
others wait (a minute for a 60-cell sweep). The work of one cell does not
depend on another's, so each child takes every n-th cell and sends back what
it found through a pipe; the items and `function` are inherited by the fork,
not sent. The results are pickled from a child of this very process, never
read from a file.

A fork copies only the calling thread, and a lock another thread held (of a
stream, of an allocator) would stay held in the child, so with other threads
running, or where fork does not exist, everything runs here. So it does for a
child that fails (killed, out of memory): its items are run again here, where
an error raises as it would have. Ctrl-C stops the children with the caller.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count).

    analysis.figure_jobs keeps its own copy: the analysis imports nothing of the runner.
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Whether forking is safe here: fork exists and no other thread runs in this process."""
    return "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1


def forked_map(function: Callable[[Item], Result], items: Sequence[Item], processes: int) -> list[Result]:
    """`[function(item) for item in items]`, computed by up to `processes` forked children."""
    processes = min(processes, len(items))
    if processes < 2 or not can_fork():
        return [function(item) for item in items]
    sys.stdout.flush()  # a child must not inherit output still buffered here
    sys.stderr.flush()
    children: list[tuple[int, int, range]] = []  # forked, not yet collected: (pid, read end, share)
    found: dict[int, tuple[bool, Any]] = {}
    try:
        for first in range(processes):
            share = range(first, len(items), processes)
            read, write = os.pipe()
            try:
                pid = os.fork()
            except OSError:  # the system refused another process: this share is computed here
                os.close(read)
                os.close(write)
                continue
            if pid == 0:  # the child: never returns
                os.close(read)
                _child(function, items, share, write)
            os.close(write)
            children.append((pid, read, share))
        while children:
            pid, read, share = children.pop(0)
            try:
                found.update(_collect(pid, read, share))  # closes `read` and reaps the child
            except BaseException:
                _stop(pid)
                raise
    except BaseException:  # Ctrl-C: no child outlives the call
        for pid, read, _ in children:
            with contextlib.suppress(OSError):
                os.close(read)
            _stop(pid)
        raise
    results = []
    for index, item in enumerate(items):
        computed, value = found.get(index, (False, None))
        results.append(value if computed else function(item))  # raised or never sent: again here
    return results


def _child(function: Callable[[Any], Any], items: Sequence[Any], share: range, write: int) -> None:
    """Compute this child's share, send it, and leave without running the parent's exit handlers."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the children on Ctrl-C
        found: dict[int, tuple[bool, Any]] = {}
        for index in share:
            try:
                found[index] = (True, function(items[index]))
            except Exception:  # raised again where the caller sees it, in the parent
                found[index] = (False, None)
        with os.fdopen(write, "wb") as pipe:
            pipe.write(pickle.dumps(found))
        status = 0
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def _stop(pid: int) -> None:
    """Kill a child that was not reaped yet (so its pid is still its own) and reap it."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _collect(pid: int, read: int, share: range) -> dict[int, tuple[bool, Any]]:
    """What one child sent; nothing (its share is computed again here) if it ended without sending it."""
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        return {}
    try:
        return pickle.loads(data)  # noqa: S301 - written by this process's own child, through a pipe
    except Exception:
        return {}
