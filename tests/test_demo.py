"""The demo and study presets: what `make demo` and the documented study launch, checked without training.

`make demo` is `python launch.py -m experiment=demo`, so the preset alone must pick
the local launcher, one torch thread per cell and its seed list; the study extends
it with five seeds and documents a step-matched control whose epoch count must
follow the study's stages. Both are checked here by composing the configs as
Hydra does for a multirun (with the hydra node) and expanding the sweep as the
basic grid sweeper would. The demo itself runs end to end only under `-m slow`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

import runner  # noqa: F401  (registers the config resolvers)
from runner.data.digits import load_digits_tensors, upsample
from runner.training.schedule import Schedule

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
STUDY_FILE = CONF / "experiment" / "digits_study.yaml"
GRID = {(opt, sched) for opt in ("sgd", "sam", "gsam") for sched in ("constant", "batch", "cosine")}
# The study's control, as its preset documents it (the overrides after the preset's name).
CONTROL_COMMAND = re.compile(r"python launch\.py -m experiment=digits_study (schedule=constant train\.epochs=\d+)")


def compose_multirun(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def sweep_jobs(cfg: DictConfig, command_line: list[str] = ()) -> list[dict[str, str]]:
    """The jobs of `python launch.py -m <preset> <command_line>`: the preset's sweep params, then the command line."""
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    overrides = OverridesParser.create().parse_overrides([*params, *command_line])
    return [
        dict(item.split("=", 1) for item in job)
        for batch in BasicSweeper.split_arguments(overrides, None)
        for job in batch
    ]


