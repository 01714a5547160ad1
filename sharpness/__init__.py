"""Sharpness of trained models: worst- and average-case m-sharpness, the Hessian's top eigenvalue and trace.

A library (torch and omegaconf only): `measure(model, batches, settings)` returns a
`SharpnessResult`; `config_problems(sharpness_cfg)` checks settings before any work.
Measuring a run's config on its dataset, and re-measuring saved runs
(`python -m sharpness`), is `runner.remeasure`'s job.
"""

from .api import Batches, SharpnessResult, measure
from .settings import KINDS, config_problems, normalize

__all__ = ["KINDS", "Batches", "SharpnessResult", "config_problems", "measure", "normalize"]
