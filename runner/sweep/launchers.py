"""The submitit launchers (local, SLURM) of conf/hydra/launcher, waiting for every job of a sweep.

hydra-submitit-launcher collects its jobs' results in order and raises at the
first job that ended without one: a `scancel`, a preemption past its requeues,
a kill, a node failure, a job that exited. The launching process then prints
submitit's traceback and stops waiting while the other jobs still run. Here
every job is waited for, and one that ended early comes back as a failed job
carrying a `JobEnded` (job id, SLURM state, log path), which the sweep summary
turns into one line. hydra_plugins/sam_sweeps mixes this into
hydra-submitit-launcher's classes where Hydra looks for launchers.

Ctrl-C of a local sweep: a terminal sends SIGINT to every process of its
foreground group, the launching process, submitit's controller processes
(one per job) and the cells. A controller would die in a KeyboardInterrupt
traceback printed on the launching terminal. So the controllers start with
SIGINT ignored, each cell restores Python's handler when it starts, and the
launching process, once interrupted, gives the cells a moment to stop, passes
SIGINT on to those still running (a `kill -INT` of the launcher alone reaches
no cell), waits for them, and lets the interrupt end the command in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

from runner.folder import base_state

log = logging.getLogger(__name__)
# Launcher settings that configure the executor itself rather than each job.
EXECUTOR_KEYS = ("submitit_folder", "max_num_timeout")
# After Ctrl-C: how long the cells get to stop on the terminal's own SIGINT, then on the one passed on.
SELF_STOP_S = 3.0
STOP_S = 60.0


class JobEnded(Exception):
    """A job that ended without returning its cell's outcome; the message is one line."""

    def __init__(self, job_num: int, job_id: str, state: str, log_path: str, detail: str, slurm: bool) -> None:
        self.job_num, self.job_id, self.state, self.log_path, self.detail = job_num, job_id, state, log_path, detail
        self.slurm = slurm
        super().__init__(f"job {job_id} ended {state} before the run returned: {detail}")


def _job_state(job: Any) -> str:
    """The job's base state as the scheduler reports it (CANCELLED, PREEMPTED, OUT_OF_MEMORY, ...; runner.folder)."""
    try:
        return base_state(job.state)
    except Exception:
        return "UNKNOWN"


def _detail(error: BaseException) -> str:
    """The line of submitit's message that says what happened, without its traceback or log dump.

    Empty for a job that produced no result at all (cancelled, killed): its state says why.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if lines[0].startswith("Job ") and len(lines) > 1 and lines[1].startswith("has not produced any output"):
        return ""  # killed or cancelled: the state says it all
    last = next((line for line in reversed(lines) if not line.startswith(("File ", "^", "-" * 10))), lines[-1])
    return last


class WaitingLauncherMixin:
    """`launch` of a submitit launcher that waits for every job and never raises for one that ended early.

    Mixed into hydra-submitit-launcher's classes, whose settings it reads:
    `_EXECUTOR` (local or slurm), `params` (hydra.launcher) and `generic_keys`,
    the settings submitit names without the executor's prefix.
    """

    _EXECUTOR: str
    params: dict[str, Any]
    config: Any
    generic_keys: frozenset[str] = frozenset()

    def _executor(self) -> Any:
        import submitit

        generic = self.generic_keys
        init = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init[f"{self._EXECUTOR}_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        executor.update_parameters(
            **{
                key if key in generic else f"{self._EXECUTOR}_{key}": value
                for key, value in self.params.items()
                if key not in EXECUTOR_KEYS
            }
        )
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        executor = self._executor()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        log.info("Submitit '%s' sweep output dir : %s", self._EXECUTOR, sweep_dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        arguments = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            arguments.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state()))
        with _sigint_ignored() if self._EXECUTOR == "local" else contextlib.nullcontext():
            jobs = executor.map_array(self, *zip(*arguments))
        try:
            return [self._wait(job, args[0], args[2]) for job, args in zip(jobs, arguments)]
        except KeyboardInterrupt:
            if self._EXECUTOR == "local":
                _stop_local_jobs(jobs)
            raise

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The job, in its own process: Ctrl-C stops a cell again (its controller started it with SIGINT ignored)."""
        if self._EXECUTOR == "local":
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return super().__call__(*args, **kwargs)  # type: ignore[misc]

    def _wait(self, job: Any, overrides: list[str], job_num: int) -> JobReturn:
        try:
            return job.results()[0]
        except Exception as error:  # submitit's Uncompleted/FailedJobError: the job ended without a result
            state, slurm = _job_state(job), self._EXECUTOR == "slurm"
            ended = JobEnded(job_num, str(job.job_id), state, str(job.paths.stderr), _detail(error), slurm)
            log.debug("job %s: %s", job.job_id, error)
            returned = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
            returned.return_value = ended
            return returned


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored inside: local jobs started here inherit it ignored, and a second Ctrl-C waits."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _descendants(pid: int) -> list[int]:
    """The processes below `pid` (a job's tasks, and a setup shell's), from Linux's /proc; none elsewhere."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(parent, []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        children = parents.get(frontier.pop(), [])
        found.extend(children)
        frontier.extend(children)
    return found


def _stop_local_jobs(jobs: Sequence[Any]) -> None:
    """After Ctrl-C: every local job's cell stopped by SIGINT, as a terminal would have stopped it.

    A cell that already got the terminal's SIGINT is not signalled twice while it
    cleans up; one reached by nothing (the launcher alone was interrupted) gets it
    passed on; a job still alive after STOP_S is cancelled the hard way.
    """
    with _sigint_ignored():  # a second Ctrl-C must not cut this short
        _wait_until_done(jobs, SELF_STOP_S)
        for job in _running(jobs):
            for pid in _descendants(int(job.job_id)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGINT)
        _wait_until_done(jobs, STOP_S)
        for job in _running(jobs):
            for pid in [*_descendants(int(job.job_id)), int(job.job_id)]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def _running(jobs: Sequence[Any]) -> list[Any]:
    return [job for job in jobs if not job.done()]


def _wait_until_done(jobs: Sequence[Any], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _running(jobs) and time.monotonic() < deadline:
        time.sleep(0.1)
