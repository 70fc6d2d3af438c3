"""Measurement: what the blocks of one row say, in seconds per call; Ratio: two rows of one run,
paired block by block.

A row is timed in blocks of back-to-back calls; the rows of one size and pass take turns, one
block each per round, so that each round's blocks saw the same machine. `per_call[i]` is the mean
call of the row's block in round i (None for a round it sat out). The median over blocks is the
statistic reported; its interval and the IQR say how much to trust it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import stats

NOISY = 0.10  # IQR / median above this: the row is flagged noisy


@dataclass
class Ratio:
    """The median of the per-round ratios of two rows, with its 95% interval (stats.py)."""

    estimate: float
    interval: tuple[float, float] | None
    pairs: int

    @property
    def width(self) -> float:
        return stats.relative_width(self.estimate, self.interval)

    def fields(self, prefix: str) -> dict:
        lo, hi = self.interval or (None, None)
        return {prefix: self.estimate, f"{prefix}_lo": lo, f"{prefix}_hi": hi, f"{prefix}_blocks": self.pairs}


@dataclass
class Measurement:
    per_call: list  # seconds per call in each round's block, None where the row sat the round out

    @property
    def times(self) -> list[float]:
        return [t for t in self.per_call if t is not None]

    @property
    def median(self) -> float:
        return stats.median(self.times)

    @property
    def interval(self) -> tuple[float, float] | None:
        return stats.median_interval(self.times)

    @property
    def width(self) -> float:
        return stats.relative_width(self.median, self.interval)

    def noisy(self, threshold: float = NOISY) -> bool:
        t = self.times
        return stats.quantile(t, 0.75) - stats.quantile(t, 0.25) > threshold * self.median

    def ratio_to(self, other: Measurement) -> Ratio | None:
        """This row over `other`, round by round where both have a block."""
        pairs = [a / b for a, b in zip(self.per_call, other.per_call) if a is not None and b]
        if not pairs:
            return None
        return Ratio(stats.median(pairs), stats.median_interval(pairs), len(pairs))

    def fields(self) -> dict:
        """The record's timing fields."""
        t = self.times
        lo, hi = self.interval or (None, None)
        q1, q3 = stats.quantile(t, 0.25), stats.quantile(t, 0.75)
        return {"median_s": self.median, "median_lo_s": lo, "median_hi_s": hi, "q1_s": q1, "q3_s": q3,
                "iqr_s": q3 - q1, "min_s": min(t), "blocks": len(t), "block_s": self.per_call}
