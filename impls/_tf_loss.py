"""Our TensorFlow implementation of the spec, with a custom gradient that owns the backward pass.

Imported lazily by impls/tf_backend.py, so that importing the adapter imports no framework.
Written from SPEC.md alone: it shares no code with the reference. It follows the JAX
implementation (impls/_jax_loss.py) in structure and numerics.

The fast path computes in float32 (float64 for float64 inputs). TensorFlow, like XLA, flushes
subnormal inputs and results to zero on CPU, which the error model (MML-12) does not allow where the
loss itself is tiny. The fast path is exact enough unless the call holds tiny scores, weights,
cotangents or losses, or a fast result overflowed (see `_GUARD`); such calls are recomputed on a
path that cannot flush. For float64 inputs, every term's scores (and each weight and cotangent) are
scaled by a power of two into float64's normal range (exactly, through their bits), the terms are
computed there and summed at a common scale. Narrower inputs need no scaling: widened to float64
through their bits, the whole computation stays in float64's normal range. Results are rounded
back through their bits.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from ._checks import check_args, legacy_reduction, target_range_error

# When flushing cannot matter, per compute dtype (u = unit roundoff, tiny = smallest normal).
# With max(|margin|, |x[y]|) >= z every term's error allowance (MML-12.1) has delta >= 3 u z,
# far above tiny, so a flushed score, square, product or quotient stays within it; weights and
# cotangents >= w (or exactly 0) and C * N <= d_max keep products with them normal; and row
# losses >= loss (or 0) keep a cancelling sum over rows within u * (its magnitudes).
_GUARD = {
    tf.float32: SimpleNamespace(z=2.0**-10, w=2.0**-20, loss=2.0**-100, d_max=2**40),
    tf.float64: SimpleNamespace(z=2.0**-200, w=2.0**-200, loss=2.0**-960, d_max=2**60),
}
_SCALED_MAX_EXPONENT = 200  # the exact path scales each term to about 2**200
_NO_EXPONENT = -(1 << 20)

# bits of the IEEE formats: (unsigned type, width, mantissa bits, exponent bias, smallest normal exponent)
_FORMATS = {
    tf.float16: (tf.uint16, 16, 10, 15, -14),
    tf.bfloat16: (tf.uint16, 16, 7, 127, -126),
    tf.float32: (tf.uint32, 32, 23, 127, -126),
    tf.float64: (tf.uint64, 64, 52, 1023, -1022),
}


# Library code, like TensorFlow's own: AutoGraph has nothing to convert here (no Python branch or
# loop depends on a tensor), and converting it made every tf.function trace a third slower.
@tf.autograph.experimental.do_not_convert
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md, with F.multi_margin_loss's signature.

    Differentiable with respect to `input` only (MML-8.5: `weight` gets no gradient). Out-of-range
    targets raise in eager execution; inside `tf.function` they make their sample's loss NaN
    (MML-10.9).
    """
    x = tf.convert_to_tensor(input)
    t = tf.convert_to_tensor(target)
    w = None if weight is None else tf.convert_to_tensor(weight)
    reduction = legacy_reduction(size_average, reduce, reduction)
    C = check_args(tuple(x.shape), tuple(t.shape), t.dtype.is_integer, t.dtype.name, p, reduction,
                   None if w is None else tuple(w.shape))
    rows = tf.reshape(t, [-1])
    if tf.executing_eagerly():
        values = rows.numpy()
        bad = values[(values < 0) | (values >= C)]
        if bad.size:
            raise target_range_error(bad[0], C)
    # int32 indices, -1 for a target out of range (possible only in a graph)
    rows = tf.cast(tf.where((rows >= 0) & (rows < C), rows, tf.constant(-1, rows.dtype)), tf.int32)
    cdt = tf.float64 if x.dtype == tf.float64 else tf.float32
    wy = None
    if w is not None:
        # in the weight's own dtype: the exact path reads its bits
        wy = tf.where(rows >= 0, tf.gather(w, tf.maximum(rows, 0)), tf.constant(np.nan, w.dtype))
    margin = tf.cast(margin, cdt) if tf.is_tensor(margin) else tf.constant(margin, cdt)
    out = _loss(p, reduction, tf.reshape(x, [-1, C]), rows, wy, margin)
    return tf.reshape(out, tf.shape(t)) if reduction == "none" else out


