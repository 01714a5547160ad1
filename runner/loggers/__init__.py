"""Experiment trackers for a cell: the `logger` config group (csv, tensorboard, wandb, mlflow).

The runner calls, on rank 0 only::

    loggers = open_loggers(cfg, run_dir, identity)   # before the first epoch
    loggers.log_epoch(row)                           # each metrics.csv row
    loggers.log_final(record)                        # the result.json record
    loggers.close()

and `logger_problems(cfg)` at validation, so a tracker that is not installed
(or an MLflow server that does not answer) stops the launch with one line
instead of surfacing hours later. Once training runs, a tracker never stops it:
an error costs one warning and that tracker is dropped. The calls only queue
their host numbers for a worker thread, so a slow tracker never holds up a
training step; `close()` waits for the queue to drain. A tracker package is
imported only when its option is selected.
"""

from __future__ import annotations

import importlib.util
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlparse
from urllib.request import urlopen

from omegaconf import DictConfig, OmegaConf

from runner.loggers.common import (
    RunContext,
    epoch_metrics,
    final_metrics,
    identity_for,
    next_state,
    read_epochs,
    tags_problems,
    tracker_run_id,
)

log = logging.getLogger("runner.loggers")

# Tracker name -> the module it needs (None: nothing beyond the runner). The pip extra has the tracker's name.
REQUIRED_MODULES: dict[str, str | None] = {
    "csv": None,
    "tensorboard": "tensorboard",
    "wandb": "wandb",
    "mlflow": "mlflow",
}
MLFLOW_CHECK_TIMEOUT_S = 5.0


def _factories() -> dict[str, Callable[[Mapping[str, Any], RunContext], Any]]:
    """Tracker classes by name, imported here so that no tracker module loads before it is selected."""

    def tensorboard(settings: Mapping[str, Any], context: RunContext) -> Any:
        from runner.loggers.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(settings, context)

    def wandb(settings: Mapping[str, Any], context: RunContext) -> Any:
        from runner.loggers.wandb_logger import WandbLogger

        return WandbLogger(settings, context)

    def mlflow(settings: Mapping[str, Any], context: RunContext) -> Any:
        from runner.loggers.mlflow_logger import MlflowLogger

        return MlflowLogger(settings, context)

    return {"tensorboard": tensorboard, "wandb": wandb, "mlflow": mlflow}


