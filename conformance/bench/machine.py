"""The machine a benchmark runs on: CPU model, last-level cache, measured memory bandwidth, and
what else is using its CPUs.

The bandwidth is measured in the same run as the rows it judges: on the CPU, a copy of an array
several times the last-level cache, split over the benchmark's threads (NumPy releases the GIL
while it copies); on a GPU, a device-to-device copy timed in a subprocess, so the harness never
imports a framework. Bytes count as in STREAM's copy: bytes read plus bytes written.

A copy into a reused buffer is the bound for a pass that only reads (fwd). A call that hands back
a fresh gradient must also get new memory from the system and touch each page once (a page fault
per 4 KiB page), so its bound is a copy into a fresh output (`fresh_copy_bandwidth`), measured
with 4 KiB pages and with transparent huge pages (2 MiB, where the kernel grants them).
"""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

FALLBACK_LLC = 32 << 20  # when /sys does not say


def llc_bytes() -> int | None:
    """The largest data or unified cache of CPU 0, from /sys (None where it is not there)."""
    best: tuple[int, int] | None = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        value = int(size.rstrip("KMG")) * scale
        best = max(best or (0, 0), (level, value))
    return best[1] if best else None


def _copy(pool: ThreadPoolExecutor, dst: np.ndarray, src: np.ndarray, threads: int) -> None:
    """src into dst, in `threads` chunks at once (NumPy releases the GIL while it copies)."""
    edges = np.linspace(0, len(src), threads + 1).astype(int)
    list(pool.map(lambda a, b: np.copyto(dst[a:b], src[a:b]), edges[:-1], edges[1:]))


def cpu_bandwidth(threads: int, llc: int | None, repeats: int = 5) -> dict:
    """Best of `repeats` copies of an array 8x the LLC (64 MiB to 1 GiB), `threads` chunks at once."""
    size = min(max(8 * (llc or FALLBACK_LLC), 64 << 20), 1 << 30)
    src = np.ones(size, dtype=np.uint8)
    dst = np.zeros(size, dtype=np.uint8)  # written once, so no page faults are timed
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            _copy(pool, dst, src, threads)
            best = min(best, time.perf_counter() - t0)
    return {"gbps": 2 * size / best / 1e9, "bytes": size, "threads": threads,
            "method": f"copy of {size >> 20} MiB in {threads} thread(s), best of {repeats}"}


HUGE_PAGE = 2 << 20
FRESH_MIN_BYTES = 1 << 20  # below, an allocator hands back memory it already has: no page faults to bound


def _fresh_output(nbytes: int, huge: bool) -> tuple[mmap.mmap, np.ndarray]:
    """A new anonymous mapping of nbytes, as a large allocation is; `huge`: 2 MiB-aligned and advised
    for transparent huge pages (what PyTorch's THP_MEM_ALLOC_ENABLE=1 does), else advised against."""
    m = mmap.mmap(-1, nbytes + (HUGE_PAGE if huge else 0))
    m.madvise(mmap.MADV_HUGEPAGE if huge else mmap.MADV_NOHUGEPAGE)
    a = np.frombuffer(m, dtype=np.uint8)
    start = -a.ctypes.data % HUGE_PAGE if huge else 0
    return m, a[start:start + nbytes]


def fresh_copy_bandwidth(nbytes: int, threads: int, huge: bool, repeats: int = 5, min_s: float = 0.2) -> dict:
    """Best of at least `repeats` copies of nbytes into a fresh output (map, copy in `threads`
    chunks, unmap: allocation, first touch and release all timed), as many as fill `min_s`."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return {"gbps": None, "error": "no madvise here"}
    src = np.ones(nbytes, dtype=np.uint8)
    best, runs, start = float("inf"), 0, time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        while runs < repeats or time.perf_counter() - start < min_s:
            t0 = time.perf_counter()
            m, dst = _fresh_output(nbytes, huge)
            _copy(pool, dst, src, threads)
            del dst
            m.close()
            best, runs = min(best, time.perf_counter() - t0), runs + 1
    pages = "transparent huge pages" if huge else "4 KiB pages"
    return {"gbps": 2 * nbytes / best / 1e9, "bytes": nbytes, "threads": threads,
            "method": f"copy into a fresh {nbytes / 2**20:.3g} MiB output ({pages}; map, copy, unmap), best of {runs}"}


def fresh_copies(nbytes_list, threads: int) -> dict:
    """{bytes: {"small": ..., "huge": ...}} for every output size of FRESH_MIN_BYTES or more."""
    return {str(n): {"small": fresh_copy_bandwidth(n, threads, False), "huge": fresh_copy_bandwidth(n, threads, True)}
            for n in sorted(set(nbytes_list)) if n >= FRESH_MIN_BYTES}


# --- what else runs: /proc/stat and a calibration kernel ------------------------------------------

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds over all CPUs since boot, from /proc/stat; None where it is missing.
    Busy counts user, nice, system, irq and softirq time; steal is time the hypervisor gave elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / TICK, steal / TICK


def calibrate(repeats: int = 2) -> list[float]:
    """Seconds of a fixed single-threaded kernel (pure Python arithmetic, no memory traffic) on each
    CPU this process may use, pinned there in turn, the best of `repeats` each (an interrupt is not
    a slower CPU). Its spread shows CPUs whose speed changes under the benchmark: in a VM a vCPU's
    speed depends on what runs beside it on the host (measured on a 2-vCPU VM: each vCPU switched
    between two speeds 1.7x apart, every 0.1 to 1 s, independently of the other)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    times = []
    try:
        for cpu in cpus or [None]:
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                total = 0
                for i in range(10000):
                    total += i * i
                best = min(best, time.perf_counter() - t0)
            times.append(best)
    finally:
        if cpus:
            os.sched_setaffinity(0, cpus)
    return times


def device_bandwidth(device: str, env: dict | None = None, timeout: float = 300.0) -> dict:
    """Device-to-device copy bandwidth, measured in a subprocess; {'error': ...} when no framework
    there can do it."""
    try:
        r = subprocess.run([sys.executable, "-m", "conformance.bench.machine", device], capture_output=True,
                           text=True, timeout=timeout, env=env)
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
        return {"gbps": None, "error": f"no measurement: {type(e).__name__}"}


def _torch_copy(device: str, size: int, repeats: int) -> dict:
    import torch

    src = torch.ones(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return {"gbps": 2 * size / best / 1e9, "bytes": size,
            "method": f"torch copy_ of {size >> 20} MiB on {device}, CUDA events, best of {repeats}"}


def _jax_copy(device: str, size: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    dev = jax.devices(device.split(":")[0] if device != "cuda" else "gpu")[0]
    src = jax.device_put(jnp.ones(size, dtype=jnp.uint8), dev)
    copy = jax.jit(lambda a: a + 1)  # reads and writes every byte; a plain copy may be elided
    copy(src).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        copy(src).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"gbps": 2 * size / best / 1e9, "bytes": size,
            "method": f"jax elementwise copy of {size >> 20} MiB on {device}, wall clock, best of {repeats}"}


def measure_device(device: str, size: int = 1 << 30, repeats: int = 10) -> dict:
    errors = []
    for probe in (_torch_copy, _jax_copy):
        try:
            return probe(device, size, repeats)
        except Exception as e:
            errors.append(f"{probe.__name__}: {type(e).__name__}: {e}"[:200])
    return {"gbps": None, "error": "; ".join(errors)}


if __name__ == "__main__":
    print(json.dumps(measure_device(sys.argv[1])))
