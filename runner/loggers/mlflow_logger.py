"""MLflow: one MLflow run per cell in the experiment named after the sweep, found again after a requeue.

MLflow chooses its run ids itself, so the cell keeps the id in trackers.json;
the tag `sam.run_key` holds the cell's own id as well, so the run is found by
a search when that file is gone. The client API is used, never the fluent
`mlflow.start_run`, so no process-wide active run links two cells of a sweep.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from runner.loggers.common import RunContext, flatten

RUN_KEY_TAG = "sam.run_key"
_TERMINAL = {"completed": "FINISHED", "failed": "FAILED", "diverged": "FAILED"}


def normalize_uri(uri: str) -> str:
    """A local store as an absolute URI (relative paths from the launch directory): `file://...` or
    `sqlite:////...`; others unchanged."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        return f"sqlite:///{Path(path).expanduser().absolute()}" if path and path != ":memory:" else uri
    if parsed.scheme not in ("", "file"):
        return uri
    path = uri[len("file:") :] if parsed.scheme == "file" else uri
    if path.startswith("//"):
        path = urlparse(uri).path
    return Path(path).expanduser().absolute().as_uri()


def is_local(uri: str) -> bool:
    return urlparse(uri).scheme in ("", "file")


def sqlite_path(uri: str) -> Path | None:
    """The database file of an absolute `sqlite:///` URI; None for any other store."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:////") else None


@contextmanager
def _first_use_lock(uri: str) -> Iterator[None]:
    """One process at a time creates an SQLite store's tables (the cells of a local sweep start together)."""
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MlflowLogger:
    name = "mlflow"

    def __init__(self, settings: Mapping[str, Any], context: RunContext) -> None:
        self.tracking_uri = normalize_uri(str(settings.get("tracking_uri") or "mlruns"))
        if is_local(self.tracking_uri):
            # MLflow 3 keeps the file store only when asked; a user who chose it (file:...) gets it, and reads
            # it back with MLFLOW_ALLOW_FILE_STORE=true set too (the default SQLite store needs nothing).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient  # only when selected

        with _first_use_lock(self.tracking_uri):
            self._client = client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment_name = str(settings.get("experiment") or context.experiment)
            experiment_id = self._experiment_id(experiment_name)
        tags = {
            **context.tags(),
            "experiment": context.experiment,
            "cell": context.name,
            "run_dir": str(context.run_dir),
            RUN_KEY_TAG: context.run_id,
            **{str(k): str(v) for k, v in (settings.get("tags") or {}).items()},
        }
        if context.labels():
            tags["tags"] = ",".join(context.labels())  # the run's own tags=[...]

        run = self._find_run(context, experiment_id)
        if run is None:
            run = client.create_run(experiment_id, tags=tags, run_name=context.name)
            logged: Mapping[str, str] = {}
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            client.log_batch(run.info.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            logged = run.data.params
        self.run_id = run.info.run_id
        self.experiment_id = experiment_id
        context.state["mlflow"] = {"tracking_uri": self.tracking_uri, "run_id": self.run_id}

        # Parameters cannot change in MLflow: a resumed run logs only those it lacks.
        params = {**flatten(context.config), "cell": context.name, "variant": context.identity.get("variant", "")}
        fresh = [Param(key, _param_text(value)) for key, value in params.items() if key not in logged]
        for start in range(0, len(fresh), 100):
            client.log_batch(self.run_id, params=fresh[start : start + 100])

    def _experiment_id(self, name: str) -> str:
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self._client.create_experiment(name)
        except Exception:  # another job of the sweep created it a moment ago
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _find_run(self, context: RunContext, experiment_id: str) -> Any:
        """The cell's run: by the id in trackers.json, else by the run-key tag; None when it has none yet."""
        stored = context.state.get("mlflow") or {}
        if stored.get("tracking_uri") == self.tracking_uri and stored.get("run_id"):
            try:
                run = self._client.get_run(stored["run_id"])
            except Exception:  # deleted, or the store was moved: search by the tag instead
                run = None
            if (
                run is not None
                and run.info.lifecycle_stage == "active"
                and run.info.experiment_id == experiment_id
                and run.data.tags.get(RUN_KEY_TAG) == context.run_id
            ):
                return run
        found = self._client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{context.run_id}'", max_results=1
        )
        return found[0] if found else None

    def _metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()])

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        self._metrics(step, metrics)

    def backfill(self, rows: list[tuple[int, Mapping[str, float]]]) -> None:
        """Epochs of earlier attempts that the run lacks (a kill can lose the last ones queued)."""
        present = {metric.step for metric in self._client.get_metric_history(self.run_id, "train_loss")}
        for step, metrics in rows:
            if step not in present:
                self._metrics(step, metrics)

    def log_final(self, step: int, metrics: Mapping[str, float], record: Mapping[str, Any]) -> None:
        self._metrics(step, metrics)
        self._client.set_tag(self.run_id, "status", str(record.get("status")))
        if record.get("error"):
            self._client.set_tag(self.run_id, "error", str(record["error"])[:5000])

    def close(self, status: str | None) -> None:
        # No record: stopped by a preemption or a kill; KILLED until the requeued job resumes it.
        self._client.set_terminated(self.run_id, status=_TERMINAL.get(status or "", "KILLED"))


def _param_text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= 6000 else text[:5990] + "...(cut)"