def total_steps(cfg: DictConfig) -> int:
    """Optimizer steps of a cell, from its stages and the training-set size (the last partial batch dropped)."""
    train_size = int(cfg.dataset.train_size)
    return sum(int(stage.epochs) * (train_size // int(stage.batch_size)) for stage in cfg.schedule.stages)


def control_overrides() -> list[str]:
    found = CONTROL_COMMAND.findall(STUDY_FILE.read_text(encoding="utf-8"))
    assert len(found) == 1, f"{STUDY_FILE.name} must document the control command once, found {found}"
    return found[0].split()


@pytest.mark.parametrize(
    "preset, seeds, launcher, target",
    [
        # one worker per core (joblib's loky pool), each training cell after cell
        ("demo", 2, "pool", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"),
        # every cell its own process, as the study's committed run was timed
        ("digits_study", 5, "local", "hydra_plugins.sam_sweeps.LocalLauncher"),
    ],
)
def test_preset_sweeps_the_grid_over_its_seeds_on_a_local_launcher(preset, seeds, launcher, target):
    cfg = compose_multirun([f"experiment={preset}"])
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher
    assert cfg.hydra.launcher._target_ == target
    assert cfg.experiment_name == preset
    assert cfg.device == "cpu" and cfg.cpu_threads == 1
    jobs = sweep_jobs(cfg)
    seed_list = sorted({int(job["seed"]) for job in jobs})
    assert len(seed_list) == seeds
    assert len(jobs) == 9 * seeds
    for seed in seed_list:  # every seed trains the whole grid, once
        cells = [(job["optimizer"], job["schedule"]) for job in jobs if int(job["seed"]) == seed]
        assert sorted(cells) == sorted(GRID)


def test_demo_records_the_gradient_norm_cheaply_and_trains_on_upsampled_digits():
    cfg = compose_multirun(["experiment=demo"])
    assert 0 < cfg.train.grad_norm_examples <= 512 < cfg.dataset.train_size
    assert cfg.dataset.name == "digits" and cfg.dataset.image_size == 12
    assert cfg.model.width == 12 and cfg.optimizer.lr == 0.02 and cfg.dataset.augment == "crop"
    # one worker per core, each cell's log in its own folder rather than repeated on the terminal
    assert cfg.hydra.launcher.n_jobs == -1 and str(cfg.hydra.launcher.batch_size) == "1"
    assert list(cfg.hydra.job_logging.root.handlers) == ["file"]


def test_demo_command_line_seeds_replace_the_preset_seeds():
    """The held-out check (`seed=5,6`) trains the same grid for those seeds only."""
    jobs = sweep_jobs(compose_multirun(["experiment=demo"]), ["seed=5,6"])
    assert sorted({job["seed"] for job in jobs}) == ["5", "6"] and len(jobs) == 18


def test_study_is_the_demo_with_more_seeds_in_the_layout_of_its_published_run():
    demo, study = compose_multirun(["experiment=demo"]), compose_multirun(["experiment=digits_study"])
    for key in ("sam", "schedule", "sharpness"):
        assert study[key] == demo[key], key
    # The demo crops without mirroring (a mirrored digit is another glyph); the study keeps the
    # paper's crop + flip of its committed run. Nothing else of the data differs.
    assert (study.dataset.augment, demo.dataset.augment) == ("crop_flip", "crop")
    assert {k: v for k, v in study.dataset.items() if k != "augment"} == {
        k: v for k, v in demo.dataset.items() if k != "augment"
    }
    # The study's committed curves took the gradient norm on 256 examples; nothing else of train differs.
    assert (study.train.grad_norm_examples, demo.train.grad_norm_examples) == (256, 128)
    assert {k: v for k, v in study.train.items() if k != "grad_norm_examples"} == {
        k: v for k, v in demo.train.items() if k != "grad_norm_examples"
    }
    assert study.model == demo.model
    # The study keeps the lr of its committed run; the demo moved to one whose constant-lr cells settle.
    assert (study.optimizer.lr, demo.optimizer.lr) == (0.1, 0.02)
    assert {k: v for k, v in study.optimizer.items() if k != "lr"} == {
        k: v for k, v in demo.optimizer.items() if k != "lr"
    }
    # The demo trains channels-last for speed; the study keeps the layout its committed run used.
    assert demo.channels_last is True and study.channels_last is False
    demo_seeds = {job["seed"] for job in sweep_jobs(demo)}
    assert demo_seeds < {job["seed"] for job in sweep_jobs(study)}
    # At most 18 cells (~10 GB) launched at once; the study has 45.
    assert study.hydra.sweeper.max_batch_size == 18


def test_study_control_takes_as_many_steps_as_increasing_batch():
    control = control_overrides()
    batch = compose_multirun(["experiment=digits_study", "schedule=batch"])
    constant = compose_multirun(["experiment=digits_study", "schedule=constant"])
    matched = compose_multirun(["experiment=digits_study", *control])

    # Only the length changes: same batch size, lr, data and model as the study's constant cell.
    assert matched.schedule.name == "constant" and matched.schedule.lr_policy == "constant"
    assert [s.batch_size for s in matched.schedule.stages] == [s.batch_size for s in constant.schedule.stages]
    for key in ("optimizer", "dataset", "model"):
        assert matched[key] == constant[key], key

    # The epochs whose steps come nearest to + B's, counted as the loader counts them.
    per_epoch = matched.dataset.train_size // matched.schedule.stages[0].batch_size
    target = total_steps(batch)
    assert total_steps(constant) < target  # + B trains longer than the constant cell: the reason for the control
    assert abs(total_steps(matched) - target) <= per_epoch / 2, (total_steps(matched), target)
    assert matched.train.epochs == round(target / per_epoch)
    for cfg in (batch, matched):  # the runner's own count agrees
        assert Schedule.from_config(cfg.schedule, int(cfg.dataset.train_size)).total_steps == total_steps(cfg)


def test_study_control_sweeps_every_optimizer_and_seed_at_constant_batch():
    study = compose_multirun(["experiment=digits_study"])
    jobs = sweep_jobs(study, control_overrides())
    assert {job["schedule"] for job in jobs} == {"constant"}
    assert sorted((job["optimizer"], job["seed"]) for job in jobs) == sorted(
        (opt, str(seed)) for opt in ("sgd", "sam", "gsam") for seed in range(5)
    )


def test_train_size_is_the_real_split():
    """The step counts above trust dataset.train_size; it must be the digits split the runner loads."""
    cfg = compose_multirun(["experiment=demo"])
    images, labels = load_digits_tensors(cfg.dataset, "train")
    assert len(labels) == cfg.dataset.train_size
    assert tuple(images.shape[1:]) == (1, cfg.dataset.image_size, cfg.dataset.image_size)


def test_upsampling_keeps_the_native_size_and_the_pixel_range():
    digits = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8).repeat(3, 1, 4, 4)  # 3x1x8x8
    assert upsample(digits, 8) is digits
    big = upsample(digits, 12)
    assert big.dtype == torch.uint8 and big.shape == (3, 1, 12, 12)
    assert int(big.min()) >= 0 and int(big.max()) <= 255 and 0 < float(big.float().mean()) < 255
    flat = torch.full((1, 1, 8, 8), 77, dtype=torch.uint8)
    assert torch.equal(upsample(flat, 16), torch.full((1, 1, 16, 16), 77, dtype=torch.uint8))


@pytest.mark.parametrize("size", [4, 7, 12.5, "12", True])
def test_bad_image_size_is_one_line_naming_the_value(size):
    with pytest.raises(ValueError, match=r"dataset\.image_size=.* must be an integer >= 8"):
        load_digits_tensors({"name": "digits", "test_fraction": 0.2, "seed": 0, "image_size": size}, "train")


def demo_claim_failures(records: list[dict]) -> list[str]:
    """The paper's sharpness orderings the demo must show, checked in every seed; one line per failure.

    + B flatter than constant for each optimizer, and SAM and GSAM flatter than SGD
    at a constant lr and with + C, plus every cell trained below 3 %
    training error (every cell ends below 0.5 %).
    """
    cells: dict[int, dict[tuple[str, str], dict]] = {}
    for record in records:
        cells.setdefault(int(record["seed"]), {})[(record["optimizer"], record["schedule"])] = record
    failures = [
        f"seed {r['seed']} {r['optimizer']}-{r['schedule']}: training error {r['train_error']:.2f} %"
        for r in records
        if r["train_error"] >= 3.0
    ]
    pairs = [((opt, "batch"), (opt, "constant")) for opt in ("sgd", "sam", "gsam")]
    pairs += [((opt, sched), ("sgd", sched)) for sched in ("constant", "cosine") for opt in ("sam", "gsam")]
    for seed, found in sorted(cells.items()):
        for lower, higher in pairs:
            low, high = (float(found[c]["sharpness"]["worst_linf"]["value"]) for c in (lower, higher))
            if not low < high:
                failures.append(
                    f"seed {seed}: sharpness of {'-'.join(lower)} {low:.4f} is not below {'-'.join(higher)} {high:.4f}"
                )
    return failures


def test_claim_check_reports_a_reversed_pair_and_an_unconverged_cell():
    def record(opt: str, sched: str, sharpness: float, train_error: float = 1.0) -> dict:
        return {
            "seed": 0,
            "optimizer": opt,
            "schedule": sched,
            "train_error": train_error,
            "sharpness": {"worst_linf": {"value": sharpness}},
        }

    good = [
        record("sgd", "constant", 0.5),
        record("sam", "constant", 0.2),
        record("gsam", "constant", 0.2),
        record("sgd", "batch", 0.1),
        record("sam", "batch", 0.1),
        record("gsam", "batch", 0.1),
        record("sgd", "cosine", 0.3),
        record("sam", "cosine", 0.15),
        record("gsam", "cosine", 0.15),
    ]
    assert demo_claim_failures(good) == []
    bad = [*good[:-1], record("gsam", "cosine", 0.3, train_error=4.0)]
    assert demo_claim_failures(bad) == [
        "seed 0 gsam-cosine: training error 4.00 %",
        "seed 0: sharpness of gsam-cosine 0.3000 is not below sgd-cosine 0.3000",
    ]


@pytest.mark.slow
def test_demo_end_to_end_reproduces_the_sharpness_claims(tmp_path):
    """`make demo` without its setup step: 18 cells, then the analysis.

    8-10 minutes on two cores of the development machine's kind, 33-40 or more on a first-generation
    EPYC (docs/benchmarks.md), hence the hour allowed.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAM_RESULTS_ROOT": str(tmp_path)}
    subprocess.run(
        [sys.executable, str(REPO / "launch.py"), "-m", "experiment=demo"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        timeout=3600,
    )
    analysis = subprocess.run(
        [sys.executable, "-m", "analysis", str(tmp_path / "demo")],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    records = [json.loads(p.read_text()) for p in (tmp_path / "demo").rglob("result.json")]
    assert len(records) == 18 and all(r["status"] == "completed" for r in records)
    assert sorted({r["seed"] for r in records}) == [0, 1]
    assert demo_claim_failures(records) == []
    assert "the paper's claims" in analysis.stdout


def test_orderings_table_gives_every_seed_its_seven_ratios_and_fails_on_a_reversed_pair(tmp_path, capsys):
    """bench/demo_orderings.py: what docs/benchmarks.md lists for every seed run, and its exit status."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import demo_orderings
    finally:
        sys.path.remove(str(REPO / "bench"))
    sharpness = {"constant": 1.0, "batch": 0.2, "cosine": 0.8}
    for seed in (0, 3):
        for opt in ("sgd", "sam", "gsam"):
            for sched, value in sharpness.items():
                run_dir = tmp_path / "demo" / "digits-resnet18" / f"{opt}-{sched}" / f"seed={seed}"
                run_dir.mkdir(parents=True)
                flatter = 1.0 if opt == "sgd" else 0.5
                if (seed, opt, sched) == (3, "gsam", "constant"):
                    flatter = 1.5  # GSAM sharper than SGD at a constant lr in seed 3
                record = {
                    "schema_version": 2,
                    "status": "completed",
                    "experiment": "demo",
                    "dataset": "digits",
                    "model": "resnet18",
                    "optimizer": opt,
                    "schedule": sched,
                    "seed": seed,
                    "variant": "",
                    "variant_values": {},
                    "test_error": 2.0,
                    "sharpness": {"worst_linf": {"value": value * flatter}},
                    "config": {},
                }
                (run_dir / "result.json").write_text(json.dumps(record))
    assert demo_orderings.main([str(tmp_path)]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| ordering") and "| seed 0 | seed 3 |" in table[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert len(rows) == 7
    assert rows["SGD + B < SGD"].endswith("| 0.200 | 0.200 | 0.200 | 2/2 |")
    assert rows["GSAM < SGD (constant lr)"].endswith("| 0.500 | 1.500 | 1.500 | 1/2 |")
    assert rows["GSAM + B < GSAM"].endswith("| 0.200 | 0.067 | 0.200 | 2/2 |")
