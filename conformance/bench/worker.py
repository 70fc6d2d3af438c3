"""A bench worker: one backend's rows, timed block by block on the harness's request.

`python -m conformance.bench.worker BACKEND` runs the conformance worker's loop
(`conformance.worker.serve`: JSON lines, crash and hang isolation) with these requests:

- `describe`: the backend's description and the thread settings applied (once the framework is
  imported);
- `prepare` a row: build its inputs, prepare the call, time the first call, warm up; the reply
  holds the estimate of one call, the first call's time and the peak memory;
- `block` of a prepared row: time `calls` back-to-back calls (timer.Timer.block);
- `release` a row: drop its inputs and outputs.

The harness keeps every backend's worker alive for the whole run and asks them in turn, so the
rows of one size and pass are measured interleaved. The thread count is fixed before the framework
is imported: environment variables (set by the harness), the CPU affinity (here, first thing), and
the framework's own setting once the adapter has imported it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from conformance.bench import grid, threads
from conformance.bench.timer import Timer, cuda_event_clock

THREADS = int(os.environ.get("MMCONF_BENCH_THREADS", "0")) or threads.available()
PINNED = threads.pin(THREADS) if __name__ == "__main__" else None  # before the adapter imports its framework
applied: list[str] | None = None  # the framework's own thread settings, made on the first request
prepared: dict[str, tuple] = {}  # row id -> (Timer, inputs and outputs kept alive)


class PeakMemory:
    """The allocator's peak where the adapter reports one (inputs included); otherwise how far the
    resident set grew above what it was before the first call (Linux: VmHWM, reset per row)."""

    def __init__(self, b, device: str):
        self.b, self.device = b, device
        b.reset_peak_memory(device)
        self.hwm_reset = _reset_hwm()
        self.rss0 = _status_kib("VmRSS")

    def read(self) -> tuple[int | None, str | None]:
        peak = self.b.peak_memory(self.device)
        if peak is not None:
            return peak, "allocator"
        hwm = _status_kib("VmHWM")
        if not self.hwm_reset or hwm is None or self.rss0 is None:
            return None, None
        return max(hwm - self.rss0, 0) * 1024, "rss growth"


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def clock_for(b, device: str) -> tuple:
    """CUDA events for a torch backend on a GPU; the host's perf_counter otherwise (the call
    synchronises before it returns, so wall time covers the device's work)."""
    if device.startswith("cuda") and b.module == "torch" and "torch" in sys.modules:
        return cuda_event_clock(sys.modules["torch"]), "cuda events"
    return time.perf_counter, "perf_counter"


def prepare(b, row: dict, warmup_s: float) -> dict:
    device, mode, dtype, grad = row["device"], row["mode"], row["dtype"], row["pass"] == "fwd+bwd"
    if dtype not in b.dtypes(device):
        return {"status": "unsupported", "detail": f"{dtype} on {device} is not supported (declared by the adapter)"}
    call = None
    try:
        call = grid.make_call(row["N"], row["C"], dtype, grad)
        fn = b.prepare(call, device, mode, grad)
        clock, clock_name = clock_for(b, device)
        memory = PeakMemory(b, device)
        timer = Timer(fn, clock=clock, warmup_s=warmup_s)
        timer.first_call()
        estimate = timer.warm_up()
        peak, peak_kind = memory.read()
    except Exception as exc:  # MemoryError too: the row fails, the worker goes on
        reason = b.unsupported(exc, call, device, mode) if call is not None else None
        return {"status": "unsupported" if reason else "error",
                "detail": (reason or f"{type(exc).__name__}: {exc}").strip()[:500]}
    prepared[row["id"]] = (timer, call)
    return {"status": "ok", "estimate_s": estimate, "first_call_s": timer.first_call_s,
            "warmup_calls": timer.warmup_calls, "peak_bytes": peak, "peak_kind": peak_kind, "clock": clock_name}


def handle(b, req: dict) -> dict:
    global applied
    if applied is None:  # the adapter has imported its framework by now (load)
        applied = threads.apply(THREADS)
    op = req.get("op")
    if op == "describe":
        return {"describe": b.describe(), "threads": [x for x in [PINNED, *applied] if x]}
    if op == "prepare":
        return prepare(b, req["row"], req["warmup_s"])
    if op == "block":
        return prepared[req["id"]][0].block(req["calls"])
    if op == "release":
        prepared.pop(req["id"], None)
        return {}
    return {"protocol_error": f"unknown op {op!r}"}


if __name__ == "__main__":
    from conformance.worker import serve

    # no retiring mid-run (prepared rows live here), and no memory watchdog waking among the timings
    serve(sys.argv[1], handle=handle, max_rss=None, memory_limit=None)
