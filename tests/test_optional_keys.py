"""Every setting a loader reads is a key the launch line may add.

The launch refuses `+key=value` for keys the project never reads (a typo would
otherwise train the default cell). A loader that reads an optional setting
(`dataset.verify_checksums`, `dataset.cache_dir`) must therefore have it in the
schema, or the setting its own error message recommends would be refused.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from runner.sweep.validate import KEYS
from runner.sweep.value_checks import added_key_problems

REPO = Path(__file__).resolve().parents[1]
READ = re.compile(r'setting\(dataset_cfg, "([a-z_]+)"')


def _keys_read_by_loaders() -> set[str]:
    found: set[str] = set()
    for module in (REPO / "runner" / "data").glob("*.py"):
        found.update(READ.findall(module.read_text()))
    return found


def _keys_every_dataset_defines() -> set[str]:
    files = list((REPO / "conf" / "dataset").glob("*.yaml"))
    defined = [set(re.findall(r"^([a-z_]+):", path.read_text(), re.M)) for path in files]
    return set.intersection(*defined)


def test_the_loaders_read_settings_at_all():
    assert {"verify_checksums", "cache_dir"} <= _keys_read_by_loaders()


def test_every_setting_a_loader_reads_is_in_the_schema_or_every_dataset():
    missing = sorted(
        key
        for key in _keys_read_by_loaders()
        if f"dataset.{key}" not in KEYS and key not in _keys_every_dataset_defines()
    )
    # digits' and synthetic's own keys (test_fraction, seed) live in their YAML files.
    own = {"test_fraction", "seed"}
    assert [key for key in missing if key not in own] == []


@pytest.mark.parametrize("override", ["+dataset.verify_checksums=false", "+dataset.cache_dir=/tmp"])
def test_an_optional_loader_setting_can_be_added(override):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["dataset=cifar10", override], return_hydra_config=True)
    assert added_key_problems([override], cfg, KEYS) == []
