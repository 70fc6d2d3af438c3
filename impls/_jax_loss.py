"""Our JAX implementation of the spec: jax.numpy with a custom VJP that owns the gradient.

Imported lazily by impls/jax_backend.py, so that importing the adapter imports no framework.
Written from SPEC.md alone: it shares no code with the reference.

The fast path computes in float32 (float64 for float64 inputs): the forward pass reads the input
once and returns, besides the losses, each row's gradient sum for a unit cotangent (O(N)
residuals); the backward pass recomputes the slopes from the input in one elementwise pass, with no
reduction and no N*C residual.

Subnormals. XLA on CPU flushes subnormal inputs and results to zero (FTZ/DAZ), which the error
model (MML-12) does not allow where the loss itself is tiny. The fast path is exact enough unless
the call holds tiny scores, weights, cotangents or losses (see `_GUARD`); such calls are recomputed
on a path that cannot flush. For float64 inputs, every term's scores (and each weight and
cotangent) are scaled by a power of two into float64's normal range (exactly, through their bits),
the terms are computed there and summed at a common scale. Narrower inputs need no scaling:
widened to float64 through their bits, the whole computation stays in float64's normal range.
Results are rounded back through their bits. That path needs JAX's x64 mode; without it the fast
path is all there is.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from ._checks import check_args, legacy_reduction, target_range_error

# On CPU, XLA does not fuse an elementwise producer into a row reduction: it writes the N*C
# temporary out. Rows are therefore reduced in blocks of about this many elements, whose
# temporaries stay in cache. Other platforms fuse the whole reduction.
CPU_BLOCK_ELEMENTS = 1 << 19

# When flushing cannot matter, per compute dtype (u = unit roundoff, tiny = smallest normal).
# With max(|margin|, |x[y]|) >= z every term's error allowance (MML-12.1) has delta >= 3 u z,
# far above tiny, so a flushed score, square, product or quotient stays within it; weights and
# cotangents >= w (or exactly 0) and C * N <= d_max keep products with them normal; and row
# losses >= loss (or 0) keep a cancelling sum over rows within u * (its magnitudes).
_GUARD = {
    np.dtype(np.float32): SimpleNamespace(z=2.0**-10, w=2.0**-20, loss=2.0**-100, d_max=2**40),
    np.dtype(np.float64): SimpleNamespace(z=2.0**-200, w=2.0**-200, loss=2.0**-960, d_max=2**60),
}
_SCALED_MAX_EXPONENT = 200  # the exact path scales each term to about 2**200

# bits of the IEEE formats: (unsigned type, mantissa bits, exponent bias, smallest normal exponent)
_FORMATS = {
    np.dtype(jnp.float16): (jnp.uint16, 10, 15, -14),
    np.dtype(jnp.bfloat16): (jnp.uint16, 7, 127, -126),
    np.dtype(np.float32): (jnp.uint32, 23, 127, -126),
    np.dtype(np.float64): (jnp.uint64, 52, 1023, -1022),
}


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md, with F.multi_margin_loss's signature.

    Differentiable with respect to `input` (MML-8.5; differentiating with respect to `weight` or
    `margin` raises). Out-of-range targets raise when the target's values are known; inside
    `jax.jit` they make their sample's loss NaN (MML-10.9).
    """
    x = jnp.asarray(input)
    t = jnp.asarray(target)
    reduction = legacy_reduction(size_average, reduce, reduction)
    C = check_args(x.shape, t.shape, jnp.issubdtype(t.dtype, jnp.integer), t.dtype, p, reduction,
                   None if weight is None else jnp.shape(weight))
    rows = t.reshape(-1)
    if not isinstance(rows, jax.core.Tracer):
        values = np.asarray(rows)
        bad = values[(values < 0) | (values >= C)]
        if bad.size:
            raise target_range_error(bad[0], C)
    # int32 indices, -1 for a target out of range (possible only when traced)
    rows = jnp.where((rows >= 0) & (rows < C), rows, -1).astype(jnp.int32)
    cdt = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
    wy = None
    if weight is not None:
        # in the weight's own dtype: the exact path reads its bits
        wy = jnp.where(rows >= 0, jnp.asarray(weight)[jnp.maximum(rows, 0)], jnp.nan)
    out = _loss(p, reduction, x.reshape(-1, C), rows, wy, jnp.asarray(margin, cdt))
    return out.reshape(t.shape) if reduction == "none" else out


