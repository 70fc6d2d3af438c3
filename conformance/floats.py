"""Floating-point formats, exact rounding, hex text and ULP distance.

Every format the suite knows is a subset of float64, so values of any case dtype travel as float64
arrays and exact rationals are rounded here with integer arithmetic (no double rounding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Format:
    name: str
    precision: int  # significand bits, the hidden bit included
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number
    bits: str  # unsigned integer dtype of the same width, for ULP ordinals

    @property
    def unit_roundoff(self) -> float:
        return 2.0 ** -self.precision

    @property
    def underflow(self) -> float:
        """The smallest subnormal: it bounds the absolute error of one rounding in the subnormal
        range (half of it would do, but for float64 that half is not a float64 number)."""
        return 2.0 ** (self.emin - self.precision + 1)

    @property
    def max_finite(self) -> float:
        return (2.0 - 2.0 ** (1 - self.precision)) * 2.0**self.emax

    @property
    def overflow_threshold(self) -> float:
        """Values of this magnitude and above round to infinity (round to nearest, ties to even)."""
        return (2.0 - 2.0 ** -self.precision) * 2.0**self.emax


FORMATS = {
    "float16": Format("float16", 11, -14, 15, "uint16"),
    "bfloat16": Format("bfloat16", 8, -126, 127, "uint16"),
    "float32": Format("float32", 24, -126, 127, "uint32"),
    "float64": Format("float64", 53, -1022, 1023, "uint64"),
}
DTYPES = tuple(FORMATS)


def fmt(dtype: str) -> Format:
    try:
        return FORMATS[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}") from None


def numpy_dtype(dtype: str) -> np.dtype:
    """The NumPy dtype of a name: a format (bfloat16 through ml_dtypes) or any NumPy dtype (int64
    targets, in the worker's arrays)."""
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


# --- exact rounding -------------------------------------------------------------------------------


def round_ratio(num: int, den: int, dtype: str) -> float:
    """num/den rounded to nearest (ties to even) in `dtype`, returned as the equal float64."""
    if den <= 0:
        raise ValueError("denominator must be positive")
    if num == 0:
        return 0.0
    f = fmt(dtype)
    sign = -1.0 if num < 0 else 1.0
    num = abs(num)
    # e = floor(log2(num/den))
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    if e > f.emax:
        return sign * math.inf
    q = max(e, f.emin) - (f.precision - 1)  # exponent of one ULP at this magnitude
    # m = num / (den * 2**q), rounded to an integer, ties to even
    if q >= 0:
        m, r = divmod(num, den << q)
        half = den << q
    else:
        m, r = divmod(num << -q, den)
        half = den
    twice = 2 * r
    if twice > half or (twice == half and m & 1):
        m += 1
    if m.bit_length() > f.precision and max(e, f.emin) + 1 > f.emax:
        return sign * math.inf
    return sign * math.ldexp(m, q)


def round_fraction(q: Fraction, dtype: str) -> float:
    return round_ratio(q.numerator, q.denominator, dtype)


def round_array(values: np.ndarray, dtype: str) -> np.ndarray:
    """float64 array rounded (once, correctly) to `dtype`, returned as float64."""
    values = np.asarray(values, dtype=np.float64)
    if dtype == "float64":
        return values.copy()
    if dtype == "bfloat16":
        # ml_dtypes casts float64 -> float32 -> bfloat16 and so can round twice; rounding to
        # float32 "to odd" first makes the second rounding the correct one.
        with np.errstate(over="ignore"):
            f32 = values.astype(np.float32)
        inexact = np.isfinite(f32) & (f32.astype(np.float64) != values)
        even = (f32.view(np.uint32) & 1) == 0
        toward = np.where(values > f32, np.inf, -np.inf).astype(np.float32)
        f32 = np.where(inexact & even, np.nextafter(f32, toward), f32)
        return f32.astype(numpy_dtype(dtype)).astype(np.float64)
    with np.errstate(over="ignore"):
        return values.astype(numpy_dtype(dtype)).astype(np.float64)


def representable(values: np.ndarray, dtype: str) -> np.ndarray:
    """Boolean mask: which float64 values are exactly representable in `dtype` (NaN counts as yes)."""
    values = np.asarray(values, dtype=np.float64)
    r = round_array(values, dtype)
    return (r == values) | np.isnan(values) | ((r == 0) & (values == 0))


# --- text form ------------------------------------------------------------------------------------


def encode(v: float) -> str:
    """Exact text for a float: hex for finite values (keeps -0.0 and subnormals), else nan/inf/-inf."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    mantissa, exponent = v.hex().split("p")
    return mantissa.rstrip("0").rstrip(".") + "p" + exponent  # '0x1.8p+1', not '0x1.8000000000000p+1'


_NAMED = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan, "inf": math.inf, "+inf": math.inf,
          "infinity": math.inf, "+infinity": math.inf, "-inf": -math.inf, "-infinity": -math.inf}


def decode(s) -> float:
    """Inverse of encode; also takes plain JSON numbers. Raises ValueError on anything else."""
    if isinstance(s, str):
        t = s.strip().lower()
        try:
            return float.fromhex(t) if "0x" in t else _NAMED[t] if t in _NAMED else float(t)
        except ValueError:
            pass
    elif isinstance(s, (int, float)) and not isinstance(s, bool):
        return float(s)
    raise ValueError(f"expected a number, 'nan', 'inf', '-inf' or a hex float string, got {s!r}")


def encode_array(a) -> list | str:
    """Nested lists of encoded floats (a 0-d array becomes one string)."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return encode(a)
    return [encode_array(row) if a.ndim > 1 else encode(row) for row in a]


MAX_NESTING = 32  # list levels a value may have: decoding recurses once per level


def _too_deep() -> ValueError:
    return ValueError(f"lists nested too deeply (more than {MAX_NESTING} levels)")


def check_nesting(data) -> None:
    """ValueError if lists nest deeper than MAX_NESTING (looked at without recursion)."""
    stack = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple)):
            if depth >= MAX_NESTING:
                raise _too_deep()
            stack.extend((i, depth + 1) for i in item)


