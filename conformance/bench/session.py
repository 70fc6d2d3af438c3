"""A bench session: one backend's rows under pytest-benchmark, in a process of its own.

`mmconf bench` runs `pytest conformance/bench/session.py` once per backend, with MMCONF_BENCH_PLAN
naming the plan (JSON) and MMCONF_BENCH_EVENTS a JSON-lines file this session appends to: the rows
it planned, then each row as it starts and ends (status, first-call time, memory). The timings are
in pytest-benchmark's own JSON (--benchmark-json), keyed by the row's id.
"""

from __future__ import annotations

import json
import os
import sys
import time
from functools import cache
from pathlib import Path

import pytest

from conformance.bench import grid, threads
from conformance.bench.timer import Timer, cuda_event_clock, use_clock

PLAN = json.loads(Path(os.environ["MMCONF_BENCH_PLAN"]).read_text())
PINNED = threads.pin(PLAN["threads"])  # before the adapter imports its framework


def emit(**event) -> None:
    with open(os.environ["MMCONF_BENCH_EVENTS"], "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


@cache
def backend():
    from conformance.worker import make_backend

    b = make_backend(PLAN["backend"])
    b.load()
    applied = threads.apply(PLAN["threads"])
    return b, b.describe(), [x for x in [PINNED, *applied] if x]


def rows(desc: dict) -> list[dict]:
    """Every (device, mode, dtype, size, pass) the plan asks for and the backend has; dtypes the
    adapter does not declare stay in, to be reported as unsupported."""
    want = lambda key, have: [x for x in have if not PLAN[key] or x in PLAN[key]]  # noqa: E731
    out = []
    for device in want("devices", desc["devices"]):
        for mode in want("modes", desc["modes"]):
            for dtype in PLAN["dtypes"]:
                for n, c in PLAN["sizes"]:
                    for p in PLAN["passes"]:
                        rid = grid.row_id(PLAN["backend"], device, mode, dtype, n, c, p)
                        out.append({"id": rid, "device": device, "mode": mode, "dtype": dtype, "N": n, "C": c,
                                    "pass": p})
    return out


def pytest_generate_tests(metafunc):
    if "row" not in metafunc.fixturenames:
        return
    try:
        _, desc, applied = backend()
    except Exception as e:  # not installed, or broken: reported, not a crash
        emit(event="missing", reason=f"{type(e).__name__}: {e}".strip()[:1000])
        metafunc.parametrize("row", [])
        return
    skip = set(PLAN["skip"])
    planned = [r for r in rows(desc) if r["id"] not in skip]
    emit(event="plan", describe=desc, threads=applied, rows=planned)
    metafunc.parametrize("row", planned, ids=[r["id"] for r in planned])


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


def clock_for(b, device: str) -> str:
    """CUDA events for a torch backend on a GPU; the host's perf_counter otherwise (the call
    synchronises before it returns, so wall time covers the device's work)."""
    if device.startswith("cuda") and b.module == "torch" and "torch" in sys.modules:
        use_clock(cuda_event_clock(sys.modules["torch"]))
        return "cuda events"
    use_clock(time.perf_counter)
    return "perf_counter"


def measure(b, desc: dict, row: dict, benchmark) -> dict:
    device, mode, dtype, grad = row["device"], row["mode"], row["dtype"], row["pass"] == "fwd+bwd"
    if dtype not in desc["dtypes"].get(device, []):
        return {"status": "unsupported", "detail": f"{dtype} on {device} is not supported (declared by the adapter)"}
    call = None
    try:
        call = grid.make_call(row["N"], row["C"], dtype, grad)
        fn = b.prepare(call, device, mode, grad)
        clock = clock_for(b, device)
        memory = PeakMemory(b, device)
        timer = Timer(fn, **PLAN["timer"])
        timer.first_call()
        timer.measure(benchmark)
        peak, peak_kind = memory.read()
    except Exception as exc:  # MemoryError too: the row fails, the session goes on
        reason = b.unsupported(exc, call, device, mode) if call is not None else None
        return {"status": "unsupported" if reason else "error",
                "detail": (reason or f"{type(exc).__name__}: {exc}").strip()[:500]}
    return {"status": "ok", "first_call_s": timer.first_call_s, "warmup_calls": timer.warmup_calls,
            "peak_bytes": peak, "peak_kind": peak_kind, "clock": clock}


def test_row(row, benchmark):
    if benchmark.disabled:
        pytest.exit("pytest-benchmark is disabled in this session", returncode=3)
    b, desc, _ = backend()
    emit(event="start", id=row["id"])
    result = measure(b, desc, row, benchmark)
    benchmark.extra_info.update(row=row["id"], **result)
    emit(event="end", id=row["id"], **result)
    if result["status"] != "ok":
        pytest.skip(result["detail"])
