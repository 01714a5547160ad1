"""How small a test-error difference a run can tell apart from noise: the resolution of its test set and seeds.

A claim such as "+ B ends with a lower test error than constant" compares error
rates measured on the same N test images. An error rate is a count of
misclassified images out of N, so two models whose true error is p differ by
chance by about sqrt(2 p (1 - p) / N) (the binomial standard error of a
difference of two rates), and the mean over n seeds by that divided by sqrt(n).
A mean difference smaller than two of those standard errors, or than one test
image (100 / N points), is no evidence either way: the claim is *unresolved*,
counted neither as holding nor as failing, and the table says what effect the
run could have resolved. On the demo (359 test images, 0.3-3 % test error, two
seeds) that is 0.8-1.2 points, larger than most of the paper's own test-error
effects (0.5-1.8 points): the demo cannot decide them and says so, where
counting them as failures would report noise as a finding.

Sharpness claims are not judged this way: their effects are ratios of 0.1-0.6
between cells whose values differ by factors, far outside this noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .claim_stats import Comparison

UNRESOLVED = "unresolved"
TEST_SIZE_COLUMN = "config.dataset.test_size"
STANDARD_ERRORS = 2.0


def resolvable_difference(mean_error_pct: float, test_size: int, seeds: int) -> float:
    """The smallest mean test-error difference (points) that N test images and n seeds resolve.

    Two binomial standard errors of the difference of two error rates near
    `mean_error_pct`, over `seeds` independent seeds, and never less than one
    test image.
    """
    if test_size < 1:
        raise ValueError(f"test_size={test_size} must be at least 1")
    rate = min(max(mean_error_pct / 100.0, 0.0), 1.0)
    standard_error = math.sqrt(2.0 * rate * (1.0 - rate) / (test_size * max(seeds, 1)))
    return max(100.0 * STANDARD_ERRORS * standard_error, 100.0 / test_size)


def evaluated_test_size(runs: pd.DataFrame) -> int | None:
    """The test-set size the runs were evaluated on (their config's `dataset.test_size`); None if unknown or mixed."""
    if TEST_SIZE_COLUMN not in runs.columns:
        return None
    sizes = pd.to_numeric(runs[TEST_SIZE_COLUMN], errors="coerce").dropna().unique()
    if len(sizes) != 1 or sizes[0] < 1:
        return None
    return int(sizes[0])


def claim_resolution(comparisons: Sequence[Comparison], test_size: int | None) -> float | None:
    """The resolvable difference for a test-error claim's comparisons; None when the test size is unknown."""
    if test_size is None or not comparisons:
        return None
    mean_error = sum(c.lower_value + c.higher_value for c in comparisons) / (2 * len(comparisons))
    seeds = len({c.replicate for c in comparisons})
    return resolvable_difference(mean_error, test_size, seeds)


def unresolved_note(resolutions: Sequence[float], test_size: int) -> str:
    """The note under a claims table that has unresolved claims: what they are and the run's resolution."""
    low, high = min(resolutions), max(resolutions)
    shown = f"{low:.2f}" if math.isclose(low, high, abs_tol=0.005) else f"{low:.2f}-{high:.2f}"
    return (
        f"unresolved: a test-error claim whose mean difference is smaller than what {test_size} test images "
        f"and these seeds can resolve, 2 binomial standard errors of a difference of two error rates "
        f"(2 sqrt(2 p (1 - p) / (N seeds))): {shown} points here, where one test image is "
        f"{100.0 / test_size:.2f} points. Neither held nor failed: more seeds or a larger test set would decide it."
    )
