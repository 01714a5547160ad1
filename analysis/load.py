"""Find every `result.json` below a folder and load the records into one DataFrame.

The analysis reads records and nothing else (docs/architecture.md): one row
per run, one column per field, sharpness measures flattened into
`sharpness.<name>` columns, the effective config in `config.<dotted key>`
columns (the keys that vary across the folder, see `configs`). Records that
cannot be trusted (unreadable,
half-written, other schema, missing fields, duplicates) are not rows; they
become `Problem`s. Failed and diverged runs are rows (their `status` says so,
and the tables skip them) and are reported as problems too.

Speed matters (a paper sweep has thousands of records, the target is 10,000
in well under 5 s): one `os.walk`, one `json.loads` per file, plain Python
rows, and a single DataFrame construction at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .columns import SHARPNESS_PREFIX, runs_frame
from .configs import MAX_DEPTH, ConfigError, check_config, config_columns, too_deep
from .problems import Problem, one_line
from .protocol import PROTOCOL_COLUMN, protocol_of

RECORD_NAME = "result.json"
SCHEMA_VERSIONS = (1, 2)  # the versions this analysis understands; 1 lacks `variant` / `variant_values`
SCHEMA_VERSION = SCHEMA_VERSIONS[-1]
# What makes two records the same run: a second record with the same key is a duplicate.
RUN_KEY = ("experiment", "dataset", "model", "optimizer", "schedule", "variant", "seed")
STATUSES = ("completed", "failed", "diverged")
_DIGITS = re.compile(r"(\d+)")
# Files that show a run folder was started (the runner's and Hydra's).
_RUN_TRACES = frozenset({"config.yaml", "metrics.csv", "run.log", "launch.log", "checkpoint.pt"})

_FLOATS = ("test_error", "test_loss", "train_error", "train_loss", "wall_time_s")
_INTS = ("epochs", "steps", "diverged_at_step")
_OPTIONAL_STRINGS = ("precision", "git_commit", "error")
_REQUIRED_STRINGS = ("dataset", "model", "optimizer", "schedule", "status")


@dataclass
class LoadedRuns:
    """The readable records as a DataFrame, and every record left out of the tables."""

    runs: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    root: Path = Path(".")


class _Invalid(ValueError):
    """A record that parsed as JSON but cannot be used; carries the problem kind."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind


def find_records(root: str | os.PathLike) -> tuple[list[str], list[str]]:
    """Run folders below `root` that hold a `result.json`, and those that have none yet.

    Both as paths relative to `root` ("." for `root` itself), sorted. A folder
    named `seed=<k>` without a record but with traces of a start (Hydra's
    `.hydra/`, a config, metrics, a log) is a run that is still going, was
    killed, or stopped its sweep; those are worth reporting. Hidden
    folders (`.hydra`, `.git`) are skipped: they never hold records.
    """
    root = os.fspath(root)
    records: list[str] = []
    unfinished: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        started = ".hydra" in dirnames or not _RUN_TRACES.isdisjoint(filenames)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if RECORD_NAME in filenames:
            records.append(os.path.relpath(dirpath, root))
        elif started and os.path.basename(dirpath).startswith("seed="):
            unfinished.append(os.path.relpath(dirpath, root))
    records.sort(key=_natural_key)
    unfinished.sort(key=_natural_key)
    return records, unfinished


def _natural_key(path: str) -> list:
    """Sort `seed=2` before `seed=10`, so summaries list runs the way people count them."""
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(path)]


