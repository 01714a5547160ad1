"""The runs table's columns and dtypes, shared by the loader and the tidy CSV.

Fixing the dtypes in one place is what lets `runs.csv` round-trip: a column
that is empty in every record (no run failed, so `error` is all missing) is
still a string column after `read_runs_csv`, and integer fields that some
records lack (`epochs` of a failed run) stay integers (nullable `Int64`).

The effective config of each run enters as `config.<dotted key>` columns
(only the keys that vary across the folder, see `load`); their dtype follows
their values: `Int64` for integers, `float64` for numbers, `boolean`, and
strings otherwise (lists and mappings as their JSON text).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

SHARPNESS_PREFIX = "sharpness."
CONFIG_PREFIX = "config."

try:  # pandas >= 2.3: strings with NaN as the missing value, like the default str dtype of pandas 3
    _STRING = pd.StringDtype(na_value=np.nan)
except TypeError:  # older pandas: plain object columns
    _STRING = object

# In table order; the sharpness columns (float) go between the metrics and the rest.
_ID_COLUMNS = {
    "run_dir": _STRING,
    "experiment": _STRING,
    "dataset": _STRING,
    "model": _STRING,
    "optimizer": _STRING,
    "schedule": _STRING,
    "variant": _STRING,  # "" for the preset's own values
    "seed": "int64",
    "status": _STRING,
}
_METRIC_COLUMNS = {name: "float64" for name in ("test_error", "test_loss", "train_error", "train_loss")}
_OTHER_COLUMNS = {
    "epochs": "Int64",
    "steps": "Int64",
    "wall_time_s": "float64",
    "precision": _STRING,
    "protocol": _STRING,  # analysis.protocol: precision and each measure's examples and normalisation
    "git_commit": _STRING,
    "error": _STRING,
    "diverged_at_step": "Int64",
    "schema_version": "int64",
    "variant_values": _STRING,  # JSON object of the dotted keys that differ from the preset
}
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?inf|nan")


def dtypes(sharpness_columns, config_types: dict | None = None) -> dict:
    """Column -> dtype of a runs table with these `sharpness.<name>` and config columns, in column order."""
    out = {**_ID_COLUMNS, **_METRIC_COLUMNS}
    out.update({name: "float64" for name in sorted(sharpness_columns)})
    out.update(_OTHER_COLUMNS)
    out.update({name: config_types[name] for name in sorted(config_types or {})})
    return out


def config_dtype(values: list) -> object:
    """The dtype of one config column from its (non-missing) plain values."""
    if values and all(isinstance(v, bool) for v in values):
        return "boolean"
    if any(isinstance(v, bool) for v in values):
        return _STRING
    if all(isinstance(v, int) for v in values):
        return "Int64"
    if all(isinstance(v, (int, float)) for v in values):
        return "float64"
    return _STRING


def config_column(values: list, dtype: object) -> list:
    """Values ready for `astype(dtype)`: strings for a string column (numbers as their text)."""
    if dtype is _STRING:
        return [v if v is None or isinstance(v, str) else _text(v) for v in values]
    return values


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def runs_frame(rows: list[dict], sharpness_columns, config_types: dict | None = None) -> pd.DataFrame:
    """One DataFrame from row dicts, built once (never row by row: 10,000 appends are slow)."""
    types = dtypes(sharpness_columns, config_types)
    frame = pd.DataFrame.from_records(rows, columns=list(types)) if rows else pd.DataFrame(columns=list(types))
    return frame.astype(types)


def write_runs_csv(runs: pd.DataFrame, path: str | os.PathLike) -> None:
    """The tidy CSV of all runs: one row per run, the same columns as `load_runs`."""
    runs.to_csv(path, index=False)


def _parse_text(text: str) -> object:
    """A config value back from its CSV text: bool, int, float, or the text itself."""
    if text in ("True", "False"):
        return text == "True"
    if _INT_TEXT.fullmatch(text):
        return int(text)
    return float(text) if _FLOAT_TEXT.fullmatch(text) else text


def read_runs_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV written by `write_runs_csv` back with the same dtypes (a notebook can start here)."""
    header = pd.read_csv(path, nrows=0).columns
    config = [c for c in header if c.startswith(CONFIG_PREFIX)]
    types = dtypes([c for c in header if c.startswith(SHARPNESS_PREFIX)])
    known = {c: t for c, t in types.items() if c in header}
    frame = pd.read_csv(
        path, dtype={**known, **{c: str for c in config}}, keep_default_na=False, na_values={c: [""] for c in header}
    )
    if "variant" in frame.columns:  # "" (the preset) is written as an empty field
        frame["variant"] = frame["variant"].fillna("")
    for column in config:
        values = [None if isinstance(v, float) else _parse_text(v) for v in frame[column]]
        dtype = config_dtype([v for v in values if v is not None])
        frame[column] = pd.Series(config_column(values, dtype), index=frame.index, dtype=object).astype(dtype)
    return frame
