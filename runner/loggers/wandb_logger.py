"""Weights & Biases: one W&B run per cell, grouped by sweep, resumed under the same id after a requeue.

W&B has an offline mode, so a W&B that cannot be reached (no network on the
compute nodes, no API key, a timeout) costs one warning line and the run is
written offline into the cell folder; `wandb sync` uploads it later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.loggers.common import RunContext

log = logging.getLogger("runner.loggers")

MODES = ("online", "offline", "disabled")
# Spellings WANDB_MODE also accepts.
_ALIASES = {"dryrun": "offline", "run": "online"}
_MAX_TAG = 64  # W&B refuses longer tags


def mode_of(settings: Mapping[str, Any]) -> str:
    """The configured mode, with W&B's older spellings mapped; anything else is returned as given."""
    mode = str(settings.get("mode") or "online").strip().lower()
    return _ALIASES.get(mode, mode)


def tags_of(settings: Mapping[str, Any], context: RunContext) -> list[str]:
    """`dataset=cifar10`, ... (variant only when the cell has one), the configured extra tags, the run's `tags`."""
    tags = [f"{key}={value}" for key, value in context.tags().items() if value != ""]
    extra = settings.get("tags") or []
    if isinstance(extra, str):
        extra = [tag.strip() for tag in extra.split(",")]
    tags.extend(str(tag) for tag in extra if str(tag))
    tags.extend(context.labels())
    return [tag[:_MAX_TAG] for tag in dict.fromkeys(tags)]


class WandbLogger:
    name = "wandb"

    def __init__(self, settings: Mapping[str, Any], context: RunContext) -> None:
        import wandb  # only when selected

        mode = mode_of(settings)
        arguments = dict(
            id=context.run_id,
            resume="allow",
            reinit="create_new",
            project=settings.get("project") or None,
            entity=settings.get("entity") or None,
            group=settings.get("group") or context.experiment,
            name=context.name,
            tags=tags_of(settings, context),
            config={**context.config, "cell": context.name, "variant": context.identity.get("variant", "")},
            dir=str(settings.get("dir") or context.run_dir),
        )
        Path(arguments["dir"]).mkdir(parents=True, exist_ok=True)
        timeout = float(settings.get("init_timeout") or 60)
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=timeout), **arguments)
        except Exception as error:
            if mode != "online":
                raise
            log.warning(
                "logger=wandb: cannot reach W&B (%s: %s); logging offline under %s/wandb "
                "(upload later with `wandb sync`)",
                type(error).__name__,
                _first_line(error),
                arguments["dir"],
            )
            # The service still holds the failed online attempt under this id; a fresh service lets it go.
            wandb.teardown()
            self.run = wandb.init(mode="offline", settings=wandb.Settings(init_timeout=timeout), **arguments)
        self.mode = "offline" if self.run.offline else mode
        self._status: str | None = None

    def log_epoch(self, step: int, metrics: Mapping[str, float]) -> None:
        if step >= self.run.step:  # an epoch the run holds already (backfilled, or resumed online) stays as is
            self.run.log({**metrics, "epoch": step}, step=step)

    def backfill(self, rows: list[tuple[int, Mapping[str, float]]]) -> None:
        """Epochs of earlier attempts, from metrics.csv: a resumed run holds every epoch.

        Online, W&B resumes the run and knows the steps it has (`run.step` is the next one), so only
        those it lacks are sent; offline, every attempt is a new run file, which gets them all.
        """
        for step, metrics in rows:
            self.log_epoch(step, metrics)

    def log_final(self, step: int, metrics: Mapping[str, float], record: Mapping[str, Any]) -> None:
        self._status = str(record.get("status"))
        self.run.summary.update(
            {
                **metrics,
                "status": self._status,
                "error": record.get("error"),
                "sharpness": dict(record.get("sharpness") or {}),
            }
        )

    def close(self, status: str | None) -> None:
        if status is None:
            # Stopped before a record: a preemption (or a kill); the requeued job resumes this run.
            self.run.mark_preempting()
        self.run.finish(exit_code=0 if status == "completed" else 1)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""
