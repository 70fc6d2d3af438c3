"""The exact reference: loss values and input gradients in exact rational arithmetic.

Every finite float is a dyadic rational m * 2**e. Rows whose inputs are all finite are scaled to
Python integers sharing one exponent and the formula of SPEC.md (MML-2.1) is evaluated on those
integers, a whole batch at a time; rows holding NaN or an infinity take the term-by-term path that
applies the IEEE rules of MML-7. Nothing is rounded until the end, where each result is rounded
once, correctly, to float64 and to the case's dtype. Beside each result, the error model of
SPEC.md (MML-12) gives the bound that a reasonable evaluation in the case's dtype stays within.

This module shares no code with any backend: it is the single source of truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .floats import fmt, round_fraction

NAN = math.nan
INF = math.inf


# --- extended reals: Fraction when finite, float nan / +-inf otherwise (MML-7) -------------------


def _special(v) -> bool:
    return isinstance(v, float)


def ext(v: float) -> Fraction | float:
    return Fraction(v) if math.isfinite(v) else float(v)


def ext_sum(values) -> Fraction | float:
    """Sum that does not depend on order: NaN if any term is NaN or +inf meets -inf."""
    total, pos, neg = Fraction(0), False, False
    for v in values:
        if _special(v):
            if math.isnan(v):
                return NAN
            pos, neg = pos or v > 0, neg or v < 0
        else:
            total += v
    if pos and neg:
        return NAN
    return INF if pos else -INF if neg else total


def ext_mul(a, b) -> Fraction | float:
    if not (_special(a) or _special(b)):
        return a * b
    if math.isnan(a) or math.isnan(b) or a == 0 or b == 0:  # 0 * inf is NaN
        return NAN
    return INF if (a > 0) == (b > 0) else -INF


def ext_div(a, n: int) -> Fraction | float:
    return a if _special(a) else a / n


def ext_max0(v) -> Fraction | float:
    """max(0, v) with NaN propagating (IEEE 754-2019 maximum, not maxNum)."""
    if _special(v):
        return v if math.isnan(v) or v > 0 else Fraction(0)
    return v if v > 0 else Fraction(0)


def ext_round(v, dtype: str) -> float:
    return v if _special(v) else round_fraction(v, dtype)


# --- the problem and the answer -------------------------------------------------------------------


@dataclass
class Problem:
    """One valid call. Arrays are float64 holding values of `dtype` exactly."""

    x: np.ndarray  # (N, C) or (C,)
    target: np.ndarray  # (N,); or () or (1,) beside a 1-D x; integers in [0, C)
    p: int
    margin: float
    weight: np.ndarray | None  # (C,)
    reduction: str  # 'none' | 'mean' | 'sum'
    dtype: str
    cotangent: np.ndarray | None = None  # reduction 'none': the output's cotangent (default ones)

    @property
    def out_shape(self) -> tuple:
        return tuple(np.shape(self.target)) if self.reduction == "none" else ()


@dataclass
class Expectation:
    """What a conforming implementation returns for one valid problem.

    value / grad: the exact results rounded correctly to float64 (gradient at kinks: 0, MML-8.2).
    value_rounded / grad_rounded: the exact results rounded correctly to the problem's dtype.
    value_bound / grad_bound: the error model's bound (MML-12), plus half a float64 ULP of the value
      so that measuring against the stored float64 value is sound.
    kinks: (row, column, exact, lo, hi) for gradient elements whose admissible values form the
      interval [lo, hi]: exact kinks z == 0 (exact=True) and elements so near one that an
      evaluation in the dtype may round z across zero; where the row's scale is infinite, the
      interval has an infinite end and the element may be NaN (0 * inf) or that infinity. The
      target element of such a row must equal minus the sum of the row's other elements (MML-8.3).
    seed_value: the value under the seed page's reading (weight inside the power; MML-11).
    nan_ok_rows: rows whose gradient scale g * w[y] / D is not 0 but subnormal or smaller in the
      dtype: an evaluation may round it to 0, so where the exact gradient is infinite NaN also
      conforms (MML-12.4).
    """

    value: np.ndarray
    value_rounded: np.ndarray
    value_bound: np.ndarray
    grad: np.ndarray
    grad_rounded: np.ndarray
    grad_bound: np.ndarray
    kinks: list = field(default_factory=list)
    seed_value: np.ndarray | None = None
    nan_ok_rows: list = field(default_factory=list)


@dataclass
class _Rows:
    """The problem as rows: x (N, C), per-row target, weight of the target class and cotangent."""

    x: np.ndarray
    t: np.ndarray
    w: np.ndarray
    cot: np.ndarray
    p: int
    margin: float
    divisor: int  # each row's loss is divided by C and, for 'mean', by N (MML-2.3, MML-6.2)

    @classmethod
    def of(cls, prob: Problem) -> _Rows:
        x = np.asarray(prob.x, dtype=np.float64)
        C = x.shape[-1]
        x = x.reshape(-1, C)
        N = x.shape[0]
        t = np.asarray(prob.target, dtype=np.int64).reshape(-1)
        w = np.ones(N) if prob.weight is None else np.asarray(prob.weight, np.float64)[t]
        cot = np.ones(N)
        if prob.reduction == "none" and prob.cotangent is not None:
            cot = np.asarray(prob.cotangent, dtype=np.float64).reshape(-1)
        divisor = C * (N if prob.reduction == "mean" else 1)
        return cls(x, t, w, cot, prob.p, float(prob.margin), divisor)

    @property
    def N(self) -> int:
        return self.x.shape[0]

    @property
    def C(self) -> int:
        return self.x.shape[1]

    def grad_scale(self, n: int) -> Fraction | float:
        """d loss / d term for row n: cotangent * weight / divisor (an extended real)."""
        return ext_div(ext_mul(Fraction(self.cot[n]), ext(self.w[n])), self.divisor)


def expect(prob: Problem, seed_reading: bool = False) -> Expectation:
    rows = _Rows.of(prob)
    losses, grads, kinks = _exact(rows)
    value = _reduce(losses, prob.reduction, rows)
    value_bound, grad_bound, near = _bounds(rows, prob.dtype, prob.reduction)
    grad = np.array([[ext_round(v, "float64") for v in g] for g in grads]).reshape(rows.N, rows.C)
    grad_rounded = np.array([[ext_round(v, prob.dtype) for v in g] for g in grads]).reshape(rows.N, rows.C)

    exact_at = {(n, i) for n, i, *_ in kinks}
    for n, i in zip(*np.nonzero(near)):
        if (n, i) not in exact_at:
            c = ext_round(rows.grad_scale(n), "float64")
            if not math.isnan(c):
                kinks.append((int(n), int(i), False, min(0.0, c), max(0.0, c)))
    kinks.sort()

    seed_value = None
    if seed_reading:
        seed_losses = [_row_seed_reading(rows, n) for n in range(rows.N)]
        seed_value = _round_both(_reduce(seed_losses, prob.reduction, rows), "float64")[0]
        seed_value = seed_value.reshape(prob.out_shape)

    value64, value_rounded = (v.reshape(prob.out_shape) for v in _round_both(value, prob.dtype))
    half_ulp = np.where(np.isfinite(value64), np.abs(value64) * 2.0**-53, 0.0)
    grad_half_ulp = np.where(np.isfinite(grad), np.abs(grad) * 2.0**-53, 0.0)
    with np.errstate(over="ignore"):
        value_bound = value_bound.reshape(prob.out_shape) + half_ulp
        grad_bound = (grad_bound + grad_half_ulp).reshape(np.shape(prob.x))
    shape = np.shape(prob.x)
    return Expectation(
        value=value64,
        value_rounded=value_rounded,
        value_bound=value_bound,
        grad=grad.reshape(shape),
        grad_rounded=grad_rounded.reshape(shape),
        grad_bound=grad_bound,
        kinks=kinks,
        seed_value=seed_value,
        nan_ok_rows=_underflowing_scales(rows, prob.dtype),
    )


def _underflowing_scales(rows: _Rows, dtype: str) -> list[int]:
    """Rows whose nonzero gradient scale g * w[y] / D, or w[y] itself, is below the dtype's
    smallest normal number (MML-12.4)."""
    tiny = 2.0 ** fmt(dtype).emin
    with np.errstate(all="ignore"):
        scale = np.abs(rows.cot * rows.w) / rows.divisor
        small = ((scale < tiny) | (np.abs(rows.w) < tiny)) & (scale != 0) & np.isfinite(scale)
    return [int(n) for n in np.nonzero(small)[0]]


def _round_both(values: list, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([ext_round(v, "float64") for v in values], dtype=np.float64),
        np.array([ext_round(v, dtype) for v in values], dtype=np.float64),
    )


def _reduce(losses: list, reduction: str, rows: _Rows) -> list:
    if reduction == "none":
        return losses
    total = ext_sum(losses)  # each row already carries the 1/C (and for 'mean' the 1/N) factor
    if reduction == "mean" and rows.N == 0:
        return [NAN]  # MML-6.3: the mean of nothing
    return [total]


# --- exact evaluation -----------------------------------------------------------------------------


def _exact(rows: _Rows) -> tuple[list, list, list]:
    """Per row: the exact loss, the exact gradient row (extended reals) and the exact kinks."""
    finite = (
        np.isfinite(rows.x).all(axis=1) & np.isfinite(rows.w) & math.isfinite(rows.margin)
        if rows.N
        else np.zeros(0, dtype=bool)
    )
    losses: list = [None] * rows.N
    grads: list = [None] * rows.N
    kinks: list = []
    fast = np.nonzero(finite)[0]
    if len(fast):
        for n, loss, grad, kink_cols in _exact_finite_rows(rows, fast):
            losses[n], grads[n] = loss, grad
            kinks.extend((n, i, True, *_interval(rows, n)) for i in kink_cols)
    for n in np.nonzero(~finite)[0]:
        n = int(n)
        losses[n], grads[n], kink_cols = _exact_row(rows, n)
        if kink_cols and not math.isnan(ext_round(rows.grad_scale(n), "float64")):
            kinks.extend((n, i, True, *_interval(rows, n)) for i in kink_cols)
    return losses, grads, kinks


def _interval(rows: _Rows, n: int) -> tuple[float, float]:
    c = ext_round(rows.grad_scale(n), "float64")
    return min(0.0, c), max(0.0, c)


def _scaled_ints(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Finite float64 values as (object array of Python ints I, exponent E) with values = I * 2**E."""
    mant, exp = np.frexp(values)
    ints = (mant * 2.0**53).astype(np.int64)
    exp = exp.astype(np.int64) - 53
    nonzero = ints != 0
    E = int(exp[nonzero].min()) if nonzero.any() else 0
    shift = np.where(nonzero, exp - E, 0)
    return ints.astype(object) * (2 ** shift.astype(object)), E


