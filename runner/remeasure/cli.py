"""Re-measure saved runs without retraining: `python -m sharpness <targets> [overrides]`.

The same command as `python -m runner.remeasure` and `sam-sharpness`.

    python -m sharpness results/paper/cifar10_resnet18                  # every run below, worst_linf
    python -m sharpness 'results/*/*/sam-*/seed=0' sharpness=[worst_linf,hessian_trace]
    python -m sharpness RUN sharpness=worst_l2 sharpness.worst_l2.rho=0.05 device=cuda
    python -m sharpness -m results/demo sharpness=hessian_eig hydra/launcher=slurm   # one job per run

A target is a run folder (result.json + config.yaml + model.pt), a results
root searched for run folders, or a glob of either. Overrides:

- `sharpness=<option>` or `sharpness=[a,b]` (options of conf/sharpness/; default
  worst_linf) and `sharpness.<name>.<key>=<value>`;
- `device=auto|cpu|cuda[:k]`, `force=true` (re-measure entries already recorded
  with the same settings; otherwise those are skipped);
- `plugins=[mypkg.ext]`: modules of yours that register a model, dataset or measure kind
  (installed extensions load anyway); a run folder's own `plugins` is never imported;
- `hydra/...` and `hydra....` for `-m` (launcher, sweep folder);
- any other `key=value` changes the runs' stored configs, e.g. `dataset.root=/data`
  when the data lives elsewhere than at training time.

Everything (options, settings, folders, weights, dataset sizes) is checked
before the first measurement; a problem is one line on stderr, exit status 2,
and no record changes. Each result.json gets the new entries merged into its
`sharpness` object, keeping the others, and is replaced atomically. With `-m`
every run becomes one job of a Hydra multirun, so a launcher such as
`hydra/launcher=slurm` spreads them over a cluster, as for training.
"""

from __future__ import annotations

import glob
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from runner.sweep import registry
from runner.sweep.config_dir import config_dir
from runner.sweep.options import default_sources, group_options
from sharpness.settings import normalize_all

from .runs import RunPlan, UsageError, find_runs, plan_runs, remeasure, resolve_device

log = logging.getLogger(__name__)

# The checkout's conf/, or the installed package's copy of it (runner/sweep/config_dir.py).
CONF_DIR = config_dir()
PRIMARY = "sharpness_cli"
PRIMARY_NODE = {
    "defaults": ["_self_", {"sharpness": "worst_linf"}],
    "device": "auto",
    "force": False,
    "run": None,  # the run folder of one multirun job
    "plugins": [],  # modules of the user's to import (runner.sweep.registry); never read from a run's config
}
_OWN_KEYS = ("sharpness", "device", "force", "plugins")


@dataclass
class Invocation:
    targets: list[str]
    multirun: bool = False
    options: list[str] = field(default_factory=list)  # for the CLI's own config (sharpness, device, force)
    hydra: list[str] = field(default_factory=list)  # hydra/launcher=..., hydra.sweep.dir=...
    run_overrides: list[str] = field(default_factory=list)  # applied to each run's config.yaml


def _is_target(arg: str) -> bool:
    """A path or glob rather than an override; run folders contain '=' (seed=0), override keys no '/'."""
    key = arg.split("=", 1)[0].lstrip("+~")
    return "=" not in arg or Path(arg).expanduser().exists() or ("/" in key and not key.startswith("hydra/"))


def parse_args(argv: list[str]) -> Invocation:
    """Split the command line into targets and the three kinds of overrides."""
    invocation = Invocation(targets=[])
    for arg in argv:
        if arg in ("-m", "--multirun"):
            invocation.multirun = True
        elif _is_target(arg):
            invocation.targets.append(arg)
        else:
            key = arg.split("=", 1)[0].lstrip("+~")
            if key.startswith("hydra"):
                invocation.hydra.append(arg)
            elif key.split(".")[0] in _OWN_KEYS:
                invocation.options.append(arg)
            else:
                invocation.run_overrides.append(arg)
    if not invocation.targets:
        raise UsageError(
            "no run folder given; usage: python -m sharpness <run folder | results root | glob> "
            "[sharpness=<measure>] [key=value ...]"
        )
    return invocation


