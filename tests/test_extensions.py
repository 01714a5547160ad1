"""Extensions from outside the package: the worked example installed for real, `plugins=`, `--config-dir`.

examples/sam_sweeps_example is installed with pip into a temporary folder (entry points need the
installation's metadata) and put on PYTHONPATH of the commands, never of this process, so the
registries here stay the built-in ones. A multirun mixes its model, dataset, lr policy, schedule,
SAM variant and measure with built-in optimizers and schedules; `python -m sharpness` re-measures
it and `python -m analysis` shows the new names as columns, in their defined order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import QUICK, REPO, launch

from analysis.names import cell_order, optimizer_order, schedule_order
from runner.sweep import registry
from runner.sweep.lock import CellLock
from runner.sweep.options import CONF_ENTRY_POINTS, declared_names, group_options

EXAMPLE = REPO / "examples" / "sam_sweeps_example"

# The example's items beside built-in ones: sgd and constant are the project's, cosine_warm is a
# schedule of configuration alone, exponential needs the example's lr policy.
GRID = ["optimizer=sgd,extrasam", "schedule=constant,cosine_warm,exponential"]
TINY = [
    "dataset=blobs",
    "model=mlp",
    "model.width=16",
    "train.epochs=2",
    "train.batch_size=64",
    "dataset.train_size=512",  # 8 steps of 64 per epoch
    "sharpness=first_order",
    "progress=false",
    "device=cpu",
    "cpu_threads=1",
]


def _env(*paths: Path) -> dict[str, str]:
    python_path = os.pathsep.join([*(str(p) for p in paths), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": python_path, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def _module(name: str, args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", name, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def example_site(tmp_path_factory) -> Path:
    """The example package installed by pip (no network, no build isolation) into a folder of its own."""
    work = tmp_path_factory.mktemp("example")
    source = work / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["--disable-pip-version-check", "--target", str(site), str(source)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return site


@pytest.fixture(scope="module")
def example_sweep(example_site, tmp_path_factory) -> Path:
    """The example's grid, trained once for the tests below; returns the sweep's folder."""
    root = tmp_path_factory.mktemp("example-results")
    result = launch(
        ["-m", *GRID, *TINY, f"results_root={root}", "experiment_name=lab"], env=_env(example_site), timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "lab"


def test_the_example_declares_one_of_each_kind_as_installed_entry_points(example_site):
    (dist,) = example_site.glob("sam_sweeps_example-*.dist-info")
    declared = (dist / "entry_points.txt").read_text()
    for group in [*registry.ENTRY_POINT_GROUPS, CONF_ENTRY_POINTS]:
        assert f"[{group}]" in declared
    # its options are YAML data inside the installed package: finding them imports no code of it
    # but the packages' (empty) __init__ modules, and registers nothing
    sources = ["pkg://sam_sweeps_example.conf"]
    sys.path.insert(0, str(example_site))
    try:
        assert group_options("schedule", sources=sources) == ["cosine_warm", "exponential"]
        assert declared_names("optimizer", sources=sources) == ["extrasam"]
        assert not {"sam_sweeps_example.models", "sam_sweeps_example.optim"} & set(sys.modules)
    finally:
        sys.path.remove(str(example_site))
        for name in [m for m in sys.modules if m.split(".")[0] == "sam_sweeps_example"]:
            del sys.modules[name]


def test_the_example_sweep_trains_every_cell_with_its_own_folder(example_sweep):
    records = [json.loads(p.read_text()) for p in sorted(example_sweep.rglob("result.json"))]
    cells = {(r["optimizer"], r["schedule"]) for r in records}
    assert cells == {(o, s) for o in ("sgd", "extrasam") for s in ("constant", "cosine_warm", "exponential")}
    assert {r["status"] for r in records} == {"completed"}
    assert {(r["dataset"], r["model"]) for r in records} == {("blobs", "mlp")}
    for record in records:
        entry = record["sharpness"]["first_order"]
        assert entry["value"] > 0 and entry["kind"] == "first_order"
        assert record["config"]["optimizer"]["_target_"] in ("sam_opt.SAM", "sam_sweeps_example.optim.ExtraSAM")


def test_the_lr_policies_shape_the_learning_rate_per_epoch(example_sweep):
    """cosine_warm warms up from 0.1 x lr; exponential ends at min_lr_ratio x lr, like cosine would."""
    base = example_sweep / "blobs-mlp"
    lrs = {
        schedule: pd.read_csv(next((base / f"sgd-{schedule}").rglob("metrics.csv")))["lr"].tolist()
        for schedule in ("constant", "cosine_warm", "exponential")
    }
    assert lrs["constant"] == [0.1, 0.1]
    assert lrs["exponential"][-1] == pytest.approx(0.001, rel=1e-6)  # 0.1 * 0.01 ** 1 at the last step
    assert lrs["exponential"][0] < 0.1  # decayed geometrically during the first epoch
    assert lrs["cosine_warm"][0] == pytest.approx(0.1 * (0.1 + 0.9 * 7 / 8), rel=1e-6)  # 8 steps of warm-up


def test_a_relaunch_skips_every_cell(example_site, example_sweep):
    result = launch(
        ["-m", *GRID, *TINY, f"results_root={example_sweep.parent}", "experiment_name=lab"],
        env=_env(example_site),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    plan = json.loads((example_sweep / "sweep_plan.json").read_text())
    assert {cell["action"] for cell in plan["cells"]} == {"skip-finished"}


def test_remeasure_and_analysis_show_the_new_names_in_order(example_site, example_sweep, tmp_path):
    env = _env(example_site)
    measured = _module(
        "sharpness",
        [str(example_sweep), "sharpness=[worst_l2,first_order]", "sharpness.first_order.rho=0.1"]
        + ["sharpness.worst_l2.examples=128", "sharpness.worst_l2.iterations=2", "device=cpu"],
        env,
    )
    assert measured.returncode == 0, measured.stderr[-3000:]
    out = tmp_path / "analysis"
    analysed = _module("analysis", [str(example_sweep), "--out", str(out), "--figures", "tables", "--quiet"], env)
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    runs = pd.read_csv(out / "runs.csv")
    assert {"sharpness.first_order", "sharpness.worst_l2"} <= set(runs.columns)
    assert (runs["sharpness.first_order"] > 0).all()  # re-measured with rho 0.1 through the registry
    header = next(line for line in (out / "tables.md").read_text().splitlines() if "EXTRASAM" in line)
    columns = [c.strip() for c in header.strip("|").split("|")][1:]
    # one block per schedule, the paper's first; SGD, SAM and GSAM in each, the example's optimizer
    # after them where it ran; then the records' own schedules, alphabetically
    paper = ["SGD", "SAM", "GSAM", "EXTRASAM", "SGD + B", "SAM + B", "GSAM + B", "SGD + C", "SAM + C", "GSAM + C"]
    own = [f"{o} + {s}" for s in ("cosine_warm", "exponential") for o in ("SGD", "SAM", "GSAM", "EXTRASAM")]
    assert columns == paper + own


def test_a_second_remeasure_racing_the_first_loses_nothing(example_site, example_sweep):
    """B measures while A holds the cell's lock between reading result.json and replacing it; B must wait."""
    run = next((example_sweep / "blobs-mlp" / "sgd-constant").rglob("result.json")).parent
    env = _env(example_site)
    args = [str(run), "sharpness=worst_l2", "sharpness.worst_l2.examples=128", "sharpness.worst_l2.iterations=2"]
    with CellLock(run):
        second = subprocess.Popen(
            [sys.executable, "-m", "sharpness", *args, "force=true", "device=cpu"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines = []
        for line in second.stdout:  # until B has measured and goes for the record
            lines.append(line)
            if "sharpness worst_l2 =" in line:
                break
        first_read = json.loads((run / "result.json").read_text())  # A reads ...
        time.sleep(1.5)  # ... B, unlocked, would write now ...
        first_read["sharpness"]["from_first"] = {"value": 1.0}
        (run / "result.json").write_text(json.dumps(first_read))  # ... and A's write would drop it
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, "".join(lines) + out
    record = json.loads((run / "result.json").read_text())
    assert record["sharpness"]["from_first"] == {"value": 1.0}
    assert record["sharpness"]["worst_l2"]["iterations"] == 2


PLUGIN = '''
"""A lab's model, registered at import: `plugins=[labext]` on the command line imports it."""
import os
import torch.nn as nn
from runner.sweep.registry import register_model

with open(os.environ["LABEXT_IMPORTS"], "a") as seen:
    seen.write("imported\\n")


def tinynet(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, num_classes))


register_model("tinynet", tinynet)
'''

TINYNET = """name: tinynet
family: mlp
num_classes: ${dataset.num_classes}
in_channels: ${dataset.channels}
image_size: ${dataset.image_size}
"""


def test_plugins_on_the_command_line_and_never_from_a_results_folder(tmp_path, results_root):
    code = tmp_path / "code"
    code.mkdir()
    (code / "labext.py").write_text(PLUGIN)
    mine = tmp_path / "mine"
    (mine / "model").mkdir(parents=True)
    (mine / "model" / "tinynet.yaml").write_text(TINYNET)
    imports = tmp_path / "imports.txt"
    env = {**_env(code), "LABEXT_IMPORTS": str(imports)}
    quick = [o for o in QUICK if not o.startswith("model.")]  # tinynet has no width
    args = ["--config-dir", str(mine), "model=tinynet", *quick, "train.epochs=1", f"results_root={results_root}"]

    refused = launch(args, env=env)
    assert refused.returncode == 2 and "model.name='tinynet' must be one of" in refused.stderr
    assert not imports.exists()

    trained = launch([*args, "plugins=[labext]"], env=env)
    assert trained.returncode == 0, trained.stderr[-2000:]
    (run,) = [p.parent for p in results_root.rglob("result.json")]
    assert json.loads((run / "result.json").read_text())["config"]["plugins"] == ["labext"]
    imports.unlink()

    # The folder's config names labext, but re-measuring it imports only what this command names.
    measure = ["sharpness.worst_linf.examples=64", "sharpness.worst_linf.batch_size=32", "device=cpu"]
    alone = _module("sharpness", [str(run), *measure], env)
    assert alone.returncode == 2 and "tinynet" in alone.stderr
    assert not imports.exists()
    named = _module("sharpness", [str(run), "plugins=[labext]", *measure], env)
    assert named.returncode == 0, named.stderr[-2000:]
    assert imports.read_text() == "imported\n"


def test_a_schedule_of_the_users_config_dir_is_valid_by_existing(tmp_path, results_root):
    """The case a new user meets first: a copy of cosine.yaml named cosine_warm in --config-dir."""
    mine = tmp_path / "mine"
    (mine / "schedule").mkdir(parents=True)
    text = (REPO / "conf" / "schedule" / "cosine.yaml").read_text()
    text = text.replace("name: cosine", "name: cosine_warm").replace("warmup_epochs: 0", "warmup_epochs: 1")
    (mine / "schedule" / "cosine_warm.yaml").write_text(text)
    args = ["--config-dir", str(mine), "schedule=cosine_warm", *QUICK, f"results_root={results_root}"]
    result = launch(args)
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = [json.loads(p.read_text()) for p in results_root.rglob("result.json")]
    assert (record["schedule"], record["config"]["schedule"]["warmup_epochs"]) == ("cosine_warm", 1)

    typo = launch([*args, "schedule.name=cosine_wram"])  # a name no option declares
    assert typo.returncode == 2
    assert "schedule.name='cosine_wram' must be one of batch, constant, cosine, cosine_warm, linear" in typo.stderr


def test_names_order_the_paper_first_then_the_records_own_alphabetically():
    assert optimizer_order(["zsam", "gsam", "asam", "sgd"]) == ["sgd", "gsam", "asam", "zsam"]
    assert schedule_order(["linear", "warm", "batch", "a_cycle"]) == ["batch", "linear", "a_cycle", "warm"]
    cells = cell_order({("asam", "constant"), ("sgd", "warm")})
    assert cells[:4] == [("sgd", "constant"), ("sam", "constant"), ("gsam", "constant"), ("asam", "constant")]
    assert cells[-3:] == [("sgd", "warm"), ("sam", "warm"), ("gsam", "warm")]  # a block shows the paper's three


def test_registering_a_second_object_under_a_taken_name_is_refused():
    from runner.models import MODELS

    with pytest.raises(registry.ExtensionError, match="model 'resnet18' is registered already"):
        registry.register_model("resnet18", lambda: None)
    with pytest.raises(registry.ExtensionError, match="not a subclass of sam_opt.SAM"):
        registry.register_optimizer(dict)
    with pytest.raises(registry.ExtensionError, match="must be a list of module names"):
        registry.plugin_modules([3])
    with pytest.raises(registry.ExtensionError, match="'os;rm' is not a module name"):
        registry.plugin_modules(["os;rm"])
    assert "resnet18" in MODELS and registry.plugin_modules("a.b") == ["a.b"]


def _documented_tree() -> set[str]:
    """The files docs/architecture.md's tree of the example lists, as paths inside the example."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("### The worked example, file by file", 1)[1].split("```", 2)[1]
    paths, parents = set(), []
    for line in block.splitlines()[2:]:  # after the fence's language line and the root folder
        if "── " not in line:
            continue
        prefix, name = line.split("── ", 1)
        depth = (len(prefix) + 1) // 4
        name = name.split()[0]
        parents[depth:] = [name.rstrip("/")]
        if not name.endswith("/"):
            paths.add("/".join(parents))
    return paths


def test_the_guide_lists_exactly_the_files_of_the_example():
    skip = {"__pycache__", "build"}
    files = {
        str(p.relative_to(EXAMPLE))
        for p in EXAMPLE.rglob("*")
        if p.is_file() and not skip & set(p.parts) and not any(part.endswith(".egg-info") for part in p.parts)
    }
    assert _documented_tree() == files


def test_a_users_increasing_batch_schedule_is_named_and_checked_like_the_built_in_one(tmp_path):
    """A schedule option found through hydra.searchpath: its name is valid, and its ladder is checked
    because its stages come from train.increasing_batch_sizes, whatever it is called."""
    from hydra import compose, initialize_config_dir

    from runner.sweep.validate import problems

    (tmp_path / "schedule").mkdir()
    batch = (REPO / "conf" / "schedule" / "batch.yaml").read_text()
    own = batch.replace("name: batch", "name: batch_cosine").replace("lr_policy: constant", "lr_policy: cosine")
    (tmp_path / "schedule" / "batch_cosine.yaml").write_text(own)
    overrides = [f"hydra.searchpath=[file://{tmp_path}]", "schedule=batch_cosine", *QUICK]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        fine = compose("config", overrides=[*overrides, "train.epochs=4"], return_hydra_config=True)
        short = compose("config", overrides=[*overrides, "train.epochs=1"], return_hydra_config=True)
    assert fine.schedule.name == "batch_cosine" and problems(fine, check_environment=False) == []
    assert problems(short, check_environment=False) == [
        "train.epochs=1 is fewer than the 2 train.increasing_batch_sizes; every stage needs at least one epoch"
    ]


def test_extrasam_steps_along_its_direction_on_a_quadratic(monkeypatch):
    """Known answer: on 1/2 w^T A w, one step is w - lr ((1 + gamma) g_p - gamma g); gamma = 0 is SAM."""
    import torch

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from sam_sweeps_example.optim import ExtraSAM

    from sam_opt import SAM

    torch.manual_seed(0)
    a = torch.diag(torch.tensor([3.0, 1.0, 0.5]))
    start = torch.tensor([1.0, -2.0, 0.5])

    def step(optimizer_class, **settings) -> torch.Tensor:
        w = torch.nn.Parameter(start.clone())
        optimizer = optimizer_class([w], torch.optim.SGD, lr=0.1, rho=0.05, **settings)

        def closure():
            loss = 0.5 * w @ a @ w
            loss.backward()
            return loss

        optimizer.step(closure)
        return w.detach()

    g = a @ start
    g_p = a @ (start + 0.05 * g / g.norm())
    try:
        for gamma in (0.0, 0.5, 2.0):
            expected = start - 0.1 * ((1 + gamma) * g_p - gamma * g)
            assert torch.allclose(step(ExtraSAM, gamma=gamma), expected, atol=1e-6)
        assert torch.equal(step(ExtraSAM, gamma=0.0), step(SAM))
        with pytest.raises(ValueError, match=r"\['gamma'\] must be a finite number >= 0"):
            step(ExtraSAM, gamma=-1.0)
    finally:  # the example's modules leave this process as they came (nothing was registered)
        for name in [m for m in sys.modules if m.split(".")[0] == "sam_sweeps_example"]:
            del sys.modules[name]