def _scaled(num: int, exp: int) -> tuple[int, int]:
    """num * 2**exp as (numerator, denominator) of integers."""
    return (num << exp, 1) if exp >= 0 else (num, 1 << -exp)


def _exact_finite_rows(rows: _Rows, idx: np.ndarray):
    """The all-finite rows, in integer arithmetic over the whole block at once."""
    C, p = rows.C, rows.p
    X, E = _scaled_ints(np.concatenate([rows.x[idx].ravel(), [rows.margin]]))
    margin = X[-1]
    X = X[:-1].reshape(len(idx), C)
    t = rows.t[idx]
    W, Ew = _scaled_ints(rows.w[idx])
    Z = margin - X[np.arange(len(idx)), t][:, None] + X  # z / 2**E, exactly
    other = np.arange(C)[None, :] != t[:, None]
    active = (Z > 0).astype(bool) & other
    H = np.where(active, Z, 0)
    Hp = H if p == 1 else H * H
    sums = Hp.sum(axis=1) if C else np.zeros(len(idx), dtype=object)
    divisor = rows.divisor
    for k, n in enumerate(idx):
        n = int(n)
        num, den = _scaled(int(W[k]) * int(sums[k]), Ew + p * E)
        loss = Fraction(num, den * divisor)
        scale = rows.grad_scale(n)  # finite here
        if p == 1:
            cols = np.nonzero(active[k])[0]
            g = [Fraction(0)] * C
            for i in cols:
                g[i] = scale
            g[t[k]] = -scale * len(cols)
        else:
            unit = scale * 2 * (Fraction(2) ** E)
            g = [unit * int(h) if h else Fraction(0) for h in H[k]]
            g[t[k]] = -unit * int(H[k].sum())
        kink_cols = [int(i) for i in np.nonzero((Z[k] == 0).astype(bool) & other[k])[0]] if p == 1 else []
        yield n, loss, g, kink_cols