def _loss(p, reduction, x, t, wy, margin):
    @tf.custom_gradient
    def loss(x):
        def grad(cotangent):
            return _backward(p, reduction, x, t, wy, margin, cotangent)

        return _forward(p, reduction, x, t, wy, margin), grad

    return loss(x)


# --- the formula ----------------------------------------------------------------------------------


def _target_scores(x, t, cdt):
    """x[y] per row in the compute dtype; NaN for an out-of-range target (MML-10.9)."""
    xy = tf.cast(tf.gather(x, tf.maximum(t, 0), batch_dims=1), cdt)
    return tf.where(t >= 0, xy, tf.constant(np.nan, cdt))


def _scores(x, t, margin):
    """z = margin - x[y] + x[i] in the compute dtype, and the mask of each row's target column."""
    z = (margin - _target_scores(x, t, margin.dtype))[:, None] + tf.cast(x, margin.dtype)
    own = tf.range(tf.shape(x)[1])[None, :] == t[:, None]
    return z, own


def _slopes(h, p):
    """d max(0, z)^p / dz from h = max(0, z): 0 at the kink (MML-8.2), NaN for NaN (MML-8.4).
    (Not sign(h): XLA on CPU miscompiles sign(maximum(z, 0)) in some fusions.)"""
    return tf.where(h > 0, tf.ones_like(h), h) if p == 1 else 2 * h


def _divisor(reduction, x, dtype):
    shape = tf.cast(tf.shape(x), dtype)
    return shape[1] * (shape[0] if reduction == "mean" else 1)


def _unit_scale(wy, margin, D):
    """w[y] / D per row (1 / D without a weight): the gradient's factor for a unit cotangent."""
    return (1 / D) if wy is None else (tf.cast(wy, margin.dtype) / D)[:, None]


def _row_losses(p, x, t, wy, margin):
    """Each row's loss, divided by C."""
    z, own = _scores(x, t, margin)
    h = tf.maximum(z, 0)  # propagates NaN (MML-7.1)
    terms = h * h if p == 2 else h
    if wy is not None:
        terms = tf.cast(wy, margin.dtype)[:, None] * terms  # per term, so inf * 0 is NaN (MML-2.4, MML-7.3)
    terms = tf.where(own, tf.zeros_like(terms), terms)  # the target's own term is left out (MML-2.2)
    return tf.reduce_sum(terms, axis=1) / tf.cast(tf.shape(x)[1], margin.dtype)


def _grad(p, x, t, wy, margin, D, g):
    """The input gradient for per-row cotangents g; each target element is minus the sum of its
    row's other elements (MML-8.1, MML-8.3)."""
    z, own = _scores(x, t, margin)
    g = tf.broadcast_to(g, tf.shape(t))[:, None]
    d = g * (_unit_scale(wy, margin, D) * _slopes(tf.maximum(z, 0), p))
    d = tf.where(own, tf.zeros_like(d), d)
    return tf.where(own, -tf.reduce_sum(d, axis=1, keepdims=True), d)


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    total = tf.reduce_sum(losses)
    # the mean of an empty batch is 0 / 0 = NaN (MML-6.3)
    return total if reduction == "sum" else total / tf.cast(tf.size(losses), losses.dtype)


# --- the fast path and its guard ------------------------------------------------------------------


def _at_least(v, bound):
    """|v| >= bound, or v is exactly 0 (told from a subnormal by its bits), NaN or infinite.

    Integer comparisons of the bits alone: XLA's CPU compiler turns a bit test for zero that is
    fused with float operations into a float comparison, which calls a flushed subnormal zero."""
    uint, width = _FORMATS[v.dtype][:2]
    magnitude = tf.bitwise.bitwise_and(tf.bitcast(v, uint), tf.constant((1 << (width - 1)) - 1, uint))  # no sign
    one = tf.constant(1, uint)
    bound_bits = tf.constant(np.array(bound, v.dtype.as_numpy_dtype).view(uint.as_numpy_dtype), uint)
    return magnitude - one >= bound_bits - one  # 0 - 1 wraps to the largest


