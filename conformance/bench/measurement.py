"""Measurement: what the blocks of one row say, in seconds per call; Ratio: two rows of one run,
paired block by block.

A row is timed in blocks of back-to-back calls; the rows of one size and pass take turns, one
block each per round, so that each round's blocks saw the same machine. `per_call[i]` is the mean
call of the row's block in round i (None for a round it sat out). The median over blocks is the
statistic reported; its interval and the IQR say how much to trust it.

The rounds come from one worker process after another (`starts`: the first round of each). A
kernel's speed can differ from process to process and stay put within one (where the heap placed
its buffers, which pages it faulted in, where its threads landed), and a VM's speed can change
between the processes' turns: measured here, one kernel took 7.7 ms per call in one fresh process
and 12.5 ms in the next. Blocks of one process cannot show that, so an interval is the hull of the
intervals of every process: a figure that depends on the process reads as wide, never as precise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import stats

NOISY = 0.10  # a row whose interval reaches further than this from its estimate is flagged noisy


@dataclass
class Ratio:
    """The median of the per-round ratios of two rows, with its 95% interval (stats.py)."""

    estimate: float
    interval: tuple[float, float] | None
    pairs: int
    processes: list = field(default_factory=list)  # the median ratio in each worker process

    @property
    def width(self) -> float:
        return stats.relative_width(self.estimate, self.interval)

    def fields(self, prefix: str) -> dict:
        lo, hi = self.interval or (None, None)
        return {prefix: self.estimate, f"{prefix}_lo": lo, f"{prefix}_hi": hi, f"{prefix}_blocks": self.pairs,
                f"{prefix}_processes": self.processes}


def by_process(values: list, starts: list) -> list[list[float]]:
    """The values (None left out) of each worker process that has any; `starts` as in Measurement."""
    starts = starts or [0]
    parts = [[v for v in values[a:b] if v is not None] for a, b in zip(starts, [*starts[1:], len(values)])]
    return [part for part in parts if part]


def _hull(values: list, starts: list) -> tuple[float, float] | None:
    """The intervals of the median of each process's values, joined; None unless every process
    has enough values for one."""
    intervals = [stats.median_interval(part) for part in by_process(values, starts)]
    if not intervals or None in intervals:
        return None
    return min(lo for lo, _ in intervals), max(hi for _, hi in intervals)


@dataclass
class Measurement:
    per_call: list  # seconds per call in each round's block, None where the row sat the round out
    starts: list = field(default_factory=list)  # the first round of each worker process ([] or [0]: one)

    @property
    def times(self) -> list[float]:
        return [t for t in self.per_call if t is not None]

    @property
    def median(self) -> float:
        return stats.median(self.times)

    @property
    def interval(self) -> tuple[float, float] | None:
        return _hull(self.per_call, self.starts)

    @property
    def width(self) -> float:
        return stats.relative_width(self.median, self.interval)

    def ratio_to(self, other: Measurement) -> Ratio | None:
        """This row over `other`, round by round where both have a block (the rows of a cell share
        their rounds, and so their processes' starts)."""
        rounds = [a / b if a is not None and b else None for a, b in zip(self.per_call, other.per_call)]
        pairs = [x for x in rounds if x is not None]
        if not pairs:
            return None
        return Ratio(stats.median(pairs), _hull(rounds, self.starts), len(pairs),
                     [stats.median(part) for part in by_process(rounds, self.starts)])

    def fields(self) -> dict:
        """The record's timing fields."""
        t = self.times
        lo, hi = self.interval or (None, None)
        q1, q3 = stats.quantile(t, 0.25), stats.quantile(t, 0.75)
        return {"median_s": self.median, "median_lo_s": lo, "median_hi_s": hi, "q1_s": q1, "q3_s": q3,
                "iqr_s": q3 - q1, "min_s": min(t), "blocks": len(t), "block_s": self.per_call,
                "process_starts": self.starts or [0]}
