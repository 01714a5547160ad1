"""The runs table's columns and dtypes, shared by the loader and the tidy CSV.

Fixing the dtypes in one place is what lets `runs.csv` round-trip: a column
that is empty in every record (no run failed, so `error` is all missing) is
still a string column after `read_runs_csv`, and integer fields that some
records lack (`epochs` of a failed run) stay integers (nullable `Int64`).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

SHARPNESS_PREFIX = "sharpness."

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
    "seed": "int64",
    "status": _STRING,
}
_METRIC_COLUMNS = {name: "float64" for name in ("test_error", "test_loss", "train_error", "train_loss")}
_OTHER_COLUMNS = {
    "epochs": "Int64",
    "steps": "Int64",
    "wall_time_s": "float64",
    "precision": _STRING,
    "git_commit": _STRING,
    "error": _STRING,
    "diverged_at_step": "Int64",
    "schema_version": "int64",
}


def dtypes(sharpness_columns) -> dict:
    """Column -> dtype of a runs table with these `sharpness.<name>` columns, in column order."""
    out = {**_ID_COLUMNS, **_METRIC_COLUMNS}
    out.update({name: "float64" for name in sorted(sharpness_columns)})
    out.update(_OTHER_COLUMNS)
    return out


def runs_frame(rows: list[dict], sharpness_columns) -> pd.DataFrame:
    """One DataFrame from row dicts, built once (never row by row: 10,000 appends are slow)."""
    types = dtypes(sharpness_columns)
    frame = pd.DataFrame.from_records(rows, columns=list(types)) if rows else pd.DataFrame(columns=list(types))
    return frame.astype(types)


def write_runs_csv(runs: pd.DataFrame, path: str | os.PathLike) -> None:
    """The tidy CSV of all runs: one row per run, the same columns as `load_runs`."""
    runs.to_csv(path, index=False)


def read_runs_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV written by `write_runs_csv` back with the same dtypes (a notebook can start here)."""
    header = pd.read_csv(path, nrows=0).columns
    types = dtypes([c for c in header if c.startswith(SHARPNESS_PREFIX)])
    return pd.read_csv(path, dtype={c: t for c, t in types.items() if c in header})
