"""Differential fuzzing, bounded profile for CI (`mmconf fuzz --examples 10000` is the soak)."""

import pytest

from conformance.fuzz import fuzz
from impls import registry

# examples per backend: the NumPy backend is cheap; compiled modes compile once per new shape
EXAMPLES = {"numpy": 300}


@pytest.mark.parametrize("backend", list(registry()))
def test_fuzz_finds_no_unexplained_mismatch(backend):
    r = fuzz(backend, examples=EXAMPLES.get(backend, 30), seed=0)
    if "missing" in r:
        pytest.skip(f"{backend}: {r['missing']}")
    f = r["failure"]
    assert f is None, (f["case"], [(x["mode"], x["check"], x["verdict"], x["detail"][:300]) for x in f["records"]])


def test_fuzz_catches_a_wrong_kernel():
    r = fuzz("check:numpy:tests.kernels.numpy_kernels:weight_inside", examples=200, seed=0)
    assert r["failure"] is not None
    case = r["failure"]["case"]
    assert case["weight"] is not None  # shrunk to a case that needs a weight to go wrong
