"""Sharpness of trained models: the paper's worst-case m-sharpness and its relatives.

- `measure(model, batches, settings)`: one measure on given batches -> `SharpnessResult`.
- `measure_all(model, dataset_cfg, sharpness_cfg, device=, seed=)`: every measure of a
  run's `sharpness` config, as stored under `"sharpness"` in result.json.
- `config_problems(sharpness_cfg)`: the config checks, for `runner.validate`.
- `python -m sharpness <run folder | results root | glob> sharpness=<measure> ...`:
  re-measure saved runs (see `sharpness.cli`).

Kinds (`kind:` of a `conf/sharpness/` option): worst_case (auto-PGD in an l_inf
or l_2 ball, optionally adaptive), average_case (random perturbations),
hessian_eig (power iteration), hessian_trace (Hutchinson).
"""

from .api import SharpnessResult, measure, measure_all
from .settings import KINDS, config_problems, normalize

__all__ = ["KINDS", "SharpnessResult", "config_problems", "measure", "measure_all", "normalize"]