def _z(rows: _Rows, n: int, i: int) -> Fraction | float:
    """margin - x[y] + x[i] in extended reals (order-free: +inf meeting -inf is NaN)."""
    return ext_sum([ext(rows.margin), ext(-rows.x[n, rows.t[n]]), ext(rows.x[n, i])])


def _exact_row(rows: _Rows, n: int) -> tuple:
    """One row term by term, following MML-2.1 and the IEEE rules of MML-7 literally."""
    y, p, w = rows.t[n], rows.p, ext(rows.w[n])
    scale = rows.grad_scale(n)
    terms, grad, kinks = [], [Fraction(0)] * rows.C, []
    for i in range(rows.C):
        if i == y:
            continue
        z = _z(rows, n, i)
        h = ext_max0(z)
        terms.append(ext_mul(w, h if p == 1 else ext_mul(h, h)))
        grad[i] = ext_mul(scale, _slope(z, p))
        if p == 1 and not _special(z) and z == 0:
            kinks.append(i)
    loss = ext_div(ext_sum(terms), rows.divisor)
    grad[y] = ext_mul(Fraction(-1), ext_sum(grad[i] for i in range(rows.C) if i != y))
    return loss, grad, kinks


def _slope(z, p: int) -> Fraction | float:
    """d max(0, z)**p / dz: NaN at NaN, 0 at and below the kink (MML-8.2), p * z**(p-1) above."""
    if _special(z):
        return z if math.isnan(z) else (Fraction(0) if z < 0 else Fraction(1) if p == 1 else INF)
    if z <= 0:
        return Fraction(0)
    return Fraction(1) if p == 1 else 2 * z


