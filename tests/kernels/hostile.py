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


def returns_strings(input, target, **kw):
    return np.array(["not", "numbers"])


def returns_objects(input, target, **kw):
    return np.array([object()], dtype=object)


def writes_into_the_protocol(input, target, **kw):
    for fd in range(3, 64):  # the worker's reply channel is one of these
        try:
            os.write(fd, b"{not json\n")
        except OSError:
            pass
    return correct(input, target, **kw)


def leaves_a_child(input, target, **kw):
    """Starts a process that would outlive the run; its pid goes to $MMCONF_TEST_CHILD_PID."""
    import subprocess

    path = os.environ["MMCONF_TEST_CHILD_PID"]
    if not os.path.exists(path):
        child = subprocess.Popen(["sleep", "600"])
        with open(path, "w") as f:
            f.write(str(child.pid))
    return correct(input, target, **kw)


def segfault_always(input, target, **kw):
    os.kill(os.getpid(), signal.SIGSEGV)


def hogs_memory(input, target, **kw):
    """Holds 1.5 GiB for a while: beyond a worker memory limit set for the test."""
    hog = np.ones(3 << 27, dtype=np.float32)
    time.sleep(2)
    return correct(input, target, **kw) + 0 * hog[0]


def never_raises(input, target, **kw):
    """A number for every call, valid or not."""
    return np.zeros((), dtype=np.asarray(input).dtype)
