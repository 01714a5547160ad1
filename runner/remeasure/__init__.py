"""Sharpness of a run: the glue between a run's config or saved folder and the `sharpness` library.

- `measure_all(model, dataset_cfg, sharpness_cfg, device=, seed=)`: every measure
  of a run's `sharpness` config on examples of its dataset (what result.json records).
- `python -m runner.remeasure` (also `python -m sharpness`, `sam-sharpness`):
  re-measure saved runs; see `runner.remeasure.cli`.

It rebuilds data and models, so it belongs to the runner; `sharpness` stays a
library that imports nothing of the runner (tests/test_package_deps.py).
"""

from .examples import example_batches
from .measures import measure_all

__all__ = ["example_batches", "measure_all"]
