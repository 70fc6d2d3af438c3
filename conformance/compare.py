"""Verdicts: one backend's answer to one case against the exact reference (SPEC.md, MML-12.4).

The judges return plain dicts, ready for results.json: `verdict` ('pass' or 'fail'), a one-line
`detail`, and for numeric checks the worst element's `expected` and `got`, `max_abs_err`,
`max_ulp` and the `bound` at that element. NaN is never within a tolerance.
"""

from __future__ import annotations

import math

import numpy as np

from . import spec
from .floats import encode, encode_array, fmt, ulp_distance

SMALL = 64  # arrays up to this size are written whole into records; larger ones by their worst element


def elementwise(expected, bound, got, dtype: str) -> np.ndarray:
    """Which elements of `got` conform (MML-12.4); all arrays float64 of one shape."""
    f = fmt(dtype)
    e, b, g = (np.asarray(a, dtype=np.float64) for a in (expected, bound, got))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e)
        may_overflow = (np.abs(e) + b >= f.overflow_threshold) | np.isinf(b)
        finite_expected = np.where(
            np.isinf(g), (np.sign(g) == np.sign(e)) & may_overflow, ~np.isnan(g) & (err <= b))
        return np.where(np.isnan(e), np.isnan(g), np.where(np.isinf(e), g == e, finite_expected))


def _summary(ok, expected, rounded, bound, got, dtype) -> dict:
    e, g = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - e)
    both_finite = np.isfinite(e) & np.isfinite(g)
    ulp = ulp_distance(g, rounded, dtype) if g.size else np.zeros(0)
    out = {
        "max_abs_err": float(err[both_finite].max()) if both_finite.any() else 0.0,
        "max_ulp": float(ulp.max()) if ulp.size else 0.0,
    }
    if g.size == 0:
        return {**out, "expected": [], "got": [], "bound": 0.0}
    # the element to show: the first failing one, else the one farthest in ULPs
    at = int(np.argmin(ok.reshape(-1))) if not ok.all() else int(np.argmax(ulp.reshape(-1)))
    out["bound"] = float(np.asarray(bound, np.float64).reshape(-1)[at])
    if g.size <= SMALL:
        out["expected"], out["got"] = encode_array(e), encode_array(g)
    else:
        idx = np.unravel_index(at, g.shape)
        out["at"] = [int(i) for i in idx]
        out["expected"], out["got"] = encode(e[idx]), encode(g[idx])
    return out


def _shape_dtype(got: np.ndarray, shape: tuple, dtype: str, what: str) -> str | None:
    if tuple(got.shape) != tuple(shape):
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(shape)} (MML-1.1/1.2)"
    if got.dtype.name != dtype:
        return f"{what} has dtype {got.dtype.name}, expected {dtype} (MML-1.6)"
    return None


def judge_value(case, got: np.ndarray) -> dict:
    exp = case.expect
    wrong = _shape_dtype(got, exp.value.shape, case.dtype, "the value")
    if wrong:
        return {"verdict": "fail", "detail": wrong}
    g = got.astype(np.float64)
    ok = elementwise(exp.value, exp.value_bound, g, case.dtype)
    out = _summary(ok, exp.value, exp.value_rounded, exp.value_bound, g, case.dtype)
    bad = int((~ok).sum())
    out["verdict"] = "pass" if bad == 0 else "fail"
    out["detail"] = "" if bad == 0 else f"{bad} of {ok.size} value element(s) outside the bound"
    return out


def judge_grad(case, got: np.ndarray) -> dict:
    """Gradient: kink elements may take any value of their interval, and the target element of
    their row then follows (MML-8.2, MML-8.3); the choice made at exact kinks is recorded."""
    exp = case.expect
    wrong = _shape_dtype(got, exp.grad.shape, case.dtype, "the gradient")
    if wrong:
        return {"verdict": "fail", "detail": wrong}
    C = exp.grad.shape[-1] if exp.grad.ndim else 1
    g = got.astype(np.float64).reshape(-1, C)
    want = exp.grad.reshape(-1, C).copy()
    bound = exp.grad_bound.reshape(-1, C)
    targets = np.asarray(case.target, dtype=np.int64).reshape(-1)
    choices, infinite_rows = [], set()
    for n, i, exact, lo, hi in exp.kinks:
        b = bound[n, i]
        if math.isinf(lo) or math.isinf(hi):  # an infinite scale: 0 * inf = NaN or the infinity (MML-8.2)
            if np.isnan(g[n, i]) or g[n, i] == (lo if math.isinf(lo) else hi):
                want[n, i] = g[n, i]
                infinite_rows.add(n)
            continue
        if lo - b <= g[n, i] <= hi + b:  # NaN is never inside
            want[n, targets[n]] -= g[n, i] - want[n, i]
            want[n, i] = g[n, i]
            if exact and (hi != 0 or lo != 0):  # a zero-width interval says nothing of a convention
                choices.append(g[n, i] / (hi if hi != 0 else lo))
    for n in infinite_rows:  # the target element follows in IEEE arithmetic (MML-8.3)
        want[n, targets[n]] = -np.delete(want[n], targets[n]).sum()
    for n in exp.nan_ok_rows:  # a scale that may round to 0 makes inf * 0 = NaN admissible
        allowed = np.isinf(want[n]) & np.isnan(g[n])
        want[n, allowed] = np.nan
    ok = elementwise(want, bound, g, case.dtype)
    rounded = np.where(want == exp.grad.reshape(-1, C), exp.grad_rounded.reshape(-1, C), want)
    out = _summary(ok.reshape(got.shape), want.reshape(got.shape), rounded.reshape(got.shape),
                   bound.reshape(got.shape), g.reshape(got.shape), case.dtype)
    bad = int((~ok).sum())
    out["verdict"] = "pass" if bad == 0 else "fail"
    out["detail"] = "" if bad == 0 else f"{bad} of {ok.size} gradient element(s) outside the bound"
    if choices:
        out["kink_choice"] = kink_convention(choices)
    return out


