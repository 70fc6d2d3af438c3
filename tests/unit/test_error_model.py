"""The error model (SPEC.md, MML-12), tested both ways: straightforward evaluations in the case's
dtype stay inside the bound; evaluations with a planted error fall outside."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.compare import elementwise
from conformance.floats import numpy_dtype, round_array
from conformance.reference import Problem, expect


def evaluate(x, t, p, margin, w, reduction, dtype, order="forward", plant=None):
    """A deliberately plain evaluation, term by term in `dtype` arithmetic (NumPy scalars)."""
    dt = numpy_dtype(dtype).type
    N, C = x.shape
    m = dt(margin)
    losses = []
    for n in range(N):
        y = t[n]
        terms = []
        for i in range(C):
            if i == y:
                continue
            z = (m - dt(x[n, y])) + dt(x[n, i])
            h = max(z, dt(0))
            if plant == "weight_inside" and w is not None:
                h = max(dt(w[y]) * z, dt(0))
                terms.append(h if p == 1 else h * h)
                continue
            term = h if p == 1 else h * h
            if w is not None:
                term = dt(w[y]) * term
            if plant == "ulps":
                for _ in range(8):
                    term = np.nextafter(term, dt(np.inf))
            terms.append(term)
        if plant == "drop" and terms:
            terms = terms[1:]
        if order == "reverse":
            terms = terms[::-1]
        total = dt(0)
        if order == "pairwise":
            while len(terms) > 1:
                terms = [terms[k] + terms[k + 1] if k + 1 < len(terms) else terms[k]
                         for k in range(0, len(terms), 2)]
            total = terms[0] if terms else dt(0)
        else:
            for term in terms:
                total = total + term
        losses.append(total / dt(C))
    if reduction == "none":
        return np.array(losses, dtype=np.float64)
    s = dt(0)
    for v in losses:
        s = s + v
    return np.array(s / dt(N) if reduction == "mean" else s, dtype=np.float64)


def problem(data, dtype):
    N, C = data.draw(st.integers(1, 4)), data.draw(st.integers(2, 7))
    # float16 squares overflow beyond |z| = 256, where the spec asks for wider intermediates (MML-9.3)
    scale = data.draw(st.sampled_from([1.0, 10.0 if dtype == "float16" else 100.0, 1e-3]))
    x = round_array(np.array(data.draw(st.lists(st.floats(-2, 2), min_size=N * C, max_size=N * C))) * scale,
                    dtype).reshape(N, C)
    t = np.array(data.draw(st.lists(st.integers(0, C - 1), min_size=N, max_size=N)))
    w = data.draw(st.one_of(st.none(), st.lists(st.floats(-3, 3), min_size=C, max_size=C)))
    w = None if w is None else round_array(np.array(w), dtype)
    margin = data.draw(st.sampled_from([1.0, 0.0, -0.5, 0.1])) * scale
    return x, t, data.draw(st.sampled_from([1, 2])), margin, w, data.draw(st.sampled_from(["none", "mean", "sum"]))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_plain_evaluations_stay_inside(dtype, data):
    x, t, p, margin, w, reduction = problem(data, dtype)
    e = expect(Problem(x, t, p, margin, w, reduction, dtype))
    for order in ("forward", "reverse", "pairwise"):
        got = evaluate(x, t, p, margin, w, reduction, dtype, order)
        assert elementwise(e.value, e.value_bound, got, dtype).all(), (order, got, e.value, e.value_bound)


def _outside(plant, x, t, p=1, margin=1.0, w=None, reduction="none", dtype="float32"):
    e = expect(Problem(np.asarray(x, float), np.asarray(t), p, margin, w, reduction, dtype))
    ok = evaluate(np.asarray(x, float), t, p, margin, w, reduction, dtype)
    bad = evaluate(np.asarray(x, float), t, p, margin, w, reduction, dtype, plant=plant)
    assert elementwise(e.value, e.value_bound, ok, dtype).all()
    return not elementwise(e.value, e.value_bound, bad, dtype).all()


def test_a_dropped_term_falls_outside():
    assert _outside("drop", [[0.25, 0.5, 1.0, 0.75]], [1])


def test_the_weight_inside_the_power_falls_outside():
    assert _outside("weight_inside", [[0.25, 0.5, 1.0]], [1], p=2, w=np.array([1.0, 1.5, 1.0]))
    assert _outside("weight_inside", [[0.25, 0.5, 1.0]], [1], p=1, w=np.array([1.0, -1.0, 1.0]))


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_eight_ulps_per_term_fall_outside(dtype):
    # one term, z = 1.75: the model allows about 6 ULPs here, a plant of 8 ULPs per term is caught
    assert _outside("ulps", [[0.0, 0.75]], [0], dtype=dtype)
    assert _outside("ulps", [[0.0, 0.75, 0.5, 0.25]], [0], dtype=dtype, reduction="sum")


def test_gradient_bound_holds_for_float32_autodiff_order():
    # the gradient as a float32 backward pass computes it: cot * w / C, times 2 z for p = 2
    rng = np.random.RandomState(0)
    x = round_array(rng.uniform(-2, 2, (5, 6)), "float32")
    t = rng.randint(0, 6, 5)
    for p in (1, 2):
        e = expect(Problem(x, t, p, 1.0, None, "mean", "float32"))
        x32 = x.astype(np.float32)
        z = (np.float32(1.0) - x32[np.arange(5), t][:, None]) + x32
        slope = (z > 0).astype(np.float32) if p == 1 else 2 * np.maximum(z, 0)
        d = slope * (np.float32(1) / np.float32(30))
        d[np.arange(5), t] = 0
        d[np.arange(5), t] = -d.sum(axis=1)
        assert elementwise(e.grad, e.grad_bound, d.astype(np.float64), "float32").all()
        others = np.where(np.arange(6) == t[0], 0, np.abs(d[0]))
        d[0, np.argmax(others)] *= np.float32(1 + 2**-10)  # a planted relative error of 2^-10
        assert not elementwise(e.grad, e.grad_bound, d.astype(np.float64), "float32").all()
