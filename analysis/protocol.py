"""Which variant of each training and measuring choice a run used, so runs that cannot be compared are told apart.

Two runs of one cell can differ in choices that never enter their folder name:
the sharpness measure's examples (`subset`: the split's first examples, as the
authors', or a seeded random sample) and their normalisation (`normalization`:
the authors' statistics or the training ones) are settings of the measure, and
a saved run can be re-measured with others. The arithmetic (`precision`)
enters the folder name when it differs from the preset's, but a folder made
before the default became fp32 may hold bf16 runs beside fp32 ones.

`protocol_of(record)` writes these choices as one line per run (the `protocol`
column of `analysis.load_runs`); `protocol_note(runs)` is the note a table
gets when its runs do not share one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

PROTOCOL_COLUMN = "protocol"
# What a record made before a setting existed used: the project then drew a seeded random
# sample and normalised as in training.
_BEFORE = {"subset": "random", "normalization": "training"}


def protocol_of(record: Mapping[str, Any]) -> str:
    """`precision=fp32; worst_linf: subset=first, normalization=authors` for one record."""
    parts = [f"precision={record.get('precision') or 'unknown'}"]
    measures = record.get("sharpness")
    if isinstance(measures, Mapping):
        for name in sorted(measures, key=str):
            entry = measures[name]
            if isinstance(entry, Mapping):
                choices = ", ".join(f"{key}={entry.get(key, old)}" for key, old in _BEFORE.items())
                parts.append(f"{name}: {choices}")
    return "; ".join(parts)


def protocol_note(runs: pd.DataFrame) -> str | None:
    """A table note when the completed runs differ in protocol; None when they agree (or nothing says)."""
    if PROTOCOL_COLUMN not in runs.columns or "status" not in runs.columns:
        return None
    counts = runs.loc[runs["status"] == "completed", PROTOCOL_COLUMN].dropna().value_counts()
    if len(counts) <= 1:
        return None
    listed = "; ".join(f"{n} run{'s' if n != 1 else ''} with [{protocol}]" for protocol, n in counts.items())
    return (
        f"Not comparable: these runs were trained or measured differently ({listed}). Relaunch or re-measure "
        f"(python -m sharpness <folder> sharpness.<measure>.<setting>=...) so that they agree."
    )
