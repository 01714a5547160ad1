"""What a cell folder holds before anything writes into it: links, odd files, a damaged record.

Results folders are shared, copied and edited by hand, so the runner looks at
a cell before Hydra, the logger or the trainer write there:

- the folder must lie inside `results_root` once links are followed (the root
  itself may be a link: results often live on another disk), and no file the
  runner or Hydra writes may be a link, since `run.log`, `launch.log` and
  `.hydra/*.yaml` are opened through whatever they point to;
- the files written at the end must be files (a `result.json` or `.lock` that
  is a folder would only fail after hours of training);
- a `result.json` that cannot be read is never trained over silently: when
  `model.pt` is missing the run provably never finished (the record is written
  after the model) and the record is moved aside; otherwise the run may have
  finished, and only `force=true` moves it aside and retrains;
- a cell that will train must be writable, which is probed by writing.

`problems()` answers in one line per finding, for the decision whether a cell
trains (runner.sweep.verdict: the single-run preflight, the sweeper's plan and
the runner itself); `set_aside()` moves a damaged file to
`<name>.corrupt-<UTC time>`, keeping it for inspection.

The write probe is the one write into a cell folder made without the cell's
lock (runner.sweep.lock): a new file of a unique name, removed at once, that no
reader looks for, so it cannot disturb a process that holds the lock.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from pathlib import Path

from runner.folder import (
    CELL_FILES,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    HYDRA_DIR,
    LOCK_FILE,
    MODEL_FILE,
    RESULT_FILE,
    SET_ASIDE_STAMP,
    SWEEP_FILES,
    set_aside_name,
)
from runner.io import safe_load_yaml
from runner.sweep.failures import io_line

# Of the cell's files (runner.folder.CELL_FILES, and .hydra/'s), the ones whose wrong type would only show
# after the whole training run (the record, the lock's release, the final model) or as a traceback outside
# the run (the checkpoint read at start); the others fail the run's first epoch with a `failed` record.
MUST_BE_FILES = (RESULT_FILE, LOCK_FILE, MODEL_FILE, CHECKPOINT_FILE)


def record_damage(run_dir: Path) -> str | None:
    """Why the cell's result.json cannot be used (unreadable, not a record), or None when it can or is absent."""
    path = run_dir / RESULT_FILE
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return "it is a folder, not a file"
    except (ValueError, RecursionError) as error:
        return f"not valid JSON ({str(error).splitlines()[0][:80]})"
    except OSError as error:
        return error.strerror or str(error)
    if not isinstance(record, dict) or not isinstance(record.get("status"), str):
        return "not a run record (no status)"
    return None


def config_damage(run_dir: Path) -> str | None:
    """Why the cell's config.yaml cannot be read as a mapping, or None when it can or is absent."""
    import yaml

    try:
        with open(run_dir / CONFIG_FILE, encoding="utf-8") as handle:
            config = safe_load_yaml(handle)
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as error:
        return f"{run_dir / CONFIG_FILE} is unreadable ({str(error).splitlines()[0][:80]})"
    if not isinstance(config, dict):
        return f"{run_dir / CONFIG_FILE} is not a config (it holds a {type(config).__name__})"
    return None


def _escape(run_dir: Path, results_root: Path) -> str | None:
    real_root = results_root.resolve()
    real = run_dir.resolve()
    if not real.is_relative_to(real_root):
        return (
            f"{run_dir} leads to {real} through a symbolic link, outside results_root {real_root}; "
            f"remove the link (or point results_root at where the results live)"
        )
    return None


def _odd_files(run_dir: Path) -> list[str]:
    found = []
    folders = [run_dir, run_dir / HYDRA_DIR]
    for folder in folders:
        if folder.is_symlink():
            found.append(f"{folder} is a symbolic link; the runner writes only into real folders of the cell")
            continue
        if not folder.is_dir():
            continue
        names = CELL_FILES if folder == run_dir else [e.name for e in os.scandir(folder)]
        for name in names:
            path = folder / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(mode):
                found.append(
                    f"{path} is a symbolic link (to {os.readlink(path)}); writes would go through it: remove the link"
                )
            elif not stat.S_ISREG(mode) and (folder != run_dir or name in MUST_BE_FILES):
                found.append(f"{path} is not a file (a folder?); move it away, the runner writes a file there")
    return found


def _unwritable(run_dir: Path) -> str | None:
    """Why nothing can be written where the cell will be (its nearest existing folder), or None."""
    folder = run_dir
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as error:
        error.filename = str(folder)
        return io_line(error)
    return None


def problems(run_dir: Path, results_root: Path, *, force: bool) -> list[str]:
    """One line per reason the cell at `run_dir` must not be written as it stands.

    Asked only of a cell that will train (runner.sweep.verdict): a finished cell that
    is skipped is written by nobody, and a damaged record makes a cell one that trains.
    """
    run_dir, results_root = Path(run_dir).absolute(), Path(results_root).absolute()
    escape = _escape(run_dir, results_root)
    if escape:
        return [escape]
    found = _odd_files(run_dir)
    if found:
        return found
    damage = record_damage(run_dir)
    if damage and not force and (run_dir / MODEL_FILE).exists():
        found.append(
            f"{run_dir / RESULT_FILE} is damaged ({damage}) and the run may have finished (model.pt is there); "
            f"move it aside, or rerun with force=true to set it aside and retrain"
        )
    if not found:
        trouble = _unwritable(run_dir)
        if trouble:
            found.append(trouble)
    return found


def sweep_problems(sweep_dir: Path) -> list[str]:
    """Links among the files a multirun writes beside its cells (`SWEEP_FILES`): each would be written through."""
    found = []
    for name in SWEEP_FILES:
        path = Path(sweep_dir) / name
        if path.is_symlink():
            found.append(f"{path} is a symbolic link (to {os.readlink(path)}); writes would go through it: remove it")
    return found


def set_aside(path: Path) -> Path:
    """Move a damaged file to `<name>.corrupt-<UTC time>` beside it and return the new path."""
    stamp = time.strftime(SET_ASIDE_STAMP, time.gmtime())
    target = path.with_name(set_aside_name(path.name, stamp))
    counter = 1
    while target.exists():  # two in one second
        target = path.with_name(set_aside_name(path.name, stamp, counter))
        counter += 1
    os.replace(path, target)
    return target
