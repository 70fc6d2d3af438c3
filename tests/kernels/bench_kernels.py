"""Kernels for the benchmark harness's tests: the same loss once and twenty times over (the
regression gate must catch the second), and one that crashes or hangs on chosen batch sizes (the
harness must lose those rows only)."""

import functools
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


# The regression gate's A/B check (README, "The gate"): PyTorch's loss and ours, and the same made
# slower by a known fraction of real work: each pass, forward and backward, is timed and followed by
# CPU work on the calling thread for that fraction of its time, so the slowdown is the fraction
# exactly, whatever the size (work proportional to the batch would add each call's fixed costs too).
def torch_eager(input, target, **kw):
    import torch.nn.functional as F

    return F.multi_margin_loss(input, target, **kw)


def torch_fast(input, target, **kw):
    from impls.torch_fast import multi_margin_loss

    return multi_margin_loss(input, target, **kw)


def _slowed(fn, fraction):
    def busy(seconds):
        end, n = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            n = (n * 1103515245 + 12345) % 2147483648  # real arithmetic, one core

    @functools.cache
    def function():  # made on first use: importing this module must not import torch (numpy workers)
        import torch

        class Slowed(torch.autograd.Function):
            @staticmethod
            def forward(ctx, input, target, kw):
                start = time.perf_counter()
                with torch.enable_grad():
                    ctx.x = input.detach().requires_grad_(input.requires_grad)
                    ctx.loss = fn(ctx.x, target, **kw)
                busy(fraction * (time.perf_counter() - start))
                return ctx.loss.detach()

            @staticmethod
            def backward(ctx, grad):
                start = time.perf_counter()
                (dx,) = torch.autograd.grad(ctx.loss, ctx.x, grad)
                busy(fraction * (time.perf_counter() - start))
                return dx, None, None

        return Slowed

    def slowed(input, target, **kw):
        if not input.requires_grad:
            start = time.perf_counter()
            out = fn(input, target, **kw)
            busy(fraction * (time.perf_counter() - start))
            return out
        return function().apply(input, target, kw)

    return slowed


torch_eager_25pc_slower = _slowed(torch_eager, 0.25)
torch_eager_2x_slower = _slowed(torch_eager, 1.0)
torch_fast_25pc_slower = _slowed(torch_fast, 0.25)
torch_fast_2x_slower = _slowed(torch_fast, 1.0)
