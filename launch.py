"""The Hydra entry point of a checkout: one call of `runner.sweep.launch.task` per grid cell.

    python launch.py                                   # one cell, the defaults
    python launch.py -m experiment=demo                # the demo's 9-cell grid
    python launch.py -m experiment=paper/cifar10_resnet18 hydra/launcher=slurm

An installed package runs the same through `sam-train` (runner/sweep/launch.py).

Exit status: 0 when every cell completed (or was already done); 1 when a cell
failed, diverged or could not start; 2 when the config cannot work, in which
case one `error:` line per problem is printed before any data is read or any
file is written (a multirun checks every cell before launching any).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from runner.sweep.launch import run_app, task


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    return task(cfg)


if __name__ == "__main__":
    sys.exit(run_app(main))