def _row_seed_reading(rows: _Rows, n: int) -> Fraction | float:
    """The seed page's formula: max(0, w[y] * (margin - x[y] + x[i]))**p (MML-11.1)."""
    w = ext(rows.w[n])
    terms = []
    for i in range(rows.C):
        if i != rows.t[n]:
            h = ext_max0(ext_mul(w, _z(rows, n, i)))
            terms.append(h if rows.p == 1 else ext_mul(h, h))
    return ext_div(ext_sum(terms), rows.divisor)


# --- the error model (SPEC.md, MML-12) ------------------------------------------------------------


def _bounds(rows: _Rows, dtype: str, reduction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error bounds for the value (per output element) and the gradient (per input element), and
    the mask of non-target elements near a kink, where the dtype may round z across zero."""
    f = fmt(dtype)
    u, eta = f.unit_roundoff, f.underflow
    N, C, p = rows.N, rows.C, rows.p
    with np.errstate(all="ignore"):
        xy = rows.x[np.arange(N), rows.t][:, None] if N else np.zeros((0, 1))
        M = abs(rows.margin) + np.abs(xy) + np.abs(rows.x)  # magnitudes entering z
        z = (rows.margin - xy) + rows.x  # float64 estimate; its error is below delta's slack
        other = np.arange(C)[None, :] != rows.t[:, None]
        delta = 3 * u * M + eta  # rounding the margin to the dtype and two additions
        slack = 2.0**-52 * M  # covers the float64 estimate of z
        maybe = other & np.isfinite(z) & (z + delta + slack > 0)  # possibly active in the dtype
        near = maybe & (np.abs(z) <= delta + slack) if p == 1 else np.zeros_like(maybe)
        h = np.maximum(z, 0.0)
        hh = h + delta  # bound on the computed max(0, z)
        aw = np.abs(rows.w)[:, None]
        # an underflow error (eta) made early is scaled by the factors that follow it
        if p == 1:
            term_err = aw * (delta + u * hh) + 2 * eta * np.maximum(1, aw)
            term_mag = aw * hh
        else:
            term_err = (aw * (2 * h * delta + delta * delta + 2 * u * hh * hh)
                        + 3 * eta * np.maximum(1, aw) * np.maximum(1, hh))
            term_mag = aw * hh * hh
        term_err = np.where(maybe, term_err, 0.0)
        term_mag = np.where(maybe, term_mag, 0.0)
        K = maybe.sum(axis=1)
        row_err = term_err.sum(axis=1) / C
        row_mag = term_mag.sum(axis=1) / C + row_err
        if reduction == "none":
            value_bound = row_err + (K + 2) * (u * row_mag + eta)
            reach = term_mag.sum(axis=1)
        else:
            steps = K.sum() + N + 1  # every addition and division on any path to the total
            value_bound = np.array(row_err.sum() + steps * (u * row_mag.sum() + eta))
            if reduction == "mean":
                value_bound = value_bound / max(N, 1) + u * row_mag.sum() / max(N, 1) + eta
            reach = np.array(term_mag.sum())
        if f.name != "float16":  # MML-9.3: beyond float16 the model stops at the dtype's range
            value_bound = np.where(reach >= f.max_finite, INF, value_bound)

        # the gradient of a term with z = +inf is finite for p = 1 (MML-8.4): it counts here
        maybe = other & (z + delta + slack > 0)
        c = np.abs(rows.cot * rows.w / rows.divisor)[:, None]  # d loss / d term
        factors = np.maximum(1, np.abs(rows.cot))[:, None] * np.maximum(1, aw)  # scale early underflow
        if p == 1:
            elem_err = 4 * u * c + 5 * eta * factors
            elem_mag = c + elem_err
        else:
            elem_err = 2 * c * delta + 10 * u * c * hh + 5 * eta * factors * np.maximum(1, 2 * hh)
            elem_mag = 2 * c * hh + elem_err
        elem_err = np.where(maybe, elem_err, 0.0)
        elem_mag = np.where(maybe, elem_mag, 0.0)
        Kg = maybe.sum(axis=1)
        target_err = elem_err.sum(axis=1) + Kg * (u * elem_mag.sum(axis=1) + eta)
        grad_bound = elem_err
        if N:
            grad_bound[np.arange(N), rows.t] = target_err
    value_bound = np.nan_to_num(value_bound, nan=INF)
    grad_bound = np.nan_to_num(grad_bound, nan=INF)
    return np.asarray(value_bound, dtype=np.float64), grad_bound, near
