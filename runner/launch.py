"""The training command's job, shared by `python launch.py` (a checkout) and `sam-train` (installed).

    sam-train                                          # one cell, the defaults
    sam-train -m experiment=demo                       # the demo's 9-cell grid
    sam-train -m experiment=paper/cifar10_resnet18 hydra/launcher=slurm

Both entry points compose the same conf/ (runner.config_dir) and run `task` for
every Hydra job. Hydra names a job after the module of its task function, so
both are named `launch` (Hydra's launch.log, SLURM's `sam-launch`) wherever the
package is installed.

Exit status: 0 when every cell completed (or was already done); 1 when a cell
failed, diverged or could not start; 2 when the config cannot work, in which
case one `error:` line per problem is printed before any data is read or any
file is written (a multirun checks every cell before launching any).
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

import runner
from runner import sweep_summary
from runner.config_dir import config_dir

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
    if outcome["status"] not in sweep_summary.DONE_STATUSES and not runner.in_multirun():
        print(f"{outcome['status']}: {outcome.get('error') or ''} (log: {outcome['log']})".rstrip(), file=sys.stderr)
        _exit_status = 1
    return outcome


def exit_status() -> int:
    """The process's exit status once Hydra returned: a failed single run, else the sweep summary's verdict."""
    return _exit_status or sweep_summary.exit_status(sweep_summary.last_summary)


def main() -> None:
    """`sam-train`: Hydra's command line over the installed configs; exits with `exit_status()`."""
    try:
        conf = config_dir()
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    hydra.main(config_path=str(conf), config_name="config", version_base="1.3")(task)()
    sys.exit(exit_status())


if __name__ == "__main__":
    main()