def decode_array(data) -> np.ndarray:
    """Nested lists of numbers / strings to a float64 array; raises ValueError naming the problem."""
    return _decode_array(data, 0)


def _decode_array(data, depth: int) -> np.ndarray:
    if not isinstance(data, (list, tuple)):
        return np.array(decode(data), dtype=np.float64)
    if depth >= MAX_NESTING:
        raise _too_deep()
    if not any(isinstance(item, (list, tuple)) for item in data):  # a row: one array, not one per number
        return np.array([decode(item) for item in data], dtype=np.float64)
    rows = [_decode_array(item, depth + 1) for item in data]
    if len({r.shape for r in rows}) > 1:
        raise ValueError("ragged nested list: rows have different lengths")
    return np.stack(rows)


# --- ULP distance ---------------------------------------------------------------------------------


def _sign_magnitude(values: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Sign bit and magnitude bits of each value in `dtype`: magnitudes count the representable
    values from zero, so two magnitudes of one sign differ by the number of steps between them."""
    f = fmt(dtype)
    bits = np.asarray(values, dtype=np.float64).astype(numpy_dtype(dtype)).view(f.bits).astype(np.uint64)
    sign = np.uint64(1) << np.uint64(np.dtype(f.bits).itemsize * 8 - 1)
    return (bits & sign) != 0, (bits & ~sign).astype(np.int64)


def ulp_distance(got: np.ndarray, want: np.ndarray, dtype: str) -> np.ndarray:
    """Number of `dtype` values between got and want: 0 when equal (+0 and -0 too, NaN and NaN too),
    inf when exactly one is NaN; infinity counts as one step past the largest finite value.

    Both are rounded to `dtype` first, so a wider result is measured at the case's precision.
    """
    got = round_array(got, dtype)
    want = round_array(want, dtype)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    sg, mg = _sign_magnitude(np.where(nan_g, 0.0, got), dtype)
    sw, mw = _sign_magnitude(np.where(nan_w, 0.0, want), dtype)
    same_side = np.abs(mg - mw).astype(np.float64)  # exact: both magnitudes are below 2**63
    across_zero = mg.astype(np.float64) + mw.astype(np.float64)
    d = np.where(sg == sw, same_side, across_zero)
    d = np.where(nan_g & nan_w, 0.0, d)
    return np.where(nan_g ^ nan_w, math.inf, d)
