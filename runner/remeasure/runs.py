"""Saved runs on disk: finding run folders, checking them before any work, re-measuring one.

A run folder is what the runner leaves (docs/architecture.md): config.yaml (the
resolved config), model.pt (the final state_dict) and result.json. Re-measuring
rebuilds the model from the config, loads the weights, calls `measure_all` with
the run's dataset and seed (so a re-measure with the settings of the original
measure reproduces its value), and merges the new entries into result.json's
`sharpness` object, replacing the file atomically.

A run folder is data, possibly someone else's: the model is built only by the
project's registry (`runner.models.build_model`, keyed by `model.name`), and a
`model._target_` in config.yaml or result.json that is not the registered
constructor refuses the run before anything is built; the weights load with
`weights_only=True`.
"""

from __future__ import annotations

import glob
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from runner.folder import CONFIG_FILE, MODEL_FILE, RESULT_FILE
from runner.io import atomic_write_json
from runner.models import build_model, model_problems
from runner.sweep.cell_state import config_damage
from runner.sweep.failures import io_line
from runner.sweep.lock import CellLock
from sharpness import config_problems

from .measures import measure_all

log = logging.getLogger(__name__)

# How long a finished measurement waits for the cell's lock before giving up (another re-measure
# holds it for the milliseconds of its write; a training run of the cell holds it for hours).
RECORD_LOCK_WAIT_S = 120.0


class UsageError(ValueError):
    """A problem with the command line or the runs it names; reported as one line."""


@dataclass
class RunPlan:
    folder: Path
    config: DictConfig
    measures: dict[str, dict[str, Any]]  # those still to measure


def find_runs(targets: list[str]) -> list[Path]:
    """Run folders named by the targets, each once, in a stable order."""
    found: list[Path] = []
    for target in targets:
        pattern = str(Path(target).expanduser())
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(target) else [target]
        if not matches:
            raise UsageError(f"{target}: matches nothing")
        for match in map(Path, matches):
            if (match / RESULT_FILE).is_file():
                found.append(match)
            elif match.is_dir():
                below = sorted(path.parent for path in match.rglob(RESULT_FILE))
                if not below and not glob.has_magic(target):
                    raise UsageError(f"{match}: no result.json here or below; not a run folder or results root")
                found += below
            elif not glob.has_magic(target):
                raise UsageError(f"{match}: no such folder")
    unique = list(dict.fromkeys(path.resolve() for path in found))
    if not unique:
        raise UsageError(f"no run folders found in {' '.join(targets)}")
    return unique


def _read_result(folder: Path) -> dict[str, Any]:
    try:
        with open(folder / RESULT_FILE, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise UsageError(f"{folder}/result.json: unreadable ({error})") from None


def _apply_run_overrides(config: DictConfig, overrides: list[str], folder: Path) -> None:
    for arg in overrides:
        key, value = arg.lstrip("+~").split("=", 1)
        if OmegaConf.select(config, key, default="<absent>") == "<absent>":
            raise UsageError(f"{arg}: {folder}/config.yaml has no key {key!r} (and it is no option of the CLI)")
        OmegaConf.update(config, key, yaml.safe_load(value), merge=False)


def _check_model(model_cfg: Any, source: Path) -> None:
    """Refuse a model config the registry would not build (a foreign `_target_`, an unknown name)."""
    problems = model_problems(model_cfg)
    if problems:
        raise UsageError(f"{source}: {problems[0]}; refused, nothing was built from it")


def _recorded(recorded: dict[str, Any], name: str, settings: dict[str, Any]) -> bool:
    """Whether result.json already holds `name` measured with these settings (`verbose` aside)."""
    entry = recorded.get(name) or {}
    return bool(entry) and all(entry.get(key) == value for key, value in settings.items() if key != "verbose")


def _check_writable(folder: Path) -> None:
    """The new entries go into result.json by a replace in its folder: probe that before measuring for hours."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        error.filename = str(folder)
        raise UsageError(io_line(error)) from None


def plan_runs(
    folders: list[Path], measures: dict[str, dict[str, Any]], run_overrides: list[str], force: bool, explicit: set[Path]
) -> list[RunPlan]:
    """Check every run before any work; the runs (and measures) left to do."""
    plans = []
    for folder in folders:
        record = _read_result(folder)
        if record.get("status") != "completed":
            if folder in explicit:
                raise UsageError(
                    f"{folder}: run status is {record.get('status')!r}; only completed runs have final weights"
                )
            log.warning("skipping %s: status %s", folder, record.get("status"))
            continue
        for needed in (CONFIG_FILE, MODEL_FILE):
            if not (folder / needed).is_file():
                raise UsageError(
                    f"{folder}: no {needed}; cannot re-measure a run folder without "
                    f"{'weights' if needed == MODEL_FILE else 'its config'}"
                )
        damage = config_damage(folder)
        if damage:
            raise UsageError(f"{damage}; result.json keeps the run's config: restore config.yaml from it")
        config = OmegaConf.load(folder / CONFIG_FILE)
        _apply_run_overrides(config, run_overrides, folder)
        for key in ("model", "dataset"):
            if key not in config:
                raise UsageError(f"{folder}/config.yaml has no {key} section")
        _check_model(config.model, folder / CONFIG_FILE)
        recorded_config = record.get("config")
        if isinstance(recorded_config, dict) and isinstance(recorded_config.get("model"), dict):
            _check_model(recorded_config["model"], folder / RESULT_FILE)
        problems = config_problems(measures, config.dataset)
        if problems:
            raise UsageError(f"{folder}: {problems[0]}")
        recorded = record.get("sharpness") or {}
        todo = {
            name: settings for name, settings in measures.items() if force or not _recorded(recorded, name, settings)
        }
        if todo:
            _check_writable(folder)
            plans.append(RunPlan(folder, config, todo))
        else:
            log.info("%s: already measured with these settings (force=true to redo)", folder)
    return plans


def resolve_device(device: str) -> str:
    """`auto` -> cuda when available, else cpu; anything torch cannot use is a UsageError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise UsageError(f"device={device!r}: expected auto, cpu, cuda or cuda:<index>") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device={device} but no CUDA device is available")
    return device


def remeasure(plan: RunPlan, device: str) -> dict[str, dict[str, Any]]:
    """Measure one run and merge the entries into its result.json (atomically)."""
    model = build_model(plan.config.model)
    state = torch.load(plan.folder / MODEL_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.to(device)
    entries = measure_all(
        model, plan.config.dataset, plan.measures, device=device, seed=int(plan.config.get("seed", 0))
    )
    # Read, merge and replace under the cell's lock, so a re-measure running beside this one (or a
    # retraining) cannot write between our read and our replace and lose its entries or ours.
    with CellLock(plan.folder, wait_s=RECORD_LOCK_WAIT_S, poll_s=0.2):
        record = _read_result(plan.folder)  # fresh: keep whatever else changed meanwhile
        record["sharpness"] = {**(record.get("sharpness") or {}), **entries}
        atomic_write_json(plan.folder / RESULT_FILE, record)
    print(f"{plan.folder}: " + ", ".join(f"{name}={entry['value']:.6g}" for name, entry in entries.items()), flush=True)
    return entries