def kink_convention(choices) -> str:
    """Name the factor a backend chose at exact kinks: '0', '1/2', '1', 'other' or 'mixed'."""
    names = set()
    for a in choices:
        named = [name for name, v in (("0", 0.0), ("1/2", 0.5), ("1", 1.0)) if math.isclose(a, v, abs_tol=1e-2)]
        names.add(named[0] if named else "other")
    return names.pop() if len(names) == 1 else "mixed"


def judge_error(case, reply: dict, traced: bool) -> dict:
    """An invalid call must raise (MML-10); a traced mode may answer NaN for MML-10.9's kinds."""
    if "raised" in reply:
        r = reply["raised"]
        return {"verdict": "pass", "detail": f"raised {r['type']}: {r['message'][:300]}", "raised": r}
    from .worker import unpack

    value = unpack(reply["value"]).astype(np.float64)
    if traced and case.error in spec.VALUE_DEPENDENT_ERRORS:
        bad_rows = _out_of_range_outputs(case, value.shape)
        if np.isnan(value[bad_rows]).all():
            return {"verdict": "pass", "detail": "returned NaN for the out-of-range target (MML-10.9)",
                    "got": encode_array(value) if value.size <= SMALL else None}
        return {"verdict": "fail", "detail": "returned a number for an out-of-range target "
                "instead of raising or NaN (MML-10.9)", "got": encode_array(value) if value.size <= SMALL else None}
    return {"verdict": "fail", "detail": f"returned without raising ({spec.ERROR_CLAUSES[case.error]})",
            "got": encode_array(value) if value.size <= SMALL else None}


def _out_of_range_outputs(case, shape):
    """Index of the output elements that depend on an out-of-range target."""
    if case.reduction != "none" or not shape:
        return ...
    t = np.asarray(case.target).reshape(shape)
    C = np.shape(case.x)[-1]
    return (t < 0) | (t >= C)


# --- central finite differences (our own implementations and checked kernels) -------------------

FD_MAX_SIZE = 64


def fd_steps(case) -> np.ndarray | None:
    """Per input element, a power-of-two step small enough that x +- step crosses no kink (the loss
    is then a polynomial on the segment and the central difference is exact up to rounding); 0
    where no such step exists. None when the case is not suited: not float64, not finite, too
    large, or with kinks."""
    if case.error or case.dtype != "float64" or not 0 < case.size <= FD_MAX_SIZE or case.expect.kinks:
        return None
    w = np.ones(1) if case.weight is None else case.weight
    if not (np.isfinite(case.x).all() and np.isfinite(w).all() and np.isfinite(case.margin)):
        return None
    C = case.x.shape[-1]
    x = case.x.reshape(-1, C)
    t = np.asarray(case.target).reshape(-1)
    rows = np.arange(x.shape[0])
    z = case.margin - x[rows, t][:, None] + x
    z[rows, t] = np.inf  # the target's own term does not exist
    dist = np.abs(z)
    dist[rows, t] = dist.min(axis=1)  # moving x[y] moves every z of the row
    with np.errstate(divide="ignore"):
        steps = 2.0 ** np.floor(np.log2(np.minimum(dist / 4, 1.0)))
    steps = np.where(steps >= 2.0**-24 * (1 + np.abs(x)), steps, 0.0)  # too near a kink: skip
    return steps.reshape(case.x.shape)


def judge_fd(case, fd: np.ndarray, steps: np.ndarray) -> dict:
    """The analytic gradient of the exact reference against the backend's central differences:
    each side of a difference is within the value's error bound, so the difference is within
    bound / step (twice that, for the two perturbed points' own bounds)."""
    exp = case.expect
    cot = case.cotangent if case.cotangent is not None else np.ones(exp.value.shape)
    bound = float(np.sum(np.abs(cot) * exp.value_bound))
    used = steps > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tol = np.where(used, 2 * bound / np.where(used, steps, 1.0), 0.0) + np.abs(exp.grad) * 2.0**-50
        err = np.abs(fd - exp.grad)
    ok = ~used | (err <= tol)
    out = _summary(ok, exp.grad, exp.grad_rounded, tol, np.where(used, fd, exp.grad), case.dtype)
    bad = int((~ok).sum())
    out["verdict"] = "pass" if bad == 0 else "fail"
    out["detail"] = (f"{int(used.sum())} element(s) checked by central differences"
                     if bad == 0 else f"{bad} of {int(used.sum())} central differences disagree with the gradient")
    return out
