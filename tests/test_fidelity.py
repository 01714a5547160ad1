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


def test_wide_resnet_starts_from_the_authors_initialisation():
    import torch
    import torch.nn as nn

    from runner.models import wide_resnet

    torch.manual_seed(0)
    authors = wide_resnet(depth=10, widen_factor=4, num_classes=10)
    conv = authors.layers[0].conv2  # 64 -> 64 channels, 3x3: fan_out = 64 * 9
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    assert torch.count_nonzero(authors.linear.bias) == 0
    torch.manual_seed(0)
    default = wide_resnet(depth=10, widen_factor=4, num_classes=10, init="torch")
    assert default.layers[0].conv2.weight.std().item() < 0.6 * conv.weight.std().item()  # kaiming_uniform(a=sqrt 5)
    assert torch.count_nonzero(default.linear.bias) > 0
    assert isinstance(authors.linear, nn.Linear)
    with pytest.raises(ValueError, match="init='xavier' must be one of authors, torch"):
        wide_resnet(depth=10, widen_factor=1, init="xavier")


def test_the_authors_vit_has_their_layers_and_initialisation():
    import torch

    from runner.models import vit

    torch.manual_seed(0)
    model = vit(num_classes=100)  # the vit_tiny sizes
    block = model.blocks[0]
    assert block.attn.qkv.bias is None and block.attn.out.bias is not None
    assert all(b.drop_path is model.blocks[0].drop_path for b in model.blocks)  # one rate for every block
    assert model.pos_embed.std().item() == pytest.approx(1.0, rel=0.05)  # N(0, 1), not timm's 0.02
    fan = 192 + 192 * 3
    assert block.attn.qkv.weight.std().item() == pytest.approx((2 / fan) ** 0.5, rel=0.05)  # xavier-normal
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    timm = vit(num_classes=100, architecture="timm")
    # the same sizes; the difference is the qkv bias (3 x 192 per block, 9 blocks)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(timm) - count(model) == 9 * 3 * 192


def test_the_authors_patches_are_flattened_row_by_row_with_channels_last():
    import torch

    from runner.models.vit import AuthorsViT

    model = AuthorsViT(8, 4, 16, 1, 2, 2.0, 10, 3, 0.0)
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = model.patchify(images)
    assert patches.shape == (2, 4, 48)
    # patch (row 0, column 1) of image 1: pixel (0, 4) first, all three channels, then (0, 5) ...
    expected = torch.stack([images[1, c, 0, 4] for c in range(3)])
    assert torch.equal(patches[1, 1, :3], expected)
    assert torch.equal(patches[1, 1, 3:6], torch.stack([images[1, c, 0, 5] for c in range(3)]))


def write_record(root: Path, seed: int, subset: str, precision: str = "fp32") -> None:
    import json

    folder = root / "paper" / "cifar10-resnet18" / "sgd-constant" / f"seed={seed}"
    folder.mkdir(parents=True)
    entry = {"value": 1.0 + seed, "kind": "worst_case", "subset": subset, "normalization": "authors"}
    record = {
        "schema_version": 2,
        "status": "completed",
        "experiment": "paper",
        "dataset": "cifar10",
        "model": "resnet18",
        "optimizer": "sgd",
        "schedule": "constant",
        "seed": seed,
        "variant": "",
        "variant_values": {},
        "test_error": 7.0,
        "sharpness": {"worst_linf": entry},
        "precision": precision,
        "config": {},
    }
    (folder / "result.json").write_text(json.dumps(record))


def test_analysis_flags_a_table_whose_runs_were_measured_differently(tmp_path):
    from analysis import load_runs, paper_table

    write_record(tmp_path, 0, "first")
    write_record(tmp_path, 1, "first")
    runs = load_runs(tmp_path)
    assert set(runs["protocol"]) == {"precision=fp32; worst_linf: subset=first, normalization=authors"}
    assert not any("Not comparable" in note for note in paper_table(runs, "cifar10", "resnet18").notes)
    write_record(tmp_path, 2, "random")
    notes = paper_table(load_runs(tmp_path), "cifar10", "resnet18").notes
    (note,) = [n for n in notes if n.startswith("Not comparable")]
    assert "2 runs with [precision=fp32; worst_linf: subset=first" in note and "1 run with" in note
    assert "subset=random" in note


def test_the_vit_recipe_erases_and_fills_as_the_authors_do():
    from torchvision import transforms as T

    from runner.data import build_transform, mixup_cutmix

    dataset = dict(composed("cifar100_vit_tiny").dataset)
    steps = build_transform(dataset, train=True, augment=True).transforms
    (erasing,) = [s for s in steps if isinstance(s, T.RandomErasing)]
    assert erasing.p == 0.25 and erasing.scale == (0.02, 0.4) and erasing.ratio == pytest.approx((0.3, 1 / 0.3))
    assert erasing.value == pytest.approx(list(dataset["mean"]))  # the mean pixel values, not 0
    (policy,) = [s for s in steps if isinstance(s, T.AutoAugment)]
    assert policy.fill == [128, 128, 128]
    mixing = mixup_cutmix({"mixup_prob": 0.5, "label_smoothing": 0.1}, 100)
    assert mixing.mixup_alpha == 1.0 and mixing.cutmix_alpha == 1.0 and mixing.switch_prob == 0.5


def test_choices_of_the_authors_networks_and_epochs_are_validated_before_anything_runs():
    from runner.sweep.validate import problems

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        wrn = compose("config", overrides=["experiment=paper/cifar10_wrn28_10", "model.init=xavier"])
        vit_cfg = compose("config", overrides=["experiment=paper/cifar100_vit_tiny", "model.architecture=deit"])
        repeats = compose("config", overrides=["dataset=digits", "train.repeated_aug=3"])
    assert any(line.startswith("model.init=") and "authors" in line for line in problems(wrn, check_environment=False))
    assert any("model.architecture=" in line and "timm" in line for line in problems(vit_cfg, check_environment=False))
    assert any("train.repeated_aug=3 needs dataset.loader=torchvision" in line for line in problems(repeats))


def reference_vit_forward(model, images):
    """The authors' forward pass written out with einsum, as models/ViT.py computes it, on `model`'s weights."""
    import torch

    p, (batch, channels, height, width) = model.patch_size, images.shape
    # 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
    patches = images.reshape(batch, channels, height // p, p, width // p, p).permute(0, 2, 4, 3, 5, 1)
    x = model.patch_embed(patches.reshape(batch, -1, p * p * channels))
    x = torch.cat([model.cls_token.expand(batch, -1, -1), x], dim=1) + model.pos_embed
    for block in model.blocks:
        heads = block.attn.heads
        q, k, v = block.attn.qkv(block.norm1(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(batch, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        dots = torch.einsum("bhid,bhjd->bhij", q, k) * q.shape[-1] ** -0.5
        out = torch.einsum("bhij,bhjd->bhid", dots.softmax(dim=-1), v).transpose(1, 2).reshape(x.shape)
        x = block.attn.out(out) + x
        x = block.mlp(block.norm2(x)) + x
    return model.head(x[:, 0])


def test_the_authors_vit_computes_what_their_forward_pass_computes():
    import torch

    from runner.models import vit

    torch.manual_seed(1)
    model = vit(img_size=16, patch_size=4, embed_dim=24, depth=2, num_heads=3, num_classes=5).eval()
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(images), reference_vit_forward(model, images), atol=1e-5)
