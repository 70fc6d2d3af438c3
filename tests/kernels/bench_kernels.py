"""Kernels for the benchmark harness's tests: the same loss once and twenty times over (the
regression gate must catch the second), and one that crashes or hangs on chosen batch sizes (the
harness must lose those rows only)."""

import os
import signal
import time

from tests.kernels.numpy_kernels import correct


def once(input, target, **kw):
    return correct(input, target, **kw)


def twenty_times(input, target, **kw):
    for _ in range(19):
        correct(input, target, **kw)
    return correct(input, target, **kw)


def crash_16_hang_32(input, target, **kw):
    if len(input) == 16:
        os.kill(os.getpid(), signal.SIGSEGV)
    if len(input) == 32:
        time.sleep(3600)
    return correct(input, target, **kw)


# The regression gate's A/B check (README, "The gate"): our PyTorch implementation, and the same with
# real extra work, a quarter of the batch or the whole batch once more (its loss times zero: the
# value stays, forward and backward both do the work).
def torch_fast(input, target, **kw):
    from impls.torch_fast import multi_margin_loss

    return multi_margin_loss(input, target, **kw)


def torch_fast_plus_a_quarter(input, target, **kw):
    q = max(1, len(input) // 4)
    return torch_fast(input, target, **kw) + 0 * torch_fast(input[:q], target[:q], **kw)


def torch_fast_twice(input, target, **kw):
    return torch_fast(input, target, **kw) + 0 * torch_fast(input, target, **kw)
