"""Where this installation's Hydra configs (the repository's conf/) are.

A checkout reads its own conf/ next to launch.py. A wheel carries the same
files as the data-only package `sam_sweeps_conf` (pyproject.toml maps it to
conf/, so no copy is kept in the repository), which `sam-train` and
`sam-sharpness` read when no checkout is around. The checkout wins when the
code itself comes from one, so code and configs never come from two versions.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONF_PACKAGE = "sam_sweeps_conf"
PRIMARY_CONFIG = "config.yaml"


def _checkout_conf() -> Path | None:
    """conf/ of the checkout this package was imported from, if it was (launch.py marks a checkout)."""
    root = Path(__file__).resolve().parents[2]  # runner/sweep/config_dir.py -> the checkout
    conf = root / "conf"
    return conf if (root / "launch.py").is_file() and (conf / PRIMARY_CONFIG).is_file() else None


def _packaged_conf() -> Path | None:
    """The installed `sam_sweeps_conf` package's folder, if one holds the primary config."""
    try:
        spec = importlib.util.find_spec(CONF_PACKAGE)
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / PRIMARY_CONFIG).is_file():
            return Path(location)
    return None


def config_dir() -> Path:
    """The absolute path of the conf/ folder to compose from (checkout first, then the installed package)."""
    found = _checkout_conf() or _packaged_conf()
    if found is None:
        raise FileNotFoundError(
            f"no configs found: neither a checkout's conf/{PRIMARY_CONFIG} next to "
            f"{Path(__file__).resolve().parents[1]} nor the installed package {CONF_PACKAGE!r}; "
            f"reinstall with `pip install .` from the repository"
        )
    return found
