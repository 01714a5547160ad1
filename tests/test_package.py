"""The installable package: a wheel that carries conf/ and the sweeper plugin, and whose console
scripts train, re-measure, tabulate and report from a fresh virtualenv outside the checkout.

The fresh venv sees the project venv's site-packages through a .pth file (torch, Hydra and the
rest are not installed again) but never the checkout: everything of this project it runs comes
from the wheel. The wheel is built from a copy of the packaged folders, so no build/ is left in
the checkout.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import tomllib
from conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
CONF_PACKAGE = "sam_sweeps_conf"
SCRIPTS = ("sam-train", "sam-sharpness", "sam-analysis", "sam-status")
# Folders that hold neither importable code nor packaged data.
_NOT_PACKAGES = {"__pycache__"}
# The tiny cell: synthetic 8x8 images, a ResNet-18 of width 8, one epoch, no sharpness.
TINY = ["dataset=synthetic", "model.width=8", "train.epochs=1", "sharpness=none", "progress=false", "device=cpu"]


def _source_dir(package: str) -> Path:
    """The checkout folder a listed package's files come from (package-dir maps the configs)."""
    top, *rest = package.split(".")
    return REPO / SETUPTOOLS.get("package-dir", {}).get(top, top) / Path(*rest)


def _folders_below(root: Path, name: str) -> set[str]:
    """`name` and the dotted name of every folder below `root`, as the packages list must name them."""
    found = {name}
    for folder in root.rglob("*"):
        if folder.is_dir() and not _NOT_PACKAGES & set(folder.relative_to(root).parts):
            found.add(".".join([name, *folder.relative_to(root).parts]))
    return found


def test_every_folder_of_code_and_configs_is_listed_in_pyproject():
    listed = set(SETUPTOOLS["packages"])
    assert SETUPTOOLS["package-dir"] == {CONF_PACKAGE: "conf"}, "conf/ must be the configs' package"
    expected = {"hydra_plugins"} | _folders_below(REPO / "conf", CONF_PACKAGE)
    for top in {name.split(".")[0] for name in listed} - {CONF_PACKAGE, "hydra_plugins"}:
        expected |= _folders_below(REPO / top, top)
    expected |= _folders_below(REPO / "hydra_plugins" / "sam_sweeps", "hydra_plugins.sam_sweeps")
    assert not expected - listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(expected - listed)}"
    assert not listed - expected, f"listed but not in the checkout: {sorted(listed - expected)}"
    # A top-level package of the checkout that the list forgets entirely.
    tops = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests", "bench"}
    assert tops <= {name.split(".")[0] for name in listed}, f"unlisted top-level packages: {tops}"


def test_console_scripts_name_existing_functions():
    scripts = PYPROJECT["project"]["scripts"]
    assert set(SCRIPTS) <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function, None)), f"{name} = {target!r}"


def test_the_checkout_reads_its_own_conf():
    from runner.sweep.config_dir import config_dir

    assert config_dir() == REPO / "conf"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built offline from a copy of what pyproject.toml packages."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for top in {_source_dir(p.split(".")[0]).relative_to(REPO) for p in SETUPTOOLS["packages"]}:
        shutil.copytree(REPO / top, source / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(source),
            "-w",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (built,) = out.glob("sam_sweeps-*.whl")
    return built


def test_wheel_carries_conf_the_sweeper_plugin_and_the_scripts(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    configs = {f"{CONF_PACKAGE}/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert configs and configs <= names, sorted(configs - names)
    assert "hydra_plugins/sam_sweeps/__init__.py" in names
    assert {f"analysis/data/{p.name}" for p in (REPO / "analysis" / "data").glob("*.csv")} <= names
    for script in SCRIPTS:
        assert f"{script} = " in scripts
    # Only the packages: no checkout's launch.py, conf/ or tests.
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"analysis", "hydra_plugins", "runner", "sam_opt", "sharpness", CONF_PACKAGE}


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed, seeing the project venv's other packages, not the checkout."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # Written after the install, so pip never sees (or offers to uninstall) the project's own install.
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def _run(venv: Path, command: list[str], cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    """One of the venv's commands, from `cwd`, without anything of the caller's PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAM_RESULTS_ROOT", "SAM_DATA_DIR")}
    env.update(OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    result = subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == expect, (
        f"{' '.join(command)}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.mark.slow
def test_installed_scripts_train_remeasure_tabulate_and_report_outside_the_checkout(venv: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    results, data = tmp_path / "results", tmp_path / "data"
    where = ["results_root=" + str(results), "data_dir=" + str(data)]

    probe = _run(
        venv,
        [
            "python",
            "-c",
            "import json, sys, runner, runner.sweep.config_dir as c, hydra_plugins.sam_sweeps as p; "
            "print(json.dumps([runner.__file__, str(c.config_dir()), p.__file__, sys.path]))",
        ],
        elsewhere,
    )
    runner_file, conf, plugin, path = json.loads(probe.stdout)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert Path(runner_file).is_relative_to(site) and Path(plugin).is_relative_to(site)
    assert Path(conf) == site / CONF_PACKAGE
    assert not [p for p in path if p and Path(p).resolve() == REPO], path

    # One cell; Hydra names the job `launch` as in a checkout.
    _run(venv, ["sam-train", *TINY, *where], elsewhere)
    (single,) = (results / "adhoc").rglob("result.json")
    assert json.loads(single.read_text())["status"] == "completed"
    assert (single.parent / "launch.log").exists()

    # A two-cell multirun through the ValidatingSweeper plugin (it writes sweep_plan.json).
    sweep = _run(
        venv,
        [
            "sam-train",
            "-m",
            "experiment=demo",
            *TINY,
            *where,
            "optimizer=sgd,sam",
            "schedule=constant",
            "seed=0",
            "hydra/launcher=basic",
        ],
        elsewhere,
    )
    assert (results / "demo" / "sweep_plan.json").exists(), sweep.stdout + sweep.stderr
    records = [json.loads(p.read_text()) for p in (results / "demo").rglob("result.json")]
    assert sorted(r["optimizer"] for r in records if r["status"] == "completed") == ["sam", "sgd"]

    # A config that cannot work: one error line, exit status 2, nothing written.
    bad = _run(venv, ["sam-train", "train.epochs=0", f"results_root={tmp_path / 'bad'}"], elsewhere, expect=2)
    assert bad.stderr.startswith("error: train.epochs=0") and not (tmp_path / "bad").exists()

    status = _run(venv, ["sam-status", str(results / "demo")], elsewhere)
    assert "2 cells: 2 completed" in status.stdout

    _run(venv, ["sam-analysis", str(results)], elsewhere)
    assert (results / "analysis" / "runs.csv").exists() and (results / "analysis" / "tables.md").exists()

    _run(
        venv,
        [
            "sam-sharpness",
            str(single.parent),
            "sharpness=worst_linf",
            "sharpness.worst_linf.examples=32",
            "sharpness.worst_linf.batch_size=32",
            "sharpness.worst_linf.iterations=2",
            "device=cpu",
        ],
        elsewhere,
    )
    assert json.loads(single.read_text())["sharpness"]["worst_linf"]["value"] >= 0.0
    assert not list(elsewhere.iterdir()), "the scripts wrote into the working directory"

    # The installed configs compose exactly as the checkout's launch.py composes them.
    installed = _run(venv, ["sam-train", "experiment=demo", "--cfg", "job"], elsewhere).stdout
    checkout = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), "experiment=demo", "--cfg", "job"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checkout.returncode == 0, checkout.stderr
    assert installed == checkout.stdout and "experiment_name: demo" in installed
