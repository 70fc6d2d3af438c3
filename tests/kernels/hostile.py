"""Kernels that misbehave on purpose, for `mmconf check --framework numpy`: the harness must judge
each case and survive (SPEC MML-1.6, MML-1.7; crash and hang isolation)."""

import os
import signal
import time

import numpy as np

from tests.kernels.numpy_kernels import correct


def segfault_on_nan(input, target, **kw):
    if np.isnan(np.asarray(input, dtype=np.float64)).any():
        os.kill(os.getpid(), signal.SIGSEGV)
    return correct(input, target, **kw)


def hang_on_empty_batch(input, target, **kw):
    if np.size(input) == 0:
        time.sleep(3600)
    return correct(input, target, **kw)


def wrong_shape(input, target, **kw):
    return np.atleast_1d(correct(input, target, **kw))[None]


def wrong_dtype(input, target, **kw):
    return correct(input, target, **kw).astype(np.float64 if np.asarray(input).dtype != np.float64 else np.float32)


def returns_none(input, target, **kw):
    return None


def raises(input, target, **kw):
    raise RuntimeError("this kernel always fails")


def mutates_input(input, target, **kw):
    out = correct(input, target, **kw)
    input[...] = 0  # scribbles over the caller's scores
    return out
