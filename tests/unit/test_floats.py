"""Exact rounding, hex text and ULP distance (conformance/floats.py)."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.floats import (
    FORMATS,
    decode,
    decode_array,
    encode,
    encode_array,
    round_array,
    round_fraction,
    round_ratio,
    ulp_distance,
)


@pytest.mark.parametrize("v", [0.0, -0.0, 1.0, -2.5, 0.1, 5e-324, -2.2250738585072014e-308, 1.7976931348623157e308,
                               math.inf, -math.inf])
def test_hex_round_trip(v):
    s = encode(v)
    back = decode(s)
    assert back == v and math.copysign(1, back) == math.copysign(1, v)


def test_hex_nan_and_plain_numbers():
    assert encode(math.nan) == "nan" and math.isnan(decode("nan"))
    assert encode(1.5) == "0x1.8p+0" and encode(-0.0) == "-0x0p+0"
    assert decode(3) == 3.0 and decode("0x1.8p+1") == 3.0 and decode("-inf") == -math.inf
    for bad in ("fish", True, None, [1]):
        with pytest.raises(ValueError):
            decode(bad)


def test_array_round_trip_keeps_specials():
    a = np.array([[np.nan, -0.0, 5e-324], [np.inf, -np.inf, 0.1]])
    b = decode_array(encode_array(a))
    assert np.array_equal(a, b, equal_nan=True) and np.signbit(b[0, 1])


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_round_ratio_float64_matches_python(v):
    q = Fraction(v)
    assert round_fraction(q, "float64") == v


@given(st.integers(-(2**80), 2**80), st.integers(1, 2**80))
def test_round_ratio_float64_is_correctly_rounded(num, den):
    # Python's int / int is correctly rounded to float64
    assert round_ratio(num, den, "float64") == num / den


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@given(v=st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_round_to_narrow_dtype_matches_numpy(dtype, v):
    # numpy's float64 -> float16/float32 casts round once, correctly
    with np.errstate(over="ignore"):
        want = float(np.array(v).astype(dtype))
    assert round_fraction(Fraction(v), dtype) == want
    assert round_array(np.array([v]), dtype)[0] == want


def test_bfloat16_rounds_once():
    # 1 + 2^-8 + 2^-30 lies above the midpoint of 1 and 1 + 2^-7: it must round up,
    # although rounding to float32 first would land on the midpoint and then on 1
    v = 1 + 2**-8 + 2**-30
    assert round_fraction(Fraction(v), "bfloat16") == 1 + 2**-7
    assert round_array(np.array([v]), "bfloat16")[0] == 1 + 2**-7


@pytest.mark.parametrize("dtype", list(FORMATS))
def test_overflow_and_ties(dtype):
    f = FORMATS[dtype]
    assert round_fraction(Fraction(f.max_finite), dtype) == f.max_finite
    threshold = (2 - Fraction(2) ** -f.precision) * Fraction(2) ** f.emax
    assert round_fraction(threshold, dtype) == math.inf  # the tie rounds to even: inf
    below = threshold - Fraction(2) ** (f.emax - 2 * f.precision)
    assert round_fraction(below, dtype) == f.max_finite
    tiny = Fraction(2) ** (f.emin - f.precision + 1)
    assert round_fraction(tiny, dtype) == float(tiny)  # the smallest subnormal
    assert round_fraction(tiny / 2, dtype) == 0.0  # a tie with zero rounds to even (zero)
    assert round_fraction(tiny * 3 / 4, dtype) == float(tiny)
    assert round_fraction(-tiny * 3 / 2, dtype) == -float(2 * tiny)  # ties to even


def _step(v, dtype, k):
    """v moved k representable values up in dtype."""
    dt = np.dtype(dtype) if dtype != "bfloat16" else None
    out = np.array(v, dtype=dt or np.float32)
    for _ in range(abs(k)):
        out = np.nextafter(out, np.array(np.inf if k > 0 else -np.inf, dtype=out.dtype))
    return float(out)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("k", [0, 1, 5, 50])
@pytest.mark.parametrize("v", [1.0, -3.25, 0.0, 1e-40])
def test_ulp_distance_counts_steps(dtype, k, v):
    v = float(np.array(v).astype(dtype))
    assert ulp_distance(np.array([_step(v, dtype, k)]), np.array([v]), dtype)[0] == k
    assert ulp_distance(np.array([_step(v, dtype, -k)]), np.array([v]), dtype)[0] == k


def test_ulp_distance_special_values():
    d = ulp_distance(np.array([-0.0, np.nan, np.nan, 1.0, np.inf, 5e-324, -5e-324]),
                     np.array([0.0, np.nan, 1.0, np.nan, 1.7976931348623157e308, 0.0, 5e-324]), "float64")
    assert list(d) == [0, 0, math.inf, math.inf, 1, 1, 2]
    # bfloat16: one step above 1 is 1 + 2^-7
    assert ulp_distance(np.array([1 + 2**-7]), np.array([1.0]), "bfloat16")[0] == 1
    # float16 subnormals: 2^-24 is one step from zero
    assert ulp_distance(np.array([2.0**-24 * 3]), np.array([-(2.0**-24)]), "float16")[0] == 4
