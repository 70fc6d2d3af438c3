"""The benchmark grid: sizes, dtypes and passes, the call a row times, and the bytes it must move.

Framework-free: both the harness (planning, roofline) and the bench sessions (building the
inputs) use it.
"""

from __future__ import annotations

import numpy as np

from ..floats import numpy_dtype

# (N, C) -> why it is in the grid; the fourth size, beyond the last-level cache, is chosen from the
# machine's cache (beyond_cache)
SIZES = {
    (32, 10): "latency-bound",
    (4096, 1000): "typical",
    (256, 32768): "many classes",
}
BEYOND_CACHE = "beyond the last-level cache"
BEYOND_C, BEYOND_MIN_N = 4096, 16384
QUICK_SIZES = [(32, 10), (4096, 1000)]
PASSES = ("fwd", "fwd+bwd")

# The call every row times: the loss's defaults, batch-mean reduction.
CALL = {"p": 1, "margin": 1.0, "weight": None, "reduction": "mean"}


def beyond_cache(llc: int | None, fallback: int = 32 << 20) -> tuple[int, int]:
    """(N, 4096) whose float32 scores hold at least 4x the last-level cache (N a power of two, at
    least 16384): every pass then streams from memory, whatever the cache keeps."""
    n = BEYOND_MIN_N
    while n * BEYOND_C * 4 < 4 * (llc or fallback):
        n *= 2
    return n, BEYOND_C


def default_sizes(llc: int | None) -> list[tuple[int, int]]:
    return [*SIZES, beyond_cache(llc)]


def why(n: int, c: int, llc: int | None) -> str:
    """What a size is in the grid for ('' for one of the user's)."""
    return SIZES.get((n, c)) or (BEYOND_CACHE if (n, c) == beyond_cache(llc) else "")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'32x10,4096x1000' -> [(32, 10), (4096, 1000)]."""
    sizes = []
    for part in text.split(","):
        n, sep, c = part.strip().lower().partition("x")
        if not sep or not n.isdigit() or not c.isdigit() or int(n) < 1 or int(c) < 1:
            raise ValueError(f"bad size {part.strip()!r}: expected NxC with positive integers, e.g. 4096x1000")
        sizes.append((int(n), int(c)))
    return sizes


def row_id(backend: str, device: str, mode: str, dtype: str, n: int, c: int, pass_: str) -> str:
    return f"{backend}-{device}-{mode}-{dtype}-{n}x{c}-{pass_}"


def itemsize(dtype: str) -> int:
    return numpy_dtype(dtype).itemsize


def bytes_moved(n: int, c: int, dtype: str, pass_: str) -> int:
    """The least traffic a call needs: the forward pass reads the N*C scores once; forward and
    backward together also write an N*C gradient (targets and the scalar output are negligible)."""
    return n * c * itemsize(dtype) * (1 if pass_ == "fwd" else 2)


def make_call(n: int, c: int, dtype: str, grad: bool, seed: int = 0):
    """The row's inputs: standard-normal scores (about half the margin terms active), uniform
    targets, and the cotangent 1 of the scalar mean."""
    from impls.base import Call

    rng = np.random.default_rng(seed)
    dt = numpy_dtype(dtype)
    x = rng.standard_normal((n, c), dtype=np.float32 if dt.itemsize <= 4 else np.float64).astype(dt)
    target = rng.integers(0, c, size=n, dtype=np.int64)
    return Call(x=x, target=target, p=CALL["p"], margin=CALL["margin"], weight=CALL["weight"],
                reduction=CALL["reduction"], cotangent=np.ones((), dtype=dt) if grad else None)