def _fast_is_exact(reduction, x, t, wy, margin, result, losses=None, g=None):
    """Whether the fast path's `result` is within its bounds: finite (else an intermediate may have
    overflowed) and not touched by flushed subnormals (see _GUARD)."""
    guard = _GUARD[margin.dtype]
    rows = ~(tf.maximum(tf.abs(margin), tf.abs(_target_scores(x, t, margin.dtype))) < guard.z)
    if losses is not None and reduction != "none":
        rows &= _at_least(losses, guard.loss)
    if g is not None:
        rows &= _at_least(g, guard.w)
    if wy is not None:
        rows &= _at_least(wy, guard.w)
    small = tf.cast(tf.size(x), tf.float64) <= guard.d_max
    return small & tf.reduce_all(rows) & tf.reduce_all(tf.math.is_finite(result))


def _forward(p, reduction, x, t, wy, margin):
    losses = _row_losses(p, x, t, wy, margin)
    value = _reduce(losses, reduction)
    fast = _fast_is_exact(reduction, x, t, wy, margin, value, losses=losses)
    return tf.cond(fast, lambda: tf.cast(value, x.dtype), lambda: _exact(_exact_value, p, reduction, x, t, wy, margin))


def _backward(p, reduction, x, t, wy, margin, cotangent):
    g = tf.cast(cotangent, margin.dtype)
    dx = _grad(p, x, t, wy, margin, _divisor(reduction, x, margin.dtype), g)
    # each target element is minus its row's sum: finite there means finite everywhere
    fast = _fast_is_exact(reduction, x, t, wy, margin, tf.gather(dx, tf.maximum(t, 0), batch_dims=1), g=g)
    return tf.cond(fast, lambda: tf.cast(dx, x.dtype),
                   lambda: _exact(_exact_grad, p, reduction, x, t, wy, margin, cotangent))


def _exact(path, p, reduction, *args):
    """path(p, reduction, *args) (the exact path): eager code run as it is; in a graph, a call of a
    function traced once for all shapes of its arguments' ranks and dtypes. The exact path is most
    of the loss's graph, thousands of ops that every trace of the loss would otherwise build (and
    the runtime optimize) again; the ops that run are the same."""
    if tf.executing_eagerly():
        return path(p, reduction, *args)
    specs = tuple(None if a is None else tf.TensorSpec([None] * a.shape.rank, a.dtype) for a in args)
    return _exact_function(path, p, reduction, specs)(*(a for a in args if a is not None))


@functools.cache
def _exact_function(path, p, reduction, specs):
    def call(*tensors):
        given = iter(tensors)
        return path(p, reduction, *(None if s is None else next(given) for s in specs))

    # not inlined: the runtime then optimizes its graph once, not again inside every loss
    return tf.function(call, input_signature=[s for s in specs if s is not None], autograph=False,
                       experimental_attributes={"_noinline": True})


# --- the exact path: float64 scaled by powers of two, through the bits ----------------------------


_EXPONENT_FIELD = 0x7FF << 52
_MANTISSA_FIELD = (1 << 52) - 1


def _ldexp(v, n):
    """v * 2**n for float64 v by adding n to its exponent field: exact, and out of reach of float
    rewrites (grappler would fold a product of two scale factors, which may flush). Results beyond
    the normal range become 0 or infinity; zeros, infinities and NaN stay as they are."""
    u64 = lambda c: tf.constant(c, tf.uint64)  # noqa: E731
    bits = tf.bitcast(v, tf.uint64)
    e = tf.cast(tf.bitwise.right_shift(tf.bitwise.bitwise_and(bits, u64(_EXPONENT_FIELD)), u64(52)), tf.int64)
    scaled_e = e + tf.cast(n, tf.int64)
    field = tf.bitwise.left_shift(tf.cast(tf.clip_by_value(scaled_e, 0, 0x7FF), tf.uint64), u64(52))
    scaled = tf.bitwise.bitwise_or(tf.bitwise.bitwise_and(bits, u64(1 << 63)), field)
    normal = (scaled_e > 0) & (scaled_e < 0x7FF)
    scaled = tf.where(normal, tf.bitwise.bitwise_or(scaled, tf.bitwise.bitwise_and(bits, u64(_MANTISSA_FIELD))), scaled)
    return tf.bitcast(tf.where((e == 0) | (e == 0x7FF), bits, scaled), tf.float64)


