"""The exact reference (conformance/reference.py) against hand-computed values and a brute-force
Fraction oracle written here, independently."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.floats import round_fraction
from conformance.reference import Problem, _exact_finite_rows, _exact_row, _Rows, expect

nan, inf = math.nan, math.inf


def ref(x, target, p=1, margin=1.0, weight=None, reduction="mean", dtype="float64", cot=None, **kw):
    x = np.asarray(x, dtype=np.float64)
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    c = None if cot is None else np.asarray(cot, dtype=np.float64)
    return expect(Problem(x, np.asarray(target), p, margin, w, reduction, dtype, c), **kw)


def test_seed_example():
    e = ref([0.1, 0.2, 0.4, 0.8], np.int64(3))
    assert e.value.shape == ()
    # exact: (1 - .8 + .1 + 1 - .8 + .2 + 1 - .8 + .4) / 4 in the float64 values of the inputs
    want = sum(Fraction(1) - Fraction(0.8) + Fraction(v) for v in (0.1, 0.2, 0.4)) / 4
    assert e.value == round_fraction(want, "float64")
    assert list(e.grad) == [0.25, 0.25, 0.25, -0.75]


def test_weight_after_the_power_and_seed_reading():
    e = ref([[0.5, 1.0, 1.5, 2.0], [1, 2, 3, 4]], [3, 0], p=2, weight=[1, 2, 3, 0.5], reduction="none",
            cot=[1, -0.5], seed_reading=True)
    # row 0: z = 1 - 2 + (.5, 1, 1.5) = (-.5, 0, .5) -> 0.5 * .25 / 4; row 1: z = (2, 3, 4) -> 29/4
    assert list(e.value) == [0.03125, 7.25]
    assert list(e.seed_value) == [0.015625, 7.25]  # max(0, .5 z)^2 = .25 z^2 on row 0
    # gradient: cot * w / C * 2z
    assert list(e.grad[0]) == [0.0, 0.0, 0.125, -0.125]
    assert list(e.grad[1]) == [2.25, -0.5, -0.75, -1.0]


def test_reductions_divide_by_C_and_N():
    x, t = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [0, 1]  # every term is margin = 1
    assert ref(x, t, reduction="none").value.tolist() == [2 / 3, 2 / 3]
    assert ref(x, t, reduction="sum").value == round_fraction(Fraction(4, 3), "float64")
    # mean divides by N, not by the sum of the weights (MML-6.2)
    assert ref(x, t, reduction="mean", weight=[4.0, 2.0, 1.0]).value == 2.0


def test_empty_batch():
    x, t = np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
    assert ref(x, t, reduction="none").value.shape == (0,)
    assert ref(x, t, reduction="sum").value == 0.0
    assert math.isnan(ref(x, t, reduction="mean").value)
    assert ref(x, t).grad.shape == (0, 3)


def test_one_class_is_zero_whatever_the_values():
    e = ref([[nan], [inf], [1.0]], [0, 0, 0], reduction="none", weight=[nan])
    assert e.value.tolist() == [0, 0, 0] and e.grad.tolist() == [[0], [0], [0]]


# target class 1 throughout; C = 3, p = 1, reduction 'none', cotangent 1: the slope unit is 1/3
@pytest.mark.parametrize("row, weight, margin, value, grad", [
    ([0.5, 0.0, nan], None, 1.0, nan, [1 / 3, nan, nan]),          # NaN competitor (MML-7.1)
    ([0.5, nan, 1.0], None, 1.0, nan, [nan, nan, nan]),            # NaN target
    ([0.0, 0.5, 1.0], None, nan, nan, [nan, nan, nan]),            # NaN margin
    ([0.0, inf, inf], None, 1.0, nan, [0.0, nan, nan]),            # inf - inf (MML-7.2)
    ([inf, 0.5, 1.0], None, 1.0, inf, [1 / 3, -2 / 3, 1 / 3]),     # z = +inf, p = 1: slope 1
    ([-inf, 0.5, 1.0], None, 1.0, 0.5, [0.0, -1 / 3, 1 / 3]),      # max(0, -inf) = 0
    ([0.0, 0.5, -5.0], [1, inf, 1], 1.0, nan, [inf, nan, nan]),    # inf weight * inactive term (MML-7.3)
    ([0.0, 0.5, 1.0], [1, inf, 1], 1.0, inf, [inf, -inf, inf]),
    ([inf, 0.5, 1.0], [1, 0, 1], 1.0, nan, [0.0, 0.0, 0.0]),       # 0 * inf in the value, not the slope
])
def test_special_values(row, weight, margin, value, grad):
    e = ref([row], [1], weight=weight, margin=margin, reduction="none")
    np.testing.assert_array_equal(e.value, [value])
    np.testing.assert_allclose(e.grad[0], grad, rtol=1e-15)


def test_special_values_p2():
    e = ref([[inf, 0.5, 1.0]], [1], p=2, weight=[1, 0, 1], reduction="none")
    assert math.isnan(e.value[0]) and np.isnan(e.grad[0, [0, 1]]).all()  # 0 * (2 * inf) is NaN
    e = ref([[inf, 0.5, 1.0]], [1], p=2, reduction="none")
    assert e.value[0] == inf and e.grad[0].tolist() == [inf, -inf, 1.0]


def test_sum_of_plus_and_minus_infinity_is_nan():
    e = ref([[inf, 0.0], [0.0, inf]], [1, 0], weight=[-1.0, 1.0], reduction="sum")
    assert math.isnan(e.value)  # sample 0 is +inf, sample 1 is -inf (MML-7.4)


def test_kinks_are_intervals():
    e = ref([[0.5, 1.5, 0.25, 0.5]], [1], reduction="sum")
    assert e.value == 0.0
    assert [(n, i, exact) for n, i, exact, *_ in e.kinks] == [(0, 0, True), (0, 3, True)]
    assert all((lo, hi) == (0.0, 0.25) for *_, lo, hi in e.kinks)
    # p = 2: the derivative is 0 at the kink, no interval
    assert ref([[0.5, 1.5, 0.25, 0.5]], [1], p=2).kinks == []
    # negative weight: the interval is [c, 0]
    e = ref([[0.5, 1.5, 0.25, 0.5]], [1], weight=[1, -2, 1, 1], reduction="sum")
    assert all((lo, hi) == (-0.5, 0.0) for *_, lo, hi in e.kinks)


def test_near_kinks_get_intervals_in_low_precision():
    # z = 2^-12 is active, but a float16 evaluation of 2^-12 - 1 + 1 may round it to zero
    e = ref([[1.0, 1.0]], [1], margin=2**-12, dtype="float16", reduction="sum")
    near = [(n, i, exact) for n, i, exact, *_ in e.kinks]
    assert (0, 0, False) in near


def test_kinks_with_an_infinite_scale_admit_nan_or_the_infinity():
    """0 * inf = NaN at the factor 0, the infinity at any other (MML-8.2); the target follows."""
    from conformance.caseio import Case
    from conformance.compare import judge_grad
    from conformance.floats import numpy_dtype

    x = [[0.5, 1.5], [2**-7 + 2**-9, 1 + 2**-7]]  # z = 0 exactly; z = 2^-9, which bfloat16 may round to 0
    case = Case(id="t/inf-kinks", dtype="bfloat16", x=np.array(x), target=np.array([1, 1]), p=1, margin=1.0,
                weight=np.array([1.0, inf]), reduction="sum").with_expectation()
    assert [(n, i, exact, hi) for n, i, exact, _, hi in case.expect.kinks] == [(0, 0, True, inf), (1, 0, False, inf)]

    def verdict(grad):
        return judge_grad(case, np.array(grad).astype(numpy_dtype("bfloat16")))["verdict"]

    assert verdict([[nan, nan], [nan, nan]]) == "pass"  # the factor 0
    assert verdict([[inf, -inf], [inf, -inf]]) == "pass"  # any other factor
    assert verdict([[inf, nan], [nan, nan]]) == "fail"  # the target does not follow
    assert verdict([[1.0, -1.0], [nan, nan]]) == "fail"  # finite: neither 0 * inf nor inf
    assert verdict([[nan, nan], [0.0, -0.0]]) == "fail"


# --- a brute-force oracle: Fractions, loops, nothing shared with the reference --------------------


def oracle(x, t, p, margin, w, reduction, cot):
    N, C = x.shape
    losses, grad = [], [[Fraction(0)] * C for _ in range(N)]
    D = C * (N if reduction == "mean" else 1)
    for n in range(N):
        y = t[n]
        wy = Fraction(1) if w is None else Fraction(w[y])
        total = Fraction(0)
        g = Fraction(cot[n]) if reduction == "none" else Fraction(1)
        for i in range(C):
            if i == y:
                continue
            z = Fraction(margin) - Fraction(x[n, y]) + Fraction(x[n, i])
            if z > 0:
                total += wy * z**p
                d = g * wy * p * z ** (p - 1) / D
                grad[n][i] += d
                grad[n][y] -= d
        losses.append(total / C)
    if reduction == "none":
        return losses, grad
    s = sum(losses, Fraction(0))
    return [s / N if reduction == "mean" else s], grad


floats = st.one_of(st.floats(-8, 8, width=32), st.sampled_from([0.0, 0.5, -1.0, 1.0, 2.0**-20, 3.0]))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_reference_matches_oracle(data):
    N = data.draw(st.integers(1, 4))
    C = data.draw(st.integers(1, 5))
    x = np.array(data.draw(st.lists(floats, min_size=N * C, max_size=N * C)), dtype=np.float64).reshape(N, C)
    t = np.array(data.draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N)))
    p = data.draw(st.sampled_from([1, 2]))
    margin = data.draw(floats)
    w = data.draw(st.one_of(st.none(), st.lists(floats, min_size=C, max_size=C)))
    w = None if w is None else np.array(w)
    reduction = data.draw(st.sampled_from(["none", "mean", "sum"]))
    cot = np.resize([1.0, -0.5, 2.0], N)
    dtype = data.draw(st.sampled_from(["float64", "float32", "float16", "bfloat16"]))
    e = ref(x, t, p, margin, w, reduction, dtype, cot)
    values, grad = oracle(x, t, p, margin, w, reduction, cot)
    assert e.value.reshape(-1).tolist() == [round_fraction(v, "float64") for v in values]
    assert e.value_rounded.reshape(-1).tolist() == [round_fraction(v, dtype) for v in values]
    kinks = {(n, i) for n, i, *_ in e.kinks}
    for n in range(N):
        for i in range(C):
            if (n, i) not in kinks:
                assert e.grad[n, i] == round_fraction(grad[n][i], "float64"), (n, i)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_integer_fast_path_equals_term_by_term_path(data):
    N, C = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 6))
    x = np.array(data.draw(st.lists(st.floats(-1e30, 1e30, allow_subnormal=True), min_size=N * C,
                                    max_size=N * C))).reshape(N, C)
    t = np.array(data.draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N)))
    w = np.array(data.draw(st.lists(st.floats(-4, 4), min_size=C, max_size=C)))
    p = data.draw(st.sampled_from([1, 2]))
    rows = _Rows.of(Problem(x, t, p, data.draw(st.floats(-3, 3)), w, "mean", "float64"))
    fast = list(_exact_finite_rows(rows, np.arange(N)))
    for n, loss, grad, kink_cols in fast:
        slow_loss, slow_grad, slow_kinks = _exact_row(rows, n)
        assert loss == slow_loss and list(grad) == list(slow_grad) and kink_cols == slow_kinks
