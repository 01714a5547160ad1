"""Whether a cell trains: one decision, made from its folder, for every place that needs it.

`decide(run_dir, cfg)` looks at the cell folder and answers with a `Verdict`:

- `skip`: result.json says the cell finished (completed or diverged) with the config
  launched now; nothing is written, so a read-only results tree can be relaunched;
- `refuse`: the folder holds a finished run (or, when the caller reads it, a checkpoint)
  made with another config, or it cannot be written as it stands (runner.sweep.cell_state:
  a link out of results_root, a folder where a file goes, a damaged record of a run that
  may have finished, no write access); the reason has one line per problem;
- `resume`: checkpoint.pt is there and `force` is off;
- `train`: nothing to continue from, or `force=true` (the run deletes the old checkpoint).

The single-run preflight decides before Hydra creates the folder, the sweeper (and the
Optuna search, which plans its trials with it) before launching anything, and the run
twice: before taking the cell's lock, and under it, where it also reads the checkpoint's
config (`checkpoint_config`), at the moment the checkpoint is about to be used. Configs are
compared by what they compute (runner.sweep.identity.computed_values), so a finished cell
relaunched with another `device` or `logger` is still the same cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner.folder import CHECKPOINT_FILE, is_finished, read_result
from runner.sweep import cell_state, identity

SKIP, RESUME, TRAIN, REFUSE = "skip", "resume", "train", "refuse"
# How many differing keys a refusal names before it ends with `...`.
SHOWN_DIFFERENCES = 4


@dataclass(frozen=True)
class Verdict:
    """What to do with a cell (`action`: skip, resume, train or refuse) and why, for a log line or an error."""

    action: str
    reason: str = ""
    record: dict[str, Any] | None = field(default=None, compare=False)  # the finished record of a skipped cell


def config_mismatch(stored: Any, cfg: DictConfig | Mapping[str, Any], what: str, run_dir: Path) -> str | None:
    """One line when `stored` (a record's or a checkpoint's config) computes something else than `cfg`; else None.

    Folders are named by the effective config, so this only fires when a folder was
    filled by an older layout or by hand.
    """
    if not isinstance(stored, Mapping):
        return None  # a record or checkpoint that kept no config: nothing to compare
    ours, theirs = identity.computed_values(cfg), identity.computed_values(stored)
    changed = list(identity.differences(ours, theirs))
    if not changed:
        return None
    shown = "; ".join(f"{key}: {theirs.get(key)!r} -> {ours.get(key)!r}" for key in changed[:SHOWN_DIFFERENCES])
    more = "; ..." if len(changed) > SHOWN_DIFFERENCES else ""
    return (
        f"{run_dir} holds a {what} made with a different config ({shown}{more}); "
        f"use another experiment_name=<name> for the new values, or force=true to replace it"
    )


def decide(
    run_dir: str | Path,
    cfg: DictConfig,
    *,
    checkpoint_config: Callable[[Path], Any] | None = None,
) -> Verdict:
    """Skip, resume, train or refuse the cell of `cfg` in `run_dir`, from what the folder holds.

    `checkpoint_config(path)`, when given, reads the config a checkpoint was written
    under (runner.training.checkpoint.checkpoint_config): a checkpoint of another
    config refuses the cell. What it raises for an unreadable file goes to the caller,
    who sets the file aside and decides again.
    """
    run_dir = Path(run_dir).absolute()
    force = bool(cfg.force)
    record = read_result(run_dir)
    if is_finished(record) and not force:
        status = record["status"]
        mismatch = config_mismatch(record.get("config"), cfg, f"{status} run", run_dir)
        if mismatch:
            return Verdict(REFUSE, mismatch)
        return Verdict(SKIP, f"already {status}", record)
    # The cell will be written: it must be writable as it stands (a damaged record decides here too).
    trouble = cell_state.problems(run_dir, Path(str(cfg.results_root)), force=force)
    if trouble:
        return Verdict(REFUSE, "\n".join(trouble))
    checkpoint = run_dir / CHECKPOINT_FILE
    if force:
        return Verdict(TRAIN, "force=true: trained from the start")
    if not checkpoint.exists():
        return Verdict(TRAIN)
    if checkpoint_config is not None:
        mismatch = config_mismatch(checkpoint_config(checkpoint), cfg, "checkpoint", run_dir)
        if mismatch:
            return Verdict(REFUSE, mismatch)
    return Verdict(RESUME, f"resumes from {CHECKPOINT_FILE}")
