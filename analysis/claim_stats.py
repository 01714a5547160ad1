"""How sure a claim is: paired comparisons over seeds, their effect size and an exact sign-flip test.

A claim such as "+ B is flatter than constant" compares pairs of cells. With
several seeds, each seed is one replicate of the whole grid, so the cells of
one seed are compared with each other (paired by seed) and the seed is the
unit of every count and of the test. The paper's seven tables are treated the
same way, one table per "seed".

- effect of one comparison: the ratio lower / higher (sharpness, whose
  values span orders of magnitude) or the difference lower - higher (test
  error, in percentage points); below 1 (below 0) is the claim's direction;
- summary: geometric mean of the ratios (mean of the differences) and their
  range over the claim's comparisons;
- test: the exact one-sided sign-flip permutation test of the mean log ratio
  (mean difference) per seed (sampled beyond 16 seeds). Under "no systematic difference" each seed's
  sign is a coin flip, so p is the share of the 2^n sign patterns whose mean
  is at least as far in the claim's direction. It needs nothing but numpy,
  and with n seeds the smallest p it can give is 1/2^n (0.125 for 3 seeds):
  a claim on three seeds can never be "significant" at 5%, and the table says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Cell = tuple[str, str]
RATIO, DIFFERENCE = "ratio", "difference"
EXACT_UP_TO = 16  # seeds; beyond, the sign patterns are sampled (fixed random seed, reproducible)
_SAMPLES = 10_000  # sampled sign patterns, fewer for hundreds of seeds (at least 1,000) to stay fast
_WORK = 1_000_000  # samples x seeds per test: a 10,000-record folder is tabulated in seconds
_CHUNK = 2_000  # sampled patterns per matrix product: memory stays small whatever the number of seeds
MIN_SEEDS_FOR_TEST = 3


@dataclass(frozen=True)
class Comparison:
    """One pair of cells in one replicate (a seed of ours, a table of the paper's)."""

    lower: Cell  # the cell the claim says is lower
    higher: Cell
    replicate: object  # seed number or (dataset, model)
    lower_value: float
    higher_value: float

    @property
    def holds(self) -> bool:
        return self.lower_value < self.higher_value


@dataclass(frozen=True)
class Summary:
    """Counts, effect and test of a set of comparisons (one claim, or one pair of it)."""

    kind: str  # RATIO or DIFFERENCE
    replicates: int  # replicates that decide the claim: every pair compared, or one pair against it
    replicates_holding: int  # ... in which every pair was compared and held
    tested: int  # replicates with every pair compared: the units of the test
    comparisons: int
    comparisons_holding: int
    effect: float  # geometric mean ratio or mean difference, over all comparisons
    effect_min: float
    effect_max: float
    p: float | None  # sign-flip test over the `tested` replicates; None below MIN_SEEDS_FOR_TEST

    @property
    def verdict(self) -> str:
        if self.replicates == 0:
            return "n/a"
        if self.replicates_holding == self.replicates:
            return "holds"
        return "fails" if self.replicates_holding == 0 else "mixed"


def effect_kind(metric: str, comparisons: Sequence[Comparison]) -> str:
    """Ratios for sharpness when every value is positive; differences otherwise (and for test error)."""
    positive = all(c.lower_value > 0 and c.higher_value > 0 for c in comparisons)
    return RATIO if metric == "sharpness" and positive else DIFFERENCE


def comparison_effect(c: Comparison, kind: str) -> float:
    """Log ratio or difference: negative in the claim's direction, additive over comparisons."""
    return math.log(c.lower_value / c.higher_value) if kind == RATIO else c.lower_value - c.higher_value


def sign_flip_p(values: Sequence[float]) -> float:
    """One-sided p of `mean(values)` being this negative when each value's sign is a fair coin.

    Exact (all 2^n sign patterns) up to `EXACT_UP_TO` values; ties with the
    observed mean count as at least as extreme, so n values all negative give
    exactly 1/2^n. Beyond, up to `_SAMPLES` random patterns (a fixed generator
    seed, so the report is reproducible) give (hits + 1) / (samples + 1).
    """
    d = np.asarray(values, dtype=float)
    n = d.size
    if n == 0:
        raise ValueError("sign_flip_p needs at least one value")
    observed = d.sum()
    tolerance = 1e-9 * max(1.0, float(np.abs(d).sum()))
    if n <= EXACT_UP_TO:
        patterns = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1
        sums = patterns @ np.abs(d)
        return float(np.count_nonzero(sums <= observed + tolerance)) / 2**n
    rng = np.random.default_rng(0)
    magnitude, total = np.abs(d), float(np.abs(d).sum())
    samples, hits = max(1_000, min(_SAMPLES, _WORK // n)), 0
    for start in range(0, samples, _CHUNK):
        plus = rng.random((min(_CHUNK, samples - start), n)) < 0.5  # the values that keep a + sign
        sums = 2.0 * (plus.astype(float) @ magnitude) - total
        hits += int(np.count_nonzero(sums <= observed + tolerance))
    return float(hits + 1) / (samples + 1)


def summarize(comparisons: Sequence[Comparison], pairs: int, kind: str) -> Summary:
    """Counts, effect and test of `comparisons` made over `pairs` pairs of cells.

    A claim about several pairs holds in a replicate when every pair holds
    there, and fails as soon as one pair fails, even if another pair's cell
    is missing; a replicate with missing pairs and no failure decides
    nothing. The test uses the replicates with every pair compared; the
    statistic of each is its mean effect over the pairs.
    """
    effects = [comparison_effect(c, kind) for c in comparisons]
    by_replicate: dict[object, list[tuple[float, bool]]] = {}
    for c, e in zip(comparisons, effects):
        by_replicate.setdefault(c.replicate, []).append((e, c.holds))
    complete = {r: v for r, v in by_replicate.items() if len(v) == pairs}
    decided = [v for v in by_replicate.values() if len(v) == pairs or not all(h for _, h in v)]
    per_replicate = [sum(e for e, _ in v) / len(v) for v in complete.values()]
    if effects:
        to_scale = math.exp if kind == RATIO else float
        effect = to_scale(sum(effects) / len(effects))
        low, high = to_scale(min(effects)), to_scale(max(effects))
    else:
        effect = low = high = math.nan
    return Summary(
        kind=kind,
        replicates=len(decided),
        replicates_holding=sum(len(v) == pairs and all(h for _, h in v) for v in decided),
        tested=len(complete),
        comparisons=len(comparisons),
        comparisons_holding=sum(c.holds for c in comparisons),
        effect=effect,
        effect_min=low,
        effect_max=high,
        p=sign_flip_p(per_replicate) if len(per_replicate) >= MIN_SEEDS_FOR_TEST else None,
    )


def format_effect(summary: Summary) -> str:
    """`×0.082 (0.051–0.12)` for ratios, `-0.35 pp (-0.60 to -0.10)` for differences, `-` for none."""
    if summary.comparisons == 0:
        return "-"
    if summary.kind == RATIO:
        text = f"×{summary.effect:.3g}"
        return text if summary.comparisons == 1 else f"{text} ({summary.effect_min:.3g}–{summary.effect_max:.3g})"
    text = f"{summary.effect:+.2f} pp"
    if summary.comparisons == 1:
        return text
    return f"{text} ({summary.effect_min:+.2f} to {summary.effect_max:+.2f})"


def format_p(summary: Summary) -> str:
    """The test's p, or why there is none."""
    if summary.p is not None:
        return f"{summary.p:.3g}"
    if summary.tested == 0:
        return "-"
    return "one seed" if summary.tested == 1 else f"{summary.tested} seeds: no test"
