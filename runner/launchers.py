"""The submitit launchers (local, SLURM) of conf/hydra/launcher, waiting for every job of a sweep.

hydra-submitit-launcher collects its jobs' results in order and raises at the
first job that ended without one: a `scancel`, a preemption past its requeues,
a kill, a node failure, a job that exited. The launching process then prints
submitit's traceback and stops waiting while the other jobs still run. Here
every job is waited for, and one that ended early comes back as a failed job
carrying a `JobEnded` (job id, SLURM state, log path), which the sweep summary
turns into one line. hydra_plugins/sam_sweeps mixes this into
hydra-submitit-launcher's classes where Hydra looks for launchers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides

log = logging.getLogger(__name__)
# Launcher settings that configure the executor itself rather than each job.
EXECUTOR_KEYS = ("submitit_folder", "max_num_timeout")


class JobEnded(Exception):
    """A job that ended without returning its cell's outcome; the message is one line."""

    def __init__(self, job_num: int, job_id: str, state: str, log_path: str, detail: str, slurm: bool) -> None:
        self.job_num, self.job_id, self.state, self.log_path, self.detail = job_num, job_id, state, log_path, detail
        self.slurm = slurm
        super().__init__(f"job {job_id} ended {state} before the run returned: {detail}")


def _job_state(job: Any) -> str:
    """The job's base state as the scheduler reports it (CANCELLED, PREEMPTED, OUT_OF_MEMORY, ...)."""
    try:
        state = str(job.state)
    except Exception:
        return "UNKNOWN"
    return (state.split() or ["UNKNOWN"])[0].rstrip("+").upper()


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
        jobs = executor.map_array(self, *zip(*arguments))
        return [self._wait(job, args[0], args[2]) for job, args in zip(jobs, arguments)]

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
