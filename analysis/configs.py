"""A run's effective config as flat `config.<dotted key>` columns of the runs table.

A sweep over a hyperparameter (rho, lr, batch sizes, widths) is only legible
when each run's values sit next to its numbers. Every record carries its
resolved config; it is flattened to dotted keys (`optimizer.rho`,
`train.increasing_batch_sizes`), and the keys whose value differs between
the folder's records become columns, together with every key a record names
in `variant_values`. Keys that are the same everywhere say nothing about the
folder and are left out, as are the keys that only say where a run lives or
repeat an identity column (`run_dir`, `seed`, `optimizer.name`, `hydra.*`).

Records come from shared folders, so the walk is iterative and bounded: a
config nested deeper than `MAX_DEPTH` or holding more than `MAX_KEYS` keys is
a bogus record, not a reason to crash or stall.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .columns import CONFIG_PREFIX, config_column, config_dtype

MAX_DEPTH = 32
MAX_KEYS = 5000
MAX_TEXT = 1000  # characters of a list or mapping value kept in its column

# Keys (and everything below them) that never become columns: where a run lives, how it was
# shown, or a repeat of an identity column of the runs table.
_SKIPPED = frozenset(
    {
        "hydra",
        "run_dir",
        "results_root",
        "data_dir",
        "experiment_name",
        "seed",
        "variant",
        "force",
        "progress",
        "keep_checkpoint",
        "dataset.name",
        "model.name",
        "optimizer.name",
        "schedule.name",
        "dataset.root",
        "dataset.download",
        "dataset.num_workers",
    }
)
_SKIPPED_LEAVES = ("_target_", "_partial_")


class ConfigError(ValueError):
    """A config that cannot be flattened (too deep, too large, not a mapping)."""


_ABSENT = object()


def plain_value(value: Any) -> Any:
    """A config leaf as a column value: numbers, bools and strings as they are, lists and mappings as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and mappings in `value` nest deeper than `limit` (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack += [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]
    return False


def check_config(config: Any) -> dict:
    """The record's config as a mapping ({} when absent); raises `ConfigError` for any other type."""
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(f"config is a {type(config).__name__}, not a mapping")
    return config


def _skipped(dotted: str, key: object) -> bool:
    return dotted in _SKIPPED or key in _SKIPPED_LEAVES


def flatten_config(config: dict, reference: dict | None = None, reference_flat: dict | None = None) -> dict:
    """`{"optimizer": {"rho": 0.05}}` -> `{"optimizer.rho": 0.05}`; raises `ConfigError` on a bogus config.

    With a `reference` (another record's config, and its flattening), only
    what differs from it is flattened: equal subtrees are skipped with one
    C-level comparison, and keys the reference has but this config lacks map
    to None. A sweep's records share almost all of their config, so this is
    what keeps 10,000 records fast. Lists stay whole values (JSON text).
    """
    flat: dict[str, Any] = {}
    stack: list[tuple[str, dict, dict | None, int]] = [("", config, reference, 0)]
    while stack:
        prefix, node, ref, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(f"config is nested deeper than {MAX_DEPTH} levels")
        for key, value in node.items():
            other = _ABSENT if ref is None else ref.get(key, _ABSENT)
            if other is not _ABSENT and type(other) is type(value) and other == value:
                continue  # checked first: most of a sweep's config equals the reference
            dotted = f"{prefix}{key}"
            if _skipped(dotted, key):
                continue
            if isinstance(value, dict):
                stack.append((dotted + ".", value, other if isinstance(other, dict) else None, depth + 1))
                if other is not _ABSENT and not isinstance(other, dict):
                    flat[dotted] = None
            else:
                flat[dotted] = plain_value(value)
                if isinstance(other, dict):
                    flat.update(_under(reference_flat, dotted))
            if len(flat) + len(stack) > MAX_KEYS:
                raise ConfigError(f"config has more than {MAX_KEYS} keys")
        if ref is not None:
            for key in ref.keys() - node.keys():
                dotted = f"{prefix}{key}"
                if not _skipped(dotted, key):
                    flat.update(_under(reference_flat, dotted) if isinstance(ref[key], dict) else {dotted: None})
    return flat


def _under(reference_flat: dict | None, dotted: str) -> dict[str, None]:
    """The reference's keys below `dotted`, as missing (None) for a config that lacks that subtree."""
    start = dotted + "."
    return {k: None for k in (reference_flat or {}) if k.startswith(start)}


def _hashable(value: Any) -> Any:
    # NaN != NaN would make a constant NaN look like it varies; True == 1 must not hide a change.
    return "nan" if isinstance(value, float) and math.isnan(value) else (type(value) is bool, value)


def config_columns(configs: list[dict], always: set[str]) -> tuple[dict[str, tuple[list, object]], dict[int, str]]:
    """Columns for the keys that vary across `configs` (one checked mapping per row), plus `always`.

    Returns (column name -> (values per row, dtype), row index -> why its
    config cannot be used). A key varies when the rows that have it hold more
    than one value; a key present in some rows only (GSAM's `alpha`) but
    equal wherever it is present does not.
    """
    reference = next((c for c in configs if c), {})
    errors: dict[int, str] = {}
    try:
        reference_flat = flatten_config(reference)
    except (ConfigError, RecursionError) as exc:
        reference_flat, reference = {}, {}
        errors[next(i for i, c in enumerate(configs) if c)] = str(exc) or "config nested too deeply"
    diffs: list[dict] = []
    for index, config in enumerate(configs):
        try:
            diffs.append({} if index in errors else flatten_config(config, reference, reference_flat))
        except (ConfigError, RecursionError) as exc:
            errors[index] = str(exc) if isinstance(exc, ConfigError) else "config nested too deeply"
            diffs.append({})
    distinct: dict[str, set] = {k: {_hashable(v)} for k, v in reference_flat.items() if v is not None}
    for index, diff in enumerate(diffs):
        if index not in errors:
            for key, value in diff.items():
                if value is not None:
                    distinct.setdefault(key, set()).add(_hashable(value))
    keys = {k for k, values in distinct.items() if len(values) > 1} | {k for k in always if k in distinct}
    columns = {}
    for key in sorted(keys):
        default = reference_flat.get(key)
        values = [None if i in errors else diff.get(key, default) for i, diff in enumerate(diffs)]
        dtype = config_dtype([v for v in values if v is not None])
        columns[CONFIG_PREFIX + key] = (config_column(values, dtype), dtype)
    return columns, errors
