"""Measurement: what the rounds of one row say, in seconds per call.

Built from an entry of pytest-benchmark's JSON (a round of k iterations counts as its mean call).
The median is the statistic reported and compared; the interquartile range says how much to trust
it: a row whose IQR exceeds `NOISY` of its median is flagged noisy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

NOISY = 0.10  # IQR / median above this: the row is flagged noisy


@dataclass
class Measurement:
    median: float
    q1: float
    q3: float
    min: float
    mean: float
    rounds: int
    iterations: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def noisy(self, threshold: float = NOISY) -> bool:
        return self.iqr > threshold * self.median

    def gbps(self, nbytes: int) -> float:
        return nbytes / self.median / 1e9

    @classmethod
    def from_benchmark(cls, entry: dict) -> Measurement:
        s = entry["stats"]
        return cls(median=s["median"], q1=s["q1"], q3=s["q3"], min=s["min"], mean=s["mean"], rounds=s["rounds"],
                   iterations=s.get("iterations", 1))

    def fields(self) -> dict:
        """The record's timing fields."""
        d = asdict(self)
        return {"median_s": d["median"], "iqr_s": self.iqr, "q1_s": d["q1"], "q3_s": d["q3"], "min_s": d["min"],
                "mean_s": d["mean"], "rounds": d["rounds"], "iterations": d["iterations"]}