def available_measures() -> list[str]:
    """The options of the sharpness/ group: conf/'s and those of installed extensions."""
    return group_options("sharpness", sources=[f"file://{CONF_DIR}", *default_sources()[1:]])


def _selected(options: list[str]) -> list[str]:
    names: list[str] = []
    for arg in options:
        key, value = arg.split("=", 1)
        if key.lstrip("+~") == "sharpness":
            names += [n.strip() for n in value.strip("[]").split(",") if n.strip()]
    return names


def register_primary() -> None:
    """Put the CLI's primary config (defaults to worst_linf, like training) into Hydra's config store."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=PRIMARY, node=PRIMARY_NODE)


def compose_options(options: list[str]) -> DictConfig:
    """The CLI's own config (`sharpness`, `device`, `force`) composed with Hydra from conf/."""
    from hydra import compose, initialize_config_dir

    unknown = [n for n in _selected(options) if n not in available_measures()]
    if unknown:
        raise UsageError(f"unknown sharpness measure {unknown[0]!r}; options: {', '.join(available_measures())}")
    register_primary()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="sharpness"):
            return compose(PRIMARY, overrides=options)
    except Exception as error:  # Hydra's own messages are multi-line
        raise UsageError(f"{str(error).splitlines()[0]} (select a measure with sharpness=<name> first)") from None


def _sweep_value(folders: list[Path]) -> str:
    """Folders as a Hydra sweep list of quoted strings (run folders contain '=')."""
    quoted = []
    for folder in folders:
        text = str(folder)
        if "'" in text or "\\" in text:
            raise UsageError(f"{text}: a run folder with quotes or backslashes cannot be passed to a multirun")
        quoted.append(f"'{text}'")
    return ",".join(quoted)


def launch_multirun(plans: list[RunPlan], invocation: Invocation) -> int:
    """One Hydra job per run, through whatever launcher the overrides select."""
    import hydra

    register_primary()
    run_overrides = invocation.run_overrides
    failures: list[str] = []  # seen by in-process launchers; others report in each job's log

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=PRIMARY)
    def job(cfg: DictConfig) -> dict[str, Any]:
        folder = Path(cfg.run)
        try:
            registry.enable(cfg.plugins)
            plans = plan_runs([folder], normalize_all(cfg.sharpness), run_overrides, bool(cfg.force), {folder})
            return remeasure(plans[0], resolve_device(str(cfg.device))) if plans else {}
        except Exception as error:  # one failing run must not take the sweep down
            log.error("%s: %s: %s", folder, type(error).__name__, error)
            failures.append(str(folder))
            return {"error": str(error)}

    argv = [
        sys.argv[0] or "sharpness",
        "--multirun",
        f"run={_sweep_value([p.folder for p in plans])}",
        *invocation.options,
        *invocation.hydra,
    ]
    saved, sys.argv = sys.argv, argv
    try:
        job()
    finally:
        sys.argv = saved
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m runner.remeasure`, `python -m sharpness` and `sam-sharpness`; the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        invocation = parse_args(argv)
        options = compose_options(invocation.options)
        registry.enable(options.plugins)  # what this command line names, never a run folder's config
        measures = normalize_all(options.sharpness)
        if not measures:
            raise UsageError("nothing to measure: select a measure with sharpness=<name>")
        folders = find_runs(invocation.targets)
        explicit = {Path(t).expanduser().resolve() for t in invocation.targets if not glob.has_magic(t)}
        plans = plan_runs(folders, measures, invocation.run_overrides, bool(options.force), explicit)
        device = resolve_device(str(options.device))
    except (UsageError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not plans:
        return 0
    if invocation.multirun:
        return launch_multirun(plans, invocation)
    failed = 0
    for plan in plans:
        try:
            remeasure(plan, device)
        except Exception as error:  # report, go on with the other runs
            failed += 1
            print(f"error: {plan.folder}: {type(error).__name__}: {error}", file=sys.stderr)
    return 1 if failed else 0