# --- the formula ----------------------------------------------------------------------------------


def _target_scores(x, t, cdt):
    """x[y] per row in the compute dtype; NaN for an out-of-range target (MML-10.9)."""
    xy = jnp.take_along_axis(x, jnp.maximum(t, 0)[:, None], axis=1, mode="clip")[:, 0].astype(cdt)
    return jnp.where(t >= 0, xy, jnp.nan)


def _scores(x, t, margin):
    """z = margin - x[y] + x[i] in the compute dtype, and the mask of each row's target column."""
    z = (margin - _target_scores(x, t, margin.dtype))[:, None] + x.astype(margin.dtype)
    own = lax.broadcasted_iota(jnp.int32, z.shape, 1) == t[:, None]
    return z, own


def _slopes(h, p):
    """d max(0, z)^p / dz from h = max(0, z): 0 at the kink (MML-8.2), NaN for NaN (MML-8.4).
    (Not sign(h): XLA on CPU miscompiles sign(maximum(z, 0)) in some fusions.)"""
    return jnp.where(h > 0, 1, h) if p == 1 else 2 * h


def _unit_scale(wy, margin, D):
    """w[y] / D per row (1 / D without a weight): the gradient's factor for a unit cotangent."""
    return (jnp.ones((), margin.dtype) / D) if wy is None else (wy.astype(margin.dtype) / D)[:, None]


def _divisor(reduction, N, C):
    return C * (N if reduction == "mean" else 1)


def _row_sums(p, x, t, wy, margin, D, grad: bool):
    """Each row's loss (divided by C) and, with `grad`, the sum of its gradient's off-target
    elements for a unit cotangent (minus the target element)."""
    z, own = _scores(x, t, margin)
    h = jnp.maximum(z, 0)  # propagates NaN (MML-7.1)
    terms = h * h if p == 2 else h
    if wy is not None:
        terms = wy.astype(margin.dtype)[:, None] * terms  # per term, so inf * 0 is NaN (MML-2.4, MML-7.3)
    losses = jnp.where(own, 0, terms).sum(axis=1) / x.shape[1]  # the target's own term is left out (MML-2.2)
    if not grad:
        return (losses,)
    return losses, jnp.where(own, 0, _unit_scale(wy, margin, D) * _slopes(h, p)).sum(axis=1)


def _grad(p, x, t, wy, margin, D, g, unit_sums):
    """The input gradient for per-row cotangents g; the target elements are minus their rows'
    other elements (MML-8.1, MML-8.3), given for a unit cotangent as `unit_sums`."""
    z, own = _scores(x, t, margin)
    g = jnp.broadcast_to(g, (x.shape[0],))[:, None]
    d = jnp.where(own, 0, g * (_unit_scale(wy, margin, D) * _slopes(jnp.maximum(z, 0), p)))
    return jnp.where(own, -(g * unit_sums[:, None]), d)


def _reduce(losses, reduction):
    if reduction == "none":
        return losses
    total = losses.sum()
    # the mean of an empty batch is 0 / 0 = NaN (MML-6.3)
    return total if reduction == "sum" else total / losses.shape[0]


# --- the fast path --------------------------------------------------------------------------------


