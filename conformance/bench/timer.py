"""Timer: how one prepared call is timed, inside a bench session.

The first call is timed apart (it compiles or traces where the mode does); a warm-up follows, and
its calls give the estimate that sizes the measurement: a round is `iterations` back-to-back calls,
enough to last `min_round_s` (so the clock's resolution and overhead stay small), and the rounds
fill the row's time budget, between `min_rounds` (for a stable median and IQR) and `max_rounds`.
The rounds run under pytest-benchmark's pedantic mode, which records them. Every call blocks until
its outputs are ready (the adapter's prepared callable synchronises), and each computes fresh
outputs and gradients, so nothing accumulates from call to call.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

_clock: Callable[[], float] = time.perf_counter


def now() -> float:
    """The clock pytest-benchmark reads in a bench session (--benchmark-timer conformance.bench.timer.now)."""
    return _clock()


def use_clock(clock: Callable[[], float]) -> None:
    global _clock
    _clock = clock


def cuda_event_clock(torch) -> Callable[[], float]:
    """Seconds of GPU time since this clock was made: a CUDA event recorded and waited for on each
    reading. Made afresh for each row, because event intervals are float32 milliseconds."""
    origin = torch.cuda.Event(enable_timing=True)
    origin.record()

    def read() -> float:
        e = torch.cuda.Event(enable_timing=True)
        e.record()
        e.synchronize()
        return origin.elapsed_time(e) / 1e3

    return read


@dataclass
class Timer:
    fn: Callable[[], object]
    budget_s: float = 1.0  # time for the measured rounds of one row
    min_rounds: int = 7
    max_rounds: int = 2000
    min_round_s: float = 2e-4
    warmup_s: float | None = None  # default: a quarter of the budget, at most one second
    first_call_s: float | None = None
    warmup_calls: int = 0

    def first_call(self) -> float:
        t0 = now()
        self.fn()
        self.first_call_s = now() - t0
        return self.first_call_s

    def warm_up(self) -> float:
        """At least two calls and `warmup_s` seconds; the median call is the estimate."""
        limit = self.warmup_s if self.warmup_s is not None else min(self.budget_s / 4, 1.0)
        times: list[float] = []
        start = now()
        while len(times) < 2 or now() - start < limit:
            t0 = now()
            self.fn()
            times.append(now() - t0)
        self.warmup_calls = len(times)
        return statistics.median(times[len(times) // 2:])  # the later half: caches and allocators settled

    def plan(self, per_call: float) -> tuple[int, int]:
        """(rounds, iterations) for a call of about `per_call` seconds."""
        iterations = max(1, math.ceil(self.min_round_s / max(per_call, 1e-9)))
        rounds = int(self.budget_s / (per_call * iterations))
        return min(max(rounds, self.min_rounds), self.max_rounds), iterations

    def measure(self, benchmark) -> None:
        """Warm up, then the rounds through the pytest-benchmark fixture `benchmark`."""
        rounds, iterations = self.plan(self.warm_up())
        benchmark.pedantic(self.fn, rounds=rounds, iterations=iterations, warmup_rounds=0)
