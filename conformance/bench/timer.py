"""Timer: how one prepared call is timed, inside a bench worker.

The first call is timed apart (it compiles or traces where the mode does); a warm-up follows, and
its calls give the estimate that sizes a block: `calls` back-to-back calls lasting about the
harness's block time. A block starts with one untimed call when it holds more than one (the
caches refilled after the other rows' turns), then times its calls with one clock reading at each
end. Around the timed calls it reads the scheduler's accounts of this process's threads
(/proc/self/task/*/schedstat: time on a CPU, time runnable but waiting for one), which say how
many threads the row really used and whether a busy machine kept them waiting. Every call blocks
until its outputs are ready (the adapter's prepared callable synchronises) and computes fresh
outputs and gradients, so nothing accumulates from call to call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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


def schedstat() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable and waiting) summed over this process's threads; None
    where the kernel does not keep the accounts."""
    on = wait = 0
    try:
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "schedstat").read_text().split()
            except OSError:  # the thread ended meanwhile
                continue
            on += int(fields[0])
            wait += int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return on / 1e9, wait / 1e9


@dataclass
class Timer:
    fn: Callable[[], object]
    clock: Callable[[], float] = time.perf_counter
    warmup_s: float = 0.25
    first_call_s: float | None = None
    warmup_calls: int = 0

    def first_call(self) -> float:
        t0 = self.clock()
        self.fn()
        self.first_call_s = self.clock() - t0
        return self.first_call_s

    def warm_up(self) -> float:
        """At least two calls and `warmup_s` seconds; the median call of the later half (caches and
        allocators settled) is the estimate."""
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 2 or time.perf_counter() - start < self.warmup_s:
            t0 = self.clock()
            self.fn()
            times.append(self.clock() - t0)
        self.warmup_calls = len(times)
        return statistics.median(times[len(times) // 2:])

    def block(self, calls: int) -> dict:
        """Time `calls` back-to-back calls: their total seconds; and over the whole block (the
        untimed call included, so that the harness can tell this process's CPU time from the
        others'), the wall time and the threads' CPU and run-queue seconds."""
        sched0, wall0 = schedstat(), time.perf_counter()
        if calls > 1:
            self.fn()
        t0 = self.clock()
        for _ in range(calls):
            self.fn()
        seconds = self.clock() - t0
        wall, sched1 = time.perf_counter() - wall0, schedstat()
        out = {"seconds": seconds, "wall_s": wall, "cpu_s": None, "wait_s": None}
        if sched0 and sched1:
            out["cpu_s"], out["wait_s"] = (max(b - a, 0.0) for a, b in zip(sched0, sched1))
        return out
