"""The training command's job, shared by `python launch.py` (a checkout) and `sam-train` (installed).

    sam-train                                          # one cell, the defaults
    sam-train -m experiment=demo                       # the demo's 9-cell grid
    sam-train -m experiment=paper/cifar10_resnet18 hydra/launcher=slurm

Both entry points compose the same conf/ (runner.sweep.config_dir) and run `task` for
every Hydra job. Hydra names a job after the module of its task function, so
both are named `launch` (Hydra's launch.log, SLURM's `sam-launch`) wherever the
package is installed.

Exit status: 0 when every cell completed (or was already done); 1 when a cell
failed, diverged or could not start; 2 when the config cannot work, in which
case one `error:` line per problem is printed before any data is read or any
file is written (a multirun checks every cell before launching any).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

import runner
from runner.sweep import summary, termination
from runner.sweep.config_dir import config_dir
from runner.sweep.failures import describe

# 1 once a single run ended in a state other than done (a multirun counts in its summary instead).
_exit_status = 0


def task(cfg: DictConfig) -> dict[str, Any]:
    """Run one cell; a config that cannot work exits with status 2 after one `error:` line per problem."""
    global _exit_status
    try:
        outcome = runner.main(cfg)
    except runner.ConfigError as error:
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)
    if outcome["status"] not in summary.DONE_STATUSES and not runner.in_multirun():
        print(f"{outcome['status']}: {outcome.get('error') or ''} (log: {outcome['log']})".rstrip(), file=sys.stderr)
        _exit_status = 1
    return outcome


def exit_status() -> int:
    """The process's exit status once Hydra returned: a failed single run, else the sweep summary's verdict."""
    return _exit_status or summary.exit_status(summary.last_summary)


def run_app(app: Callable[[], Any]) -> int:
    """Run a `hydra.main` app and return the exit status; whatever stops it is one line on stderr.

    Hydra prints its own multi-line report of a composition error (an unknown
    key or option, an override it cannot parse) and exits 1; a fault of the
    machine (a full disk, Ctrl-C) ends in tracebacks. Here Hydra is asked to
    raise instead (`HYDRA_FULL_ERROR`, unless the user set it to see the
    traceback), and each is said in one line: 2 for a command that cannot
    work, 1 for a fault of the machine or a crash, 130 for an interrupt.
    """
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except KeyboardInterrupt as interrupt:
        stopped = "terminated" if isinstance(interrupt, termination.Terminated) else "interrupted"
        print(
            f"{stopped}: cells that were training keep their last checkpoint; rerun the same command to resume",
            file=sys.stderr,
        )
        return termination.EXIT_STATUS if isinstance(interrupt, termination.Terminated) else 130
    except Exception as error:
        if wants_traceback:
            raise
        status, line = describe(error)
        print(f"error: {line}", file=sys.stderr)
        return status
    finally:
        if not wants_traceback:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return exit_status()


def main() -> None:
    """`sam-train`: Hydra's command line over the installed configs; exits with `exit_status()`."""
    try:
        conf = config_dir()
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run_app(hydra.main(config_path=str(conf), config_name="config", version_base="1.3")(task)))


if __name__ == "__main__":
    main()
