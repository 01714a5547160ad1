"""TensorBoard: event files in one folder per cell, appended to by a resumed cell.

The writer opens at the first value, with `purge_step` set to that epoch when
the folder already holds events: epochs a preempted job logged after its last
checkpoint are logged again by the requeued job, and TensorBoard then shows
the new values, not both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.folder import TENSORBOARD_DIR
from runner.loggers.common import RunContext, flatten


def log_dir_for(settings: Mapping[str, Any], context: RunContext) -> Path:
    """`<run_dir>/tensorboard`, or `<log_dir>/<experiment>/<cell>` when a root is set."""
    root = settings.get("log_dir")
    if root in (None, ""):
        return context.run_dir / TENSORBOARD_DIR
    return Path(str(root)).expanduser().absolute() / context.experiment / context.name


class TensorBoardLogger:
    name = "tensorboard"

    def __init__(self, settings: Mapping[str, Any], context: RunContext) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard; only when selected

        self._writer_class = SummaryWriter
        self.log_dir = log_dir_for(settings, context)
        self._context = context
        self._writer: Any = None

    def _open(self, first_epoch: int | None) -> Any:
        """The writer; a resumed cell's writer drops the old events from `first_epoch` on (None: keeps all)."""
        if self._writer is None:
            resumed = self.log_dir.is_dir() and any(self.log_dir.glob("events.out.tfevents.*"))
            self._writer = self._writer_class(str(self.log_dir), purge_step=first_epoch if resumed else None)
            if not resumed:
                self._describe()
        return self._writer

    def _describe(self) -> None:
        """The identity and config as text, and the config as hparams (TensorBoard's HParams tab)."""
        from torch.utils.tensorboard.summary import hparams

        identity = "  \n".join(f"**{key}**: {value}" for key, value in self._context.identity.items())
        self._writer.add_text("identity", identity, 0)
        self._writer.add_text("config", "```\n" + json.dumps(self._context.config, indent=2, default=str) + "\n```", 0)
        if self._context.labels():
            self._writer.add_text("tags", ", ".join(self._context.labels()), 0)
        params = {key: _hparam(value) for key, value in flatten(self._context.config).items()}
        params.update({key: str(value) for key, value in self._context.tags().items()})
        experiment, start, _ = hparams(params, {"final/test_error": 0.0, "test_error": 0.0})
        file_writer = self._writer._get_file_writer()
        file_writer.add_summary(experiment)
        file_writer.add_summary(start)

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        writer = self._open(step)
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)

    def log_final(self, step: int, metrics: Mapping[str, float], record: Mapping[str, Any]) -> None:
        writer = self._open(None)  # a job resumed after the last epoch logs only this: keep the epochs
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)
        writer.add_text(
            "status", str(record.get("status")) + (f": {record['error']}" if record.get("error") else ""), step
        )

    def close(self, status: str | None) -> None:
        if self._writer is not None:
            self._writer.close()


def _hparam(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    return "null" if value is None else str(value)