def selected(cfg: DictConfig | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The `logger` mapping, resolved: {tracker name: settings}; {} when the config has no `logger`."""
    node = cfg.get("logger") if isinstance(cfg, (DictConfig, Mapping)) else None
    if node is None:
        return {}
    data = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(data, Mapping):
        raise ValueError(
            f"logger={data!r} must map tracker names to settings; choose options with "
            f"logger=[csv,wandb] (valid: {', '.join(REQUIRED_MODULES)})"
        )
    return {str(name): dict(settings or {}) for name, settings in data.items()}


def module_available(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (a tracker import takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def logger_problems(cfg: DictConfig | Mapping[str, Any]) -> list[str]:
    """One line per problem of the `logger` config (unknown trackers, missing packages, bad settings) or of `tags`."""
    labels = cfg.get("tags") if isinstance(cfg, (DictConfig, Mapping)) else None
    found = tags_problems({"tags": OmegaConf.to_container(labels) if OmegaConf.is_config(labels) else labels})
    try:
        trackers = selected(cfg)
    except Exception as error:  # a missing environment variable in an interpolation, a bad type
        return [*found, f"logger: {error}"]
    for name, settings in trackers.items():
        if name not in REQUIRED_MODULES:
            found.append(f"logger.{name}: unknown tracker; valid: {', '.join(REQUIRED_MODULES)}")
            continue
        if name == "wandb":
            from runner.loggers.wandb_logger import MODES, mode_of

            mode = mode_of(settings)
            if mode not in MODES:
                found.append(
                    f"logger.wandb.mode={settings.get('mode')!r} must be one of {', '.join(MODES)} "
                    f"(WANDB_MODE sets the default)"
                )
                continue
            if mode == "disabled":
                continue
        module = REQUIRED_MODULES[name]
        if module is not None and not module_available(module):
            found.append(f"logger={name} needs the {name} package: pip install 'sam-sweeps[{name}]'")
        elif name == "mlflow":
            found.extend(_mlflow_problems(settings))
    return found


def _mlflow_problems(settings: Mapping[str, Any]) -> list[str]:
    """An MLflow tracking server must answer now; MLflow has no offline mode to fall back on."""
    uri = str(settings.get("tracking_uri") or "")
    if urlparse(uri).scheme not in ("http", "https"):
        return []
    try:
        with urlopen(uri.rstrip("/") + "/health", timeout=MLFLOW_CHECK_TIMEOUT_S):
            return []
    except HTTPError:
        return []  # the server answered (perhaps asking for credentials): reachable
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return [
            f"logger.mlflow.tracking_uri={uri!r} does not answer ({reason}); start the server, "
            f"or log to a local store with logger.mlflow.tracking_uri=file:<folder>"
        ]


class Loggers:
    """The cell's open trackers; every call is safe to make, and none raises."""

    def __init__(self, trackers: list[Any], *, background: bool = True, run_dir: Path | None = None) -> None:
        self._trackers = list(trackers)
        self._run_dir = run_dir  # where metrics.csv holds the epochs of earlier attempts
        self._first_epoch_seen = False
        self._status: str | None = None
        self._closed = False
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        if self._trackers and background:
            self._thread = threading.Thread(target=self._work, name="trackers", daemon=True)
            self._thread.start()

    @property
    def names(self) -> list[str]:
        """The trackers still logging (one that failed is gone)."""
        return [tracker.name for tracker in self._trackers]

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """One metrics.csv row; its epoch is the step."""
        if self._trackers and not self._closed:
            try:
                step, metrics = int(row["epoch"]), epoch_metrics(row)
            except Exception as error:  # a malformed row costs its epoch, not the run
                log.warning("trackers: cannot log the row %r (%s)", dict(row), error)
                return
            if not self._first_epoch_seen:
                self._first_epoch_seen = True
                self._backfill(step)
            self._submit("log_epoch", step, metrics)

    def _backfill(self, first_step: int) -> None:
        """A resumed cell's first epoch: the epochs before it, from metrics.csv, to trackers that take them.

        A killed attempt may have lost epochs its trackers had queued, and W&B writes every offline
        attempt to a new run file; metrics.csv holds every finished epoch, so the resumed run gets them.
        """
        if first_step <= 1 or self._run_dir is None:
            return
        rows = [(step, values) for step, values in read_epochs(self._run_dir) if step < first_step]
        if rows:
            self._submit("backfill", rows)

    def log_final(self, record: Mapping[str, Any]) -> None:
        """The result.json record: final errors, losses, wall time, sharpness values, status."""
        if self._trackers and not self._closed:
            try:
                self._status = str(record.get("status"))
                step, metrics = int(record.get("epochs") or 0), final_metrics(record)
            except Exception as error:
                log.warning("trackers: cannot log the final record (%s)", error)
                return
            self._submit("log_final", step, metrics, dict(record))

    def close(self, timeout_s: float = 300.0) -> None:
        """Finish every tracker run (waiting at most `timeout_s` for queued values)."""
        if self._closed:
            return
        self._closed = True
        self._submit("close", self._status)
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning(
                    "trackers: still busy after %.0f s at close; leaving them (%s)", timeout_s, ", ".join(self.names)
                )

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _submit(self, method: str, *args: Any) -> None:
        if self._thread is None:
            self._call(method, args)
        else:
            self._queue.put((method, args))

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            self._call(*item)

    def _call(self, method: str, args: tuple) -> None:
        for tracker in list(self._trackers):
            if not hasattr(tracker, method):  # backfill: only the trackers that can lose epochs
                continue
            try:
                getattr(tracker, method)(*args)
            except Exception as error:  # a tracker never ends a training run
                log.warning(
                    "logger=%s failed in %s (%s: %s); logging to it stops here",
                    tracker.name,
                    method,
                    type(error).__name__,
                    error,
                )
                self._trackers.remove(tracker)


def open_loggers(
    cfg: DictConfig | Mapping[str, Any],
    run_dir: Path,
    identity: Mapping[str, Any] | None = None,
    *,
    fresh: bool | None = None,
    background: bool = True,
) -> Loggers:
    """Open the selected trackers' runs for the cell in `run_dir` (rank 0 only).

    `identity` holds dataset, model, optimizer, schedule, variant, seed, experiment
    and cell (the folder relative to the sweep folder); missing fields come from
    `cfg`. `fresh` (default: `cfg.force`) starts new tracker runs instead of
    resuming the cell's. A tracker that fails to open is left out with a warning.
    """
    from runner.training.records import config_container

    try:
        trackers = {name: s for name, s in selected(cfg).items() if REQUIRED_MODULES.get(name, "") is not None}
        if not trackers:
            return Loggers([])
        run_dir = Path(run_dir).absolute()
        config = config_container(cfg)
        state = next_state(run_dir, bool(cfg.get("force")) if fresh is None else fresh)
        context = RunContext(
            run_dir=run_dir,
            identity=identity_for(config, run_dir, identity),
            config=config,
            run_id=tracker_run_id(state),
            state=state,
        )
    except Exception as error:  # validation reports these at launch; here they must not end the run
        log.warning("logger: %s; no tracker opened", error)
        return Loggers([])
    factories, opened = _factories(), []
    for name, settings in trackers.items():
        if name == "wandb":
            from runner.loggers.wandb_logger import mode_of

            if mode_of(settings) == "disabled":
                continue
        if name not in factories:
            log.warning("logger.%s: unknown tracker; valid: %s", name, ", ".join(REQUIRED_MODULES))
            continue
        try:
            opened.append(factories[name](settings, context))
        except Exception as error:
            log.warning(
                "logger=%s could not start (%s: %s); training goes on without it", name, type(error).__name__, error
            )
    if opened:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            context.save_state()
        except OSError as error:
            log.warning("trackers: cannot write %s (%s); a requeued job finds its runs by their tag", run_dir, error)
    return Loggers(opened, background=background, run_dir=run_dir)