def _fields(v):
    """(sign, exponent field, mantissa field as int32/int64, format) of a float tensor's bits: no
    float operation touches v, as TensorFlow's may flush it."""
    uint, width, mant, _, _ = fmt = _FORMATS[v.dtype]
    bits = tf.bitcast(v, uint)
    shift = lambda b, n: tf.bitwise.right_shift(b, tf.constant(n, uint))  # noqa: E731
    exponent = tf.bitwise.bitwise_and(shift(bits, mant), tf.constant((1 << (width - 1 - mant)) - 1, uint))
    mantissa = tf.bitwise.bitwise_and(bits, tf.constant((1 << mant) - 1, uint))
    return shift(bits, width - 1) == 1, tf.cast(exponent, tf.int32), tf.cast(mantissa, tf.int64), fmt


def _exponent(v):
    """The unbiased binary exponent of each finite value (subnormals and zeros count as the smallest
    normal), and whether it is finite."""
    _, e, _, (_, width, mant, bias, _) = _fields(v)
    return tf.maximum(e, 1) - bias, e < (1 << (width - 1 - mant)) - 1


def _scale_exponent(*values):
    """k such that 2**k times the largest finite magnitude among `values` (broadcast together) is
    about 2**_SCALED_MAX_EXPONENT."""
    exponents = []
    for v in values:
        e, finite = _exponent(v)
        exponents.append(tf.where(finite, e, _NO_EXPONENT))
    return _SCALED_MAX_EXPONENT - functools.reduce(tf.maximum, exponents)


def _widen(v, k):
    """v * 2**k in float64, exact wherever the result is normal, subnormal v included. Built from
    v's bits alone, infinities and NaN too: XLA's CPU compiler miscompiled a float conversion of a
    bfloat16 v here (the scaled value of a subnormal came out 0 in a difference)."""
    negative, e, m, (_, width, mant, bias, _) = _fields(v)
    implicit = tf.where(e > 0, tf.constant(1 << mant, tf.int64), tf.constant(0, tf.int64))
    significand = tf.cast(m + implicit, tf.float64)
    scaled = _ldexp(significand, tf.maximum(e, 1) - bias - mant + k)
    special = tf.where(m == 0, tf.constant(np.inf, tf.float64), tf.constant(np.nan, tf.float64))
    scaled = tf.where(e == (1 << (width - 1 - mant)) - 1, special, scaled)
    return tf.where(negative, -scaled, scaled)


def _narrow(v, k, dtype):
    """v * 2**k correctly rounded to `dtype` (v float64), subnormal results built from their bits."""
    uint, width, mant, _, min_exp = _FORMATS[dtype]
    steps = _ldexp(tf.abs(v), k - min_exp + mant)  # the result in units of dtype's smallest subnormal
    subnormal = steps < 2.0**mant
    bits = tf.cast(tf.round(tf.where(subnormal, steps, tf.zeros_like(steps))), uint)  # ties to even, like IEEE rounding
    negative = tf.cast(_fields(v)[0], uint)
    bits = tf.bitwise.bitwise_or(bits, tf.bitwise.left_shift(negative, tf.constant(width - 1, uint)))
    return tf.where(subnormal, tf.bitcast(bits, dtype), tf.cast(_ldexp(v, k), dtype))


def _scaled(v):
    """(v * 2**k in float64, k), k bringing each value's magnitude to about 2**_SCALED_MAX_EXPONENT."""
    k = _scale_exponent(v)
    return _widen(v, k), k


def _scaled_scores(x, t, margin):
    """(z * 2**k, k, own): every term's score in float64 scaled by its own power of two, the one
    that brings the largest of |margin|, |x[y]| and |x[i]| (MML-12.1's M_i) to about
    2**_SCALED_MAX_EXPONENT. Per term, not per row: a row may span more binades than float64's
    normal range, and a term's sign must not depend on its row's other scores. What can still
    flush lies far below the term's error allowance."""
    xy = tf.gather(x, tf.maximum(t, 0), batch_dims=1)[:, None]
    xy = tf.where(t[:, None] >= 0, xy, tf.constant(np.nan, x.dtype))  # NaN for an out-of-range target (MML-10.9)
    k = _scale_exponent(x, xy, margin)
    z = (_widen(margin, k) - _widen(xy, k)) + _widen(x, k)
    own = tf.range(tf.shape(x)[1])[None, :] == t[:, None]
    return z, k, own


