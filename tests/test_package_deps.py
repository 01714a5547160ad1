"""Dependencies between the project's packages run one way: the libraries import nothing of the runner.

`sam_opt` (the optimizers) and `sharpness` (the measures) are libraries: torch,
plus omegaconf where settings may be a DictConfig. The runner builds on them
(`runner.training.steps` on `sam_opt`, `runner.remeasure` on `sharpness`), never the
other way round. Each check imports in a fresh interpreter, so nothing another
test imported can hide or fake a dependency, and reads which project packages
ended up in `sys.modules`. A static scan of every import statement, those inside
functions included, catches the lazy imports a runtime check cannot see.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The project's packages: every top-level folder of the repository that is a package, and the
# sweeper plugin, which lives in Hydra's namespace package (its own folder is `hydra_plugins`).
OWN_PLUGINS = ("hydra_plugins.sam_sweeps",)
PACKAGES = sorted([path.parent.name for path in REPO.glob("*/__init__.py")] + ["hydra_plugins"])
# library -> the project packages it may load; `analysis` reads files only (and learns names from them)
LIBRARIES = {"sam_opt": {"sam_opt"}, "sharpness": {"sharpness"}, "analysis": {"analysis"}}
THIRD_PARTY_FORBIDDEN = {"sam_opt": {"hydra", "omegaconf"}, "sharpness": {"hydra"}, "analysis": {"torch", "hydra"}}

# Imports the package, records the top-level modules loaded, then imports every
# submodule (entry points `__main__` aside: running a command is not importing
# the package) and records again.
_PROBE = """
import importlib, json, pkgutil, sys
name = sys.argv[1]
package = importlib.import_module("hydra_plugins.sam_sweeps" if name == "hydra_plugins" else name)
after_import = sorted({m.split(".")[0] for m in sys.modules})
for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    if info.name.rsplit(".", 1)[-1] != "__main__":
        importlib.import_module(info.name)
