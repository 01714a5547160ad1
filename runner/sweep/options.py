"""The options of each config group, read from every config source a command composes from.

Names a config may give (`optimizer.name`, `schedule.name`, the measures of `sharpness=`) are the
options found in the config groups, never a list written in code: the project's conf/, a user's
`--config-dir`, `hydra.searchpath` entries and the packages installed extensions declare
(`sam_sweeps.conf` entry points). Inside a Hydra command the sources are the ones Hydra records
in `hydra.runtime.config_sources`; outside one (a notebook, a test) they are the project's
conf/ and the installed extensions' packages. Files are read as data (OmegaConf.load), never
imported (YAML is parsed as plain data). No torch here: the sweeper and the status tool import this.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.resources
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from runner.sweep.config_dir import config_dir

CONF_ENTRY_POINTS = "sam_sweeps.conf"


def extension_config_packages() -> list[str]:
    """Packages of YAML config groups that installed extensions declare, in a stable order."""
    found = importlib.metadata.entry_points(group=CONF_ENTRY_POINTS)
    return sorted({entry_point.value.strip() for entry_point in found})


def is_project_source(path: str) -> bool:
    """Whether a search-path entry is the project's own conf/ (checkout or installed copy)."""
    try:
        own = config_dir()
    except FileNotFoundError:
        return False
    text = str(path)
    for prefix in ("file://", "pkg://"):
        text = text.removeprefix(prefix)
    return text.replace(".", "/").rstrip("/").endswith("sam_sweeps_conf") or _same_path(text, own)


def _same_path(text: str, own: Path) -> bool:
    try:
        return Path(text).resolve() == own.resolve()
    except (OSError, ValueError):
        return False


def _sources_of(cfg: DictConfig | None) -> list[str] | None:
    """`schema://path` of each config source Hydra recorded in this config, or in the running command."""
    recorded: Any = None
    if cfg is not None:
        recorded = OmegaConf.select(cfg, "hydra.runtime.config_sources", default=None)
    if recorded is None:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            recorded = OmegaConf.select(HydraConfig.get(), "runtime.config_sources", default=None)
    if not recorded:
        return None
    return [f"{source.schema}://{source.path}" for source in recorded if source.path]


def default_sources() -> list[str]:
    """The sources outside a Hydra command: the project's conf/ and the installed extensions' configs."""
    return [f"file://{config_dir()}", *(f"pkg://{package}" for package in extension_config_packages())]


def _group_files(source: str, group: str) -> Iterator[tuple[str, Any]]:
    """(option name, a readable file) of every `.yaml` option of `group` in one source."""
    schema, _, path = source.partition("://")
    if schema == "file":
        folder: Any = Path(path) / group
    elif schema == "pkg":
        try:
            folder = importlib.resources.files(path.replace("/", ".").strip("."))
        except (ModuleNotFoundError, TypeError, ValueError):
            return
        for part in group.split("/"):
            folder = folder / part
    else:  # structured:// (Python dataclasses in Hydra's ConfigStore) holds no YAML options
        return
    try:
        entries = sorted(folder.iterdir(), key=lambda entry: entry.name) if folder.is_dir() else []
    except OSError:
        return
    for entry in entries:
        if entry.name.endswith(".yaml") and entry.is_file():
            yield entry.name.removesuffix(".yaml"), entry


def group_options(group: str, cfg: DictConfig | None = None, sources: Iterable[str] | None = None) -> list[str]:
    """Option names of a config group (`schedule` -> batch, constant, cosine, ...), sorted."""
    chosen = list(sources) if sources is not None else _sources_of(cfg) or default_sources()
    return sorted({name for source in chosen for name, _ in _group_files(source, group)})


def declared_names(group: str, cfg: DictConfig | None = None, sources: Iterable[str] | None = None) -> list[str]:
    """The `name:` each option of `group` declares (its file name when it declares none), sorted.

    `schedule/cosine_warm.yaml` with `name: cosine_warm` makes `cosine_warm` a schedule name;
    these are the values `runner.sweep.validate` accepts for `<group>.name`.
    """
    chosen = list(sources) if sources is not None else _sources_of(cfg) or default_sources()
    return sorted(_declared(group, tuple(chosen)))


@functools.lru_cache(maxsize=64)
def _declared(group: str, sources: tuple[str, ...]) -> frozenset[str]:
    """Read once per process: a sweeper validates every cell against the same sources."""
    names = set()
    for source in sources:
        for option, entry in _group_files(source, group):
            try:
                content = yaml.safe_load(entry.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):  # Hydra reports it if it is selected
                content = None
            name = content.get("name") if isinstance(content, dict) else None
            names.add(name if isinstance(name, str) and "${" not in name else option)
    return frozenset(names)
