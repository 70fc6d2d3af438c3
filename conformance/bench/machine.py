"""The machine a benchmark runs on: CPU model, last-level cache and measured memory bandwidth.

The bandwidth is measured in the same run as the rows it judges: on the CPU, a copy of an array
several times the last-level cache, split over the benchmark's threads (NumPy releases the GIL
while it copies); on a GPU, a device-to-device copy timed in a subprocess, so the harness never
imports a framework. Bytes count as in STREAM's copy: bytes read plus bytes written.
"""

from __future__ import annotations

import json
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


def cpu_bandwidth(threads: int, llc: int | None, repeats: int = 5) -> dict:
    """Best of `repeats` copies of an array 8x the LLC (64 MiB to 1 GiB), `threads` chunks at once."""
    size = min(max(8 * (llc or FALLBACK_LLC), 64 << 20), 1 << 30)
    src = np.ones(size, dtype=np.uint8)
    dst = np.zeros(size, dtype=np.uint8)  # written once, so no page faults are timed
    edges = np.linspace(0, size, threads + 1).astype(int)
    chunks = list(zip(edges[:-1], edges[1:]))

    def copy(chunk):
        a, b = chunk
        np.copyto(dst[a:b], src[a:b])

    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(copy, chunks))
            best = min(best, time.perf_counter() - t0)
    return {"gbps": 2 * size / best / 1e9, "bytes": size, "threads": threads,
            "method": f"copy of {size >> 20} MiB in {threads} thread(s), best of {repeats}"}


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