def _sum_scaled(v, k, axis=None):
    """sum(v * 2**-k) along `axis` as (s, K) with the sum equal to s * 2**-K: the terms brought to
    the scale of the largest of them first, so that only terms negligible against it can flush."""
    e, finite = _exponent(v)
    top = tf.maximum(tf.reduce_max(tf.where(finite & (v != 0), e - k, _NO_EXPONENT), axis=axis), _NO_EXPONENT)
    K = tf.where(top > _NO_EXPONENT, _SCALED_MAX_EXPONENT - top, 0)
    return tf.reduce_sum(_ldexp(v, (K if axis is None else tf.expand_dims(K, axis)) - k), axis=axis), K


def _exact_value(p, reduction, x, t, wy, margin):
    if x.dtype != tf.float64:
        return _widened_value(p, reduction, x, t, wy, margin)
    z, k, own = _scaled_scores(x, t, margin)
    h = tf.maximum(z, 0)  # propagates NaN (MML-7.1)
    terms, k = (h * h if p == 2 else h), p * k
    if wy is not None:
        W, kw = _scaled(wy)
        terms, k = W[:, None] * terms, k + kw[:, None]  # per term, so inf * 0 is NaN (MML-2.4, MML-7.3)
    terms = tf.where(own, tf.zeros_like(terms), terms)  # the target's own term is left out (MML-2.2)
    losses, K = _sum_scaled(terms, k, axis=1)
    losses = losses / tf.cast(tf.shape(x)[1], tf.float64)
    if reduction == "none":
        return _narrow(losses, -K, x.dtype)
    total, K = _sum_scaled(losses, K)
    if reduction == "mean":
        total = total / tf.cast(tf.shape(x)[0], tf.float64)  # the mean of nothing is 0 / 0 = NaN (MML-6.3)
    return _narrow(total, -K, x.dtype)


def _exact_grad(p, reduction, x, t, wy, margin, g):
    if x.dtype != tf.float64:
        return _widened_grad(p, reduction, x, t, wy, margin, g)
    z, k, own = _scaled_scores(x, t, margin)
    G, kg = _scaled(tf.broadcast_to(g, tf.shape(t)))
    if wy is not None:
        W, kw = _scaled(wy)
        G, kg = G * W, kg + kw
    d = (G / _divisor(reduction, x, tf.float64))[:, None] * _slopes(tf.maximum(z, 0), p)
    k = kg[:, None] + (p - 1) * k  # each element is scaled by 2**k
    d = tf.where(own, tf.zeros_like(d), d)
    total, K = _sum_scaled(d, k, axis=1)  # each target element is minus its row's others (MML-8.3)
    return tf.where(own, _narrow(-total, -K, x.dtype)[:, None], _narrow(d, -k, x.dtype))


# float16, bfloat16 and float32 inputs: the nonzero magnitudes of their scores, squares, and
# products with weights, cotangents and 1 / (N C) lie between 2**-600 and 2**500, far inside
# float64's normal range. Widened through the bits (a conversion would flush a subnormal input),
# the computation needs no scaling: a much smaller exact path, which every trace builds and XLA
# compiles for every shape.


def _widened_value(p, reduction, x, t, wy, margin):
    """The fast path's formula on the inputs widened: every operation in float64."""
    W = None if wy is None else _widen(wy, 0)
    losses = _row_losses(p, _widen(x, 0), t, W, _widen(margin, 0))
    return _narrow(_reduce(losses, reduction), 0, x.dtype)


def _widened_grad(p, reduction, x, t, wy, margin, g):
    """The fast path's gradient on the inputs widened: every operation in float64."""
    W = None if wy is None else _widen(wy, 0)
    dx = _grad(p, _widen(x, 0), t, W, _widen(margin, 0), _divisor(reduction, x, tf.float64), _widen(g, 0))
    return _narrow(dx, 0, x.dtype)
