"""The Hydra entry point: one call of `runner.main` per grid cell.

    python launch.py                                   # one cell, the defaults
    python launch.py -m experiment=demo                # the demo's 9-cell grid
    python launch.py -m experiment=paper/cifar10_resnet18 hydra/launcher=slurm

A config that cannot work stops with one line on stderr (`error: ...`) and
exit status 2, before any data is read or any file is written.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import runner


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> dict:
    try:
        return runner.main(cfg)
    except runner.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