def _by_row_blocks(fn, x, t, wy):
    """fn(x, t, wy) -> per-row arrays, evaluated block by block on CPU (see CPU_BLOCK_ELEMENTS)."""
    N, C = x.shape
    B = max(1, CPU_BLOCK_ELEMENTS // C)
    if N <= B:
        return fn(x, t, wy)

    def cut(a, start):
        return None if a is None else lax.dynamic_slice_in_dim(a, start, B)

    def block(i, outs):
        start = jnp.minimum(i * B, N - B)  # the last block overlaps the one before; rows are independent
        parts = fn(cut(x, start), cut(t, start), cut(wy, start))
        return tuple(lax.dynamic_update_slice_in_dim(o, part, start, 0) for o, part in zip(outs, parts))

    shapes = jax.eval_shape(fn, x[:B], t[:B], None if wy is None else wy[:B])
    init = tuple(jnp.zeros((N,), s.dtype) for s in shapes)
    return lax.fori_loop(0, -(-N // B), block, init)


def _fast_rows(p, reduction, x, t, wy, margin, grad: bool):
    fn = functools.partial(_row_sums, p, margin=margin, D=_divisor(reduction, *x.shape), grad=grad)
    return lax.platform_dependent(x, t, wy, cpu=functools.partial(_by_row_blocks, fn), default=fn)


def _at_least(v, bound):
    """|v| >= bound, or v is exactly 0 (told from a subnormal by its bits), NaN or infinite.

    Integer comparisons of the bits alone: XLA's CPU compiler turns a bit test for zero that is
    fused with float operations into a float comparison, which calls a flushed subnormal zero."""
    uint = _FORMATS[np.dtype(v.dtype)][0]
    magnitude = lax.bitcast_convert_type(v, uint) & jnp.array(np.iinfo(uint).max >> 1, uint)  # no sign
    one = jnp.array(1, uint)
    return magnitude - one >= np.array(bound, v.dtype).view(uint) - one  # 0 - 1 wraps to the largest


def _fast_is_exact(reduction, x, t, wy, margin, losses=None, value=None, g=None, g_sums=None):
    """Whether the fast path's results are within their bounds: finite (else an intermediate may
    have overflowed) and not touched by flushed subnormals (see _GUARD). Per-row conditions are
    combined before the one reduction: each reduction costs XLA several small kernels."""
    finite = jnp.isfinite(value) if g is None else jnp.isfinite(g_sums)  # per row, or one for the batch
    guard = _GUARD[np.dtype(margin.dtype)]
    if x.shape[0] * x.shape[1] > guard.d_max:
        return jnp.bool_(False)
    rows = ~(jnp.maximum(jnp.abs(margin), jnp.abs(_target_scores(x, t, margin.dtype))) < guard.z)
    if g is None:
        rows &= jnp.isfinite(losses)
        if reduction != "none":
            rows &= _at_least(losses, guard.loss)
    else:
        rows &= _at_least(g, guard.w)
    if wy is not None:
        rows &= _at_least(wy, guard.w)

    def flushing():
        return jnp.all(rows & finite)

    # GPUs keep subnormals (XLA's default there is no FTZ); only overflow needs the exact path
    return lax.platform_dependent(cuda=lambda: jnp.all(finite), rocm=lambda: jnp.all(finite), default=flushing)


# --- the exact path: float64 scaled by powers of two, through the bits ----------------------------


_EXPONENT_FIELD = np.uint64(0x7FF << 52)
_MANTISSA_FIELD = np.uint64((1 << 52) - 1)
_SIGN_FIELD = np.uint64(1 << 63)


def _ldexp(v, n):
    """v * 2**n for float64 v by adding n to its exponent field: exact, and out of reach of float
    rewrites (a product of two scale factors may flush). Results beyond the normal range become 0
    or infinity; zeros, infinities and NaN stay as they are."""
    bits = lax.bitcast_convert_type(v, jnp.uint64)
    e = ((bits & _EXPONENT_FIELD) >> 52).astype(jnp.int64)
    scaled_e = e + n
    sign = bits & _SIGN_FIELD
    scaled = sign | (jnp.clip(scaled_e, 0, 0x7FF).astype(jnp.uint64) << 52)
    scaled = jnp.where((scaled_e > 0) & (scaled_e < 0x7FF), scaled | (bits & _MANTISSA_FIELD), scaled)
    return lax.bitcast_convert_type(jnp.where((e == 0) | (e == 0x7FF), bits, scaled), jnp.float64)


def _fields(v):
    """(sign, exponent field, mantissa field, format) of a float array's bits: no float operation
    touches v, as XLA's may flush it."""
    uint, mant, _, _ = fmt = _FORMATS[np.dtype(v.dtype)]
    bits = lax.bitcast_convert_type(v, uint)
    width = 8 * jnp.dtype(uint).itemsize
    emask = (1 << (width - 1 - mant)) - 1
    return bits >> (width - 1), (bits >> mant) & emask, bits & ((1 << mant) - 1), fmt


def _exponent(v):
    """The unbiased binary exponent of each finite value (subnormals and zeros count as the smallest
    normal), and whether it is finite."""
    _, e, _, (uint, mant, bias, _) = _fields(v)
    finite = e < (1 << (8 * jnp.dtype(uint).itemsize - 1 - mant)) - 1
    return jnp.maximum(e, 1).astype(jnp.int32) - bias, finite


def _scale_exponent(*values):
    """k such that 2**k times the largest finite magnitude among `values` (broadcast together) is
    about 2**_SCALED_MAX_EXPONENT."""
    exponents = []
    for v in values:
        e, finite = _exponent(v)
        exponents.append(jnp.where(finite, e, -(1 << 20)))
    return _SCALED_MAX_EXPONENT - functools.reduce(jnp.maximum, exponents)


def _widen(v, k):
    """v * 2**k in float64, exact wherever the result is normal, subnormal v included. Built from
    v's bits alone, infinities and NaN too: XLA's CPU compiler miscompiled a float conversion of a
    bfloat16 v here (the scaled value of a subnormal came out 0 in a difference)."""
    sign, e, m, (uint, mant, bias, _) = _fields(v)
    emax = (1 << (8 * jnp.dtype(uint).itemsize - 1 - mant)) - 1
    significand = (m | jnp.where(e > 0, 1 << mant, 0).astype(m.dtype)).astype(jnp.float64)
    scaled = _ldexp(significand, jnp.maximum(e, 1).astype(jnp.int32) - bias - mant + k)
    scaled = jnp.where(e == emax, jnp.where(m == 0, jnp.inf, jnp.nan), scaled)
    return jnp.where(sign == 1, -scaled, scaled)


def _narrow(v, k, dtype):
    """v * 2**k correctly rounded to `dtype` (v float64), subnormal results built from their bits."""
    uint, mant, _, min_exp = _FORMATS[np.dtype(dtype)]
    steps = _ldexp(jnp.abs(v), k - min_exp + mant)  # the result in units of dtype's smallest subnormal
    subnormal = steps < 2.0**mant
    bits = jnp.round(jnp.where(subnormal, steps, 0)).astype(uint)  # ties to even, like IEEE rounding
    bits = bits | (jnp.signbit(v).astype(uint) << (8 * jnp.dtype(uint).itemsize - 1))
    return jnp.where(subnormal, lax.bitcast_convert_type(bits, dtype), _ldexp(v, k).astype(dtype))


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
    xy = jnp.take_along_axis(x, jnp.maximum(t, 0)[:, None], axis=1, mode="clip")
    xy = jnp.where(t[:, None] >= 0, xy, jnp.nan)  # NaN for an out-of-range target (MML-10.9)
    k = _scale_exponent(x, xy, margin)
    z = (_widen(margin, k) - _widen(xy, k)) + _widen(x, k)
    own = lax.broadcasted_iota(jnp.int32, z.shape, 1) == t[:, None]
    return z, k, own


def _sum_scaled(v, k, axis=None):
    """sum(v * 2**-k) along `axis` as (s, K) with the sum equal to s * 2**-K: the terms brought to
    the scale of the largest of them first, so that only terms negligible against it can flush."""
    e, finite = _exponent(v)
    top = jnp.max(jnp.where(finite & (v != 0), e - k, -(1 << 20)), axis=axis, initial=-(1 << 20))
    K = jnp.where(top > -(1 << 20), _SCALED_MAX_EXPONENT - top, 0)
    return _ldexp(v, (K if axis is None else jnp.expand_dims(K, axis)) - k).sum(axis=axis), K


def _exact_value(p, reduction, x, t, wy, margin):
    if x.dtype != jnp.float64:
        return _widened_value(p, reduction, x, t, wy, margin)
    z, k, own = _scaled_scores(x, t, margin)
    h = jnp.maximum(z, 0)  # propagates NaN (MML-7.1)
    terms, k = (h * h if p == 2 else h), p * k
    if wy is not None:
        W, kw = _scaled(wy)
        terms, k = W[:, None] * terms, k + kw[:, None]  # per term, so inf * 0 is NaN (MML-2.4, MML-7.3)
    losses, K = _sum_scaled(jnp.where(own, 0, terms), k, axis=1)  # the target's own term is left out
    losses = losses / x.shape[1]
    if reduction == "none":
        return _narrow(losses, -K, x.dtype)
    total, K = _sum_scaled(losses, K)
    # the mean of an empty batch is 0 / 0 = NaN (MML-6.3)
    return _narrow(total if reduction == "sum" else total / x.shape[0], -K, x.dtype)


def _exact_grad(p, reduction, x, t, wy, margin, g):
    if x.dtype != jnp.float64:
        return _widened_grad(p, reduction, x, t, wy, margin, g)
    z, k, own = _scaled_scores(x, t, margin)
    G, kg = _scaled(jnp.broadcast_to(g, (x.shape[0],)))
    if wy is not None:
        W, kw = _scaled(wy)
        G, kg = G * W, kg + kw
    d = (G / _divisor(reduction, *x.shape))[:, None] * _slopes(jnp.maximum(z, 0), p)
    k = kg[:, None] + (p - 1) * k  # each element is scaled by 2**k
    d = jnp.where(own, 0, d)
    total, K = _sum_scaled(d, k, axis=1)  # each target element is minus its row's others (MML-8.3)
    return jnp.where(own, _narrow(-total, -K, x.dtype)[:, None], _narrow(d, -k, x.dtype))


# float16, bfloat16 and float32 inputs: the nonzero magnitudes of their scores, squares, and
# products with weights, cotangents and 1 / (N C) lie between 2**-600 and 2**500, far inside
# float64's normal range. Widened through the bits (a conversion would flush a subnormal input),
# the computation needs no scaling: a much smaller exact path, which `jax.jit` compiles for every
# shape.


def _widened_value(p, reduction, x, t, wy, margin):
    """The fast path's formula on the inputs widened: every operation in float64."""
    W = None if wy is None else _widen(wy, 0)
    losses = _row_sums(p, _widen(x, 0), t, W, _widen(margin, 0), D=None, grad=False)[0]
    return _narrow(_reduce(losses, reduction), 0, x.dtype)


def _widened_grad(p, reduction, x, t, wy, margin, g):
    z, own = _scores(_widen(x, 0), t, _widen(margin, 0))
    G = _widen(jnp.broadcast_to(g, (x.shape[0],)), 0)
    if wy is not None:
        G = G * _widen(wy, 0)
    d = jnp.where(own, 0, (G / _divisor(reduction, *x.shape))[:, None] * _slopes(jnp.maximum(z, 0), p))
    # each target element is minus its row's others (MML-8.3)
    return jnp.where(own, _narrow(-d.sum(axis=1), 0, x.dtype)[:, None], _narrow(d, 0, x.dtype))


# --- the differentiable function ------------------------------------------------------------------


def _choose(fast, fast_result, exact_path, *args):
    """fast_result() where `fast`, else exact_path(*args). The exact path needs float64: without
    JAX's x64 mode the fast path is all there is."""
    if not jax.config.read("jax_enable_x64"):
        return fast_result()
    if not isinstance(fast, jax.core.Tracer):  # eager: lax.cond would compile both branches every call
        return fast_result() if fast else _compiled(exact_path)(*args)
    return lax.cond(fast, fast_result, lambda: exact_path(*args))


@functools.cache
def _compiled(exact_path):
    """The exact path for eager calls, compiled as one function per shape: op by op, each of its
    hundreds of operations would be compiled for every new shape, ten times the work."""
    return jax.jit(exact_path, static_argnums=(0, 1))


def _forward(p, reduction, x, t, wy, margin, grad: bool):
    """(value, residuals for the backward pass or None)."""
    rows = _fast_rows(p, reduction, x, t, wy, margin, grad)
    value = _reduce(rows[0], reduction)
    fast = _fast_is_exact(reduction, x, t, wy, margin, losses=rows[0], value=value)
    value = _choose(fast, lambda: value.astype(x.dtype), _exact_value, p, reduction, x, t, wy, margin)
    return value, ((x, t, wy, margin, rows[1], fast) if grad else None)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _loss(p, reduction, x, t, wy, margin):
    return _forward(p, reduction, x, t, wy, margin, grad=False)[0]


def _loss_fwd(p, reduction, x, t, wy, margin):
    if (wy is not None and wy.perturbed) or margin.perturbed:
        raise NotImplementedError("multi_margin_loss: only the gradient with respect to input is implemented; "
                                  "weight and margin must be constants (MML-8.5)")
    return _forward(p, reduction, x.value, t.value, None if wy is None else wy.value, margin.value, grad=True)


def _loss_bwd(p, reduction, residuals, cotangent):
    x, t, wy, margin, unit_sums, fast = residuals
    if isinstance(cotangent, SymbolicZero):
        return jnp.zeros_like(x), None, None, None
    D = _divisor(reduction, *x.shape)
    g = cotangent.astype(margin.dtype)
    fast &= _fast_is_exact(reduction, x, t, wy, margin, g=g, g_sums=g * unit_sums)
    dx = _choose(fast, lambda: _grad(p, x, t, wy, margin, D, g, unit_sums).astype(x.dtype),
                 _exact_grad, p, reduction, x, t, wy, margin, cotangent)
    return dx, None, None, None


_loss.defvjp(_loss_fwd, _loss_bwd, symbolic_zeros=True)