def _read_json(path: str) -> dict:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise _Invalid("corrupt", f"cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise _Invalid("corrupt", "empty file (half-written?)")
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Invalid("corrupt", f"not valid JSON (half-written?): {one_line(exc)}") from None
    except RecursionError:  # e.g. 100,000 nested lists: the parser's stack runs out, not ours
        raise _Invalid("corrupt", "JSON nested too deeply to be a record") from None
    if not isinstance(record, dict):
        raise _Invalid("corrupt", f"JSON is a {type(record).__name__}, not an object")
    return record


def _check_schema(record: dict) -> None:
    version = record.get("schema_version")
    if version is None:
        raise _Invalid("schema", "no schema_version (older format)")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _Invalid("schema", f"unknown schema_version {version!r}")
    readable = " and ".join(str(v) for v in SCHEMA_VERSIONS)
    if version < SCHEMA_VERSIONS[0]:
        raise _Invalid("schema", f"older schema_version {version} (this analysis reads {readable})")
    if version > SCHEMA_VERSIONS[-1]:
        raise _Invalid("schema", f"newer schema_version {version} (this analysis reads {readable})")


def _number(record: dict, key: str, kind: type) -> float | int | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid("invalid", f"{key} is {value!r}, not a number")
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise _Invalid("invalid", f"{key} is {value!r}, not an integer")
        return int(value)
    return float(value)


def _sharpness_values(record: dict) -> dict[str, float]:
    """`{"worst_linf": {"value": 4.2, ...}}` -> `{"sharpness.worst_linf": 4.2}`; odd entries become NaN."""
    measures = record.get("sharpness") or {}
    if not isinstance(measures, dict):
        raise _Invalid("invalid", f"sharpness is {type(measures).__name__}, not a mapping")
    values = {}
    for name, entry in measures.items():
        value = entry.get("value") if isinstance(entry, dict) else entry
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        values[SHARPNESS_PREFIX + str(name)] = float(value) if ok else math.nan
    return values


def _experiment_from_path(run_dir: str, variant: str) -> str:
    """`.../<experiment>/<dataset>-<model>/<opt>-<sched>/[<variant>/]seed=k` -> its last experiment folder.

    Only for records without an `experiment` field; a nested experiment name
    (`paper/x`) cannot be recovered from the path, its last part can.
    """
    parts = Path(run_dir).parts
    depth = 5 if variant else 4
    return parts[-depth] if len(parts) >= depth else "unknown"


def _variant(record: dict) -> tuple[str, str]:
    """(variant, variant_values as JSON text); schema-1 records are the preset's own values."""
    variant = record.get("variant")
    values = record.get("variant_values")
    if variant is None:
        variant = ""
    if not isinstance(variant, str):
        raise _Invalid("invalid", f"variant is {variant!r}, expected a folder segment such as 'rho=0.1'")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise _Invalid("invalid", f"variant_values is a {type(values).__name__}, not a mapping")
    if too_deep(values):  # its text is parsed again later, deeper in the stack
        raise _Invalid("invalid", f"variant_values is nested deeper than {MAX_DEPTH} levels")
    return variant, json.dumps(values, sort_keys=True)


def parse_record(record: dict, run_dir: str) -> dict:
    """One validated row from a decoded record; raises `_Invalid` with the reason."""
    _check_schema(record)
    row: dict = {"run_dir": run_dir}
    for key in _REQUIRED_STRINGS:
        value = record.get(key)
        if not isinstance(value, str) or not value:
            raise _Invalid("invalid", f"{key} is {value!r}, expected a name")
        row[key] = value
    if row["status"] not in STATUSES:
        raise _Invalid("invalid", f"unknown status {row['status']!r} (expected one of {', '.join(STATUSES)})")
    seed = _number(record, "seed", int)
    if seed is None:
        raise _Invalid("invalid", "seed is missing")
    row["seed"] = seed
    row["variant"], row["variant_values"] = _variant(record)
    experiment = record.get("experiment")
    row["experiment"] = (
        experiment if isinstance(experiment, str) and experiment else _experiment_from_path(run_dir, row["variant"])
    )
    for key in _FLOATS:
        row[key] = _number(record, key, float)
    for key in _INTS:
        row[key] = _number(record, key, int)
    for key in _OPTIONAL_STRINGS:
        value = record.get(key)
        row[key] = None if value in (None, "") else str(value)
    row["schema_version"] = record["schema_version"]
    row.update(_sharpness_values(record))
    row[PROTOCOL_COLUMN] = protocol_of(record)
    try:
        row["_config"] = check_config(record.get("config"))
    except ConfigError as exc:
        raise _Invalid("invalid", str(exc)) from None
    if row["status"] == "completed" and (row["test_error"] is None or not math.isfinite(row["test_error"])):
        raise _Invalid("invalid", "status 'completed' but test_error is missing")
    return row


def load_results(root: str | os.PathLike) -> LoadedRuns:
    """Read every record below `root` (a results root, a sweep folder or one run folder).

    Never raises on a bad record: each one becomes a `Problem` instead.
    Raises `FileNotFoundError` only when `root` itself does not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {str(root)!r} does not exist or is not a folder")
    record_dirs, unfinished = find_records(root)
    absolute = root.resolve()  # once: resolving every run folder would cost more than parsing it
    rows: list[dict] = []
    problems: list[Problem] = []
    seen: dict[tuple, str] = {}
    measure_columns: set[str] = set()
    configs: list[dict] = []
    variant_keys: set[str] = set()
    for rel in record_dirs:
        run_dir = str(absolute) if rel == "." else os.path.join(absolute, rel)
        try:
            row = parse_record(_read_json(os.path.join(run_dir, RECORD_NAME)), run_dir)
        except _Invalid as exc:
            problems.append(Problem(rel, exc.kind, str(exc)))
            continue
        except RecursionError:  # a value nested deep enough to exhaust the stack when re-encoded
            problems.append(Problem(rel, "corrupt", "a field is nested too deeply to be a record"))
            continue
        key = tuple(row[k] for k in RUN_KEY)
        if key in seen:
            problems.append(Problem(rel, "duplicate", f"same run as {seen[key]} (kept that one)"))
            continue
        seen[key] = rel
        if row["status"] != "completed":
            reason = row["error"] or "no error message"
            if row["status"] == "diverged" and row["diverged_at_step"] is not None:
                reason = f"diverged at step {row['diverged_at_step']}: {reason}"
            problems.append(Problem(rel, row["status"], one_line(reason)))
        measure_columns.update(k for k in row if k.startswith(SHARPNESS_PREFIX))
        configs.append(row.pop("_config"))
        if row["variant_values"] != "{}":
            variant_keys.update(json.loads(row["variant_values"]))
        rows.append(row)
    for rel in unfinished:
        problems.append(Problem(rel, "incomplete", "no result.json"))
    # The test-set size always, varying or not: the claims need it to tell which test-error
    # differences the runs can resolve (analysis.claim_resolution).
    columns, bad = config_columns(configs, variant_keys | {"dataset.test_size"})
    if bad:  # a bogus config: the record is left out, once, as invalid
        paths = {os.path.relpath(rows[index]["run_dir"], absolute): reason for index, reason in bad.items()}
        problems = [p for p in problems if p.path not in paths]
        problems += [Problem(path, "invalid", reason) for path, reason in paths.items()]
    for name, (values, _) in columns.items():
        for row, value in zip(rows, values):
            row[name] = value
    rows = [row for index, row in enumerate(rows) if index not in bad]
    types = {name: dtype for name, (_, dtype) in columns.items()}
    return LoadedRuns(runs_frame(rows, measure_columns, types), problems, root)


def load_runs(root: str | os.PathLike) -> pd.DataFrame:
    """One row per readable run below `root` (all statuses; tables use the completed ones).

    For the records left out and why, use `load_results(root).problems`.
    """
    return load_results(root).runs


def completed(runs: pd.DataFrame) -> pd.DataFrame:
    """Only the runs whose numbers may enter a mean."""
    return runs[runs["status"] == "completed"]


def sharpness_columns(runs: pd.DataFrame) -> list[str]:
    """The `sharpness.<name>` columns of a runs table, sorted."""
    return sorted(c for c in runs.columns if c.startswith(SHARPNESS_PREFIX))
