"""Sharpness of trained models: worst- and average-case m-sharpness, the Hessian's top eigenvalue and trace.

A library (torch and omegaconf only): `measure(model, batches, settings)` returns a
`SharpnessResult`; `config_problems(sharpness_cfg)` checks settings before any work;
`KINDS` is the registry of algorithms (a measure's `kind`), each with its function and
defaults. Measuring a run's config on its dataset, and re-measuring saved runs
(`python -m sharpness`), is `runner.remeasure`'s job.
"""

from .api import Batches, SharpnessResult, measure
from .kinds import KINDS, Kind
from .settings import config_problems, normalize

__all__ = ["KINDS", "Batches", "Kind", "SharpnessResult", "config_problems", "measure", "normalize"]
