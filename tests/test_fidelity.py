"""The paper presets against the fidelity table: every row's keys, composed with Hydra, and the page that shows it."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import runner  # noqa: F401  (registers the config resolvers)
from analysis.fidelity import BEGIN, END, read_rows, render, replace_in

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
PRESETS = sorted(p.stem for p in (CONF / "experiment" / "paper").glob("*.yaml"))
ROWS = read_rows()


@cache
def composed(preset: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"experiment=paper/{preset}"])


def value_at(cfg, key: str):
    node = OmegaConf.select(cfg, key, default=KeyError)
    assert node is not KeyError, f"{key} is not a key of the composed config"
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_to_the_values_the_table_gives(preset):
    cfg = composed(preset)
    checked = 0
    for row in ROWS:
        if not row.applies_to(preset, str(cfg.model.family)):
            continue
        for key, expected in row.config.items():
            assert value_at(cfg, key) == expected, f"{row.setting}: {key} of paper/{preset}"
            checked += 1
    assert checked >= 10  # the preset is held to the table, not skipped by a pattern


def test_every_row_applies_to_some_preset_and_says_where_the_authors_have_it():
    for row in ROWS:
        assert any(row.applies_to(p, str(composed(p).model.family)) for p in PRESETS), row.setting
        assert row.authors and row.authors_file, row.setting
        if row.status != "same":
            assert row.note, f"{row.setting}: a difference needs its reason"


def test_the_page_shows_the_table_of_the_file():
    page = (REPO / "docs" / "paper.md").read_text(encoding="utf-8")
    assert page.count(BEGIN) == 1 and page.count(END) == 1
    assert render(ROWS) in page


def test_a_value_that_left_the_table_is_caught():
    text = (REPO / "analysis" / "data" / "fidelity.csv").read_text(encoding="utf-8")
    changed = read_rows(text.replace("{model.init: authors}", "{model.init: torch}"))
    row = next(r for r in changed if r.config.get("model.init") == "torch")
    assert value_at(composed("cifar10_wrn28_10"), "model.init") != row.config["model.init"]


def test_bad_rows_are_refused_with_the_line():
    header = "setting,presets,authors,authors_file,config,status,note\n"
    with pytest.raises(ValueError, match="line 2: status='maybe'"):
        read_rows(header + "x,*,a,f,,maybe,\n")
    with pytest.raises(ValueError, match="line 2: config must be a YAML mapping"):
        read_rows(header + "x,*,a,f,[1],same,\n")
    with pytest.raises(ValueError, match="no fidelity table markers"):
        replace_in("a page", "table")
