"""Settings of the pool launcher (`hydra/launcher=pool`) that would fail or mislead only at launch.

joblib reads them when the first cell is dispatched, after the plan is written; a zero
worker count then stops the sweep with joblib's own message. Threads instead of processes
would be worse than an error: cells sharing one interpreter share torch's global RNG and
thread settings, so a cell's numbers would depend on which cells ran beside it.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def launcher_problems(config: DictConfig) -> list[str]:
    """One line per bad pool setting, naming the value and what would be valid; [] for other launchers."""
    if str(OmegaConf.select(config, "hydra.launcher._target_") or "") != JOBLIB_LAUNCHER:
        return []
    launcher = config.hydra.launcher
    found = []
    n_jobs = launcher.get("n_jobs")
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs == 0:
        found.append(
            f"hydra.launcher.n_jobs={n_jobs!r}: the pool's worker count is a whole number >= 1, "
            "or -1 for one worker per usable core (-2 for all but one, and so on)"
        )
    batch_size = launcher.get("batch_size")
    if str(batch_size) != "auto" and not (str(batch_size).isdigit() and int(str(batch_size)) >= 1):
        found.append(f"hydra.launcher.batch_size={batch_size!r}: cells per dispatch is a whole number >= 1 or auto")
    backend = launcher.get("backend")
    if backend not in (None, "loky"):
        found.append(f"hydra.launcher.backend={backend!r}: the pool runs cells in loky processes: null or loky")
    if launcher.get("prefer") != "processes":
        found.append(
            f"hydra.launcher.prefer={launcher.get('prefer')!r}: cells must run in processes of their own: processes"
        )
    if launcher.get("require") is not None:
        found.append(
            f"hydra.launcher.require={launcher.get('require')!r}: shared memory would run cells as threads "
            "of one process: null"
        )
    return found
