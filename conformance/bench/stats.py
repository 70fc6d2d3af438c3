"""The statistics of paired blocks, and the gate's decision rule. Pure functions, no framework.

Every interval here is a distribution-free 95% confidence interval of a median: the order
statistics x_(l) and x_(n+1-l) of the n sorted values, with l the largest rank such that a
Binomial(n, 1/2) variable falls below l with probability at most 2.5% (the interval of the sign
test). It assumes nothing about the shape of the timing distribution (skewed, heavy-tailed, with
outliers from a descheduled block), and needs at least 6 values: with fewer, min to max covers
less than 95%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CONFIDENCE = 0.95
MIN_VALUES = 6  # the least n whose min-to-max interval covers the median at 95% (1 - 2/2^6 = 96.9%)


def median(values: Sequence[float]) -> float:
    xs = sorted(values)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (NumPy's default method)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _rank(n: int, confidence: float) -> int:
    """The largest l >= 1 with P(Binomial(n, 1/2) < l) <= (1 - confidence) / 2, exactly, in integers."""
    tail = 2**n * round((1 - confidence) / 2 * 10**9) // 10**9  # integers: 2**n overflows a float
    term, below, rank = 1, 0, 0  # term = C(n, rank); below = sum of C(n, k) for k < rank
    while below + term <= tail:
        below += term
        term = term * (n - rank) // (rank + 1)
        rank += 1
    return max(rank, 1)


def median_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The confidence interval of the median (see the module docstring); None below MIN_VALUES."""
    xs = sorted(values)
    n = len(xs)
    if n < MIN_VALUES:
        return None
    rank = _rank(n, confidence)
    return xs[rank - 1], xs[n - rank]


def relative_width(estimate: float, interval: tuple[float, float] | None) -> float:
    """How far the interval reaches from the estimate, as a fraction of it (inf without an interval)."""
    if interval is None or estimate <= 0 or interval[0] <= 0:
        return math.inf
    return max(interval[1] / estimate, estimate / interval[0]) - 1


def quotient(new: tuple[float, float], old: tuple[float, float]) -> tuple[float, float]:
    """The interval of new / old from the intervals of both, ends divided crosswise. When each
    covers its true value (95% each) the quotient covers the true change: at least 90% by
    Bonferroni, more in practice since each end errs on one side only."""
    return new[0] / old[1], new[1] / old[0]


# --- the gate ---------------------------------------------------------------------------------------

SLOWER, FASTER, SAME, INCONCLUSIVE = "SLOWER", "FASTER", "same", "INCONCLUSIVE"


def decide(interval: tuple[float, float] | None, max_slowdown: float) -> str:
    """A change of speed (the interval of time now / time before) against the allowed slowdown s:
    SLOWER when the whole interval lies above 1 + s, FASTER when it lies below 1 / (1 + s), same
    when it lies between the two, INCONCLUSIVE when it reaches across a limit (too wide to say)."""
    if interval is None:
        return INCONCLUSIVE
    limit = 1 + max_slowdown
    lo, hi = interval
    if lo > limit:
        return SLOWER
    if hi < 1 / limit:
        return FASTER
    if lo >= 1 / limit and hi <= limit:
        return SAME
    return INCONCLUSIVE
