"""One thread count for every framework in a bench session.

Three layers, because no single one reaches every framework: environment variables the math
libraries read when they are loaded (set by the harness before the session starts), the CPU
affinity of the session (XLA and TensorFlow size their pools from it), and, once the adapter has
imported its framework, the framework's own intra-op setting.
"""

from __future__ import annotations

import os
import sys

ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
            "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def available() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def environment(n: int) -> dict[str, str]:
    return {k: str(n) for k in ENV_VARS}


def pin(n: int) -> str | None:
    """Restrict this process to n of its CPUs when fewer than all are asked for; describe it."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if n >= len(cpus):
        return None
    os.sched_setaffinity(0, cpus[:n])
    return f"CPU affinity {','.join(map(str, cpus[:n]))}"


def _torch(n: int) -> str:
    torch = sys.modules["torch"]
    torch.set_num_threads(n)
    return f"torch.set_num_threads({n}) -> {torch.get_num_threads()}"


def _tensorflow(n: int) -> str:
    tf = sys.modules["tensorflow"]
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
    except RuntimeError:  # the runtime is up already; it read TF_NUM_INTRAOP_THREADS when it started
        return f"TensorFlow intra-op threads from TF_NUM_INTRAOP_THREADS={n}"
    return f"tf.config.threading.set_intra_op_parallelism_threads({n})"


def _paddle(n: int) -> str:
    sys.modules["paddle"].base.core.set_num_threads(n)
    return f"paddle.base.core.set_num_threads({n})"


def _mindspore(n: int) -> str:
    sys.modules["mindspore"].set_context(runtime_num_threads=n)
    return f"mindspore.set_context(runtime_num_threads={n})"


SETTERS = {"torch": _torch, "tensorflow": _tensorflow, "paddle": _paddle, "mindspore": _mindspore}


def apply(n: int) -> list[str]:
    """Set the intra-op threads of every framework the adapter imported; what was done, in words."""
    done = []
    for module, setter in SETTERS.items():
        if module in sys.modules:
            try:
                done.append(setter(n))
            except Exception as e:  # a framework without the knob keeps the env vars and the affinity
                done.append(f"{module}: could not set threads ({type(e).__name__}: {e})"[:200])
    return done