after_walk = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"import": after_import, "walk": after_walk}))
"""


_LOADED: dict[str, dict[str, set[str]]] = {}  # package -> {"import" | "walk": top-level modules loaded}


def loaded_by(packages: list[str]) -> dict[str, dict[str, set[str]]]:
    """For each package, the top-level modules a fresh interpreter holds after importing it (and its modules).

    The interpreters run side by side, each with the repository first on its path; results are kept
    for the other tests of this file.
    """
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    started = {
        package: subprocess.Popen(
            [sys.executable, "-c", _PROBE, package],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for package in packages
        if package not in _LOADED
    }
    for package, process in started.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, f"importing {package} failed:\n{err[-2000:]}"
        _LOADED[package] = {stage: set(modules) for stage, modules in json.loads(out.splitlines()[-1]).items()}
    return {package: _LOADED[package] for package in packages}


def test_the_project_packages_are_found():
    assert {"runner", "sam_opt", "sharpness"} <= set(PACKAGES)


@pytest.mark.parametrize("library", sorted(LIBRARIES))
@pytest.mark.parametrize("stage", ["import", "walk"])
def test_a_library_loads_no_other_project_package(library, stage):
    loaded = loaded_by(sorted(LIBRARIES))[library][stage]
    assert loaded & set(PACKAGES) == LIBRARIES[library], (
        f"import {library} ({stage}) loaded {sorted(loaded & set(PACKAGES) - LIBRARIES[library])}"
    )
    assert not loaded & THIRD_PARTY_FORBIDDEN[library], sorted(loaded & THIRD_PARTY_FORBIDDEN[library])


@pytest.mark.slow  # imports every module of every package: about 30 s on 2 busy cores
def test_no_two_packages_load_each_other():
    loaded = {package: stages["walk"] & set(PACKAGES) - {package} for package, stages in loaded_by(PACKAGES).items()}
    mutual = sorted((a, b) for a in loaded for b in loaded[a] if a < b and a in loaded.get(b, set()))
    assert not mutual, f"import cycles between packages: {mutual}"


def imported_packages(package: str) -> dict[str, set[str]]:
    """Project packages that `package`'s modules import anywhere (function bodies included), with the files.

    `__main__.py` is left out: an entry point may reach up (python -m sharpness
    hands over to the runner's CLI), and importing the package never runs it.
    """
    edges: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        if path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            # Hydra's namespace also holds other plugins (hydra_plugins.hydra_optuna_sweeper):
            # only hydra_plugins.sam_sweeps is this project's.
            names = [name for name in names if not name.startswith("hydra_plugins.") or name.startswith(OWN_PLUGINS)]
            for top in {name.split(".")[0] for name in names} & set(PACKAGES) - {package}:
                edges.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return edges


def test_no_import_statement_reaches_up_from_a_library():
    for library, allowed in LIBRARIES.items():
        upward = {top: files for top, files in imported_packages(library).items() if top not in allowed}
        assert not upward, f"{library} imports {upward}"


def test_the_package_graph_has_no_cycle():
    graph = {package: set(imported_packages(package)) for package in PACKAGES}
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(package: str, path: list[str]) -> None:
        state[package] = "open"
        for target in sorted(graph.get(package, ())):
            if state.get(target) == "open":
                pytest.fail(f"import cycle: {' -> '.join([*path[path.index(target) :], target])}")
            if target not in state:
                visit(target, [*path, target])
        state[package] = "done"

    for package in PACKAGES:
        if package not in state:
            visit(package, [package])


def test_analysis_imports_no_other_project_package():
    """`analysis` reads result.json and metrics.csv only: no import of the runner, the libraries or torch."""
    for stage, loaded in loaded_by(["analysis"])["analysis"].items():
        assert loaded & set(PACKAGES) == {"analysis"}, (
            f"import analysis ({stage}) loaded {sorted(loaded & set(PACKAGES))}"
        )
        assert "torch" not in loaded, f"import analysis ({stage}) loaded torch"
    assert imported_packages("analysis") == {}, imported_packages("analysis")


# The orchestration starts without torch: runner itself, the cell folder's contract, the atomic writes and
# every module of runner.sweep (the status tool, the sweeper's plan, the launching process's callbacks).
# The modules are imported one by one, so the first that pulls torch in is named.
_ORCHESTRATION_PROBE = """
import importlib, json, pkgutil, sys
names = ["runner", "runner.folder", "runner.io", "runner.sweep"]
import runner.sweep
names += [info.name for info in pkgutil.walk_packages(runner.sweep.__path__, "runner.sweep.")]
first = None
for name in names:
    importlib.import_module(name)
    if first is None and "torch" in sys.modules:
        first = name
print(json.dumps({"modules": names, "first_with_torch": first}))
"""


def _fresh_env(*path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([*map(str, path), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }


def test_the_orchestration_imports_no_torch():
    probe = subprocess.run(
        [sys.executable, "-c", _ORCHESTRATION_PROBE],
        cwd=REPO,
        env=_fresh_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    found = json.loads(probe.stdout.splitlines()[-1])
    assert {"runner.sweep.sweeper", "runner.sweep.status", "runner.sweep.verdict"} <= set(found["modules"])
    assert found["first_with_torch"] is None, f"importing {found['first_with_torch']} loaded torch"


def test_the_status_command_runs_where_torch_cannot_be_imported(tmp_path):
    blocker = tmp_path / "no-torch"
    blocker.mkdir()
    (blocker / "torch.py").write_text('raise ImportError("torch is not importable here")\n')
    sweep = tmp_path / "results" / "demo"
    cell = sweep / "digits-resnet18" / "sgd-constant" / "seed=0"
    cell.mkdir(parents=True)
    (cell / "metrics.csv").write_text("epoch,stage,batch_size,train_error,test_error,wall_time_s\n1,0,32,9.5,8.0,2.5\n")
    (cell / "result.json").write_text(
        json.dumps({"status": "completed", "test_error": 8.0, "train_error": 9.5, "epochs": 1, "wall_time_s": 2.5})
    )
    result = subprocess.run(
        [sys.executable, "-m", "runner.sweep.status", str(sweep)],
        cwd=tmp_path,
        env=_fresh_env(blocker),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "completed" in result.stdout and "1/1" in result.stdout, result.stdout
