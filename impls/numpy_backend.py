"""Our NumPy implementation of the spec, and its adapter.

Vectorised over the whole batch with O(N*C) memory. float16 and bfloat16 are computed in float32
(no spurious overflow, MML-9.3); float32 and float64 in their own precision. Written from SPEC.md
alone: it shares no code with the reference.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_args, legacy_reduction, target_range_error
from .base import Backend, Call, NoBackward, Output, kwargs_source, view_lines


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


def _prepare(input, target, p, weight, size_average, reduce, reduction):
    x = np.asarray(input)
    t = np.asarray(target)
    reduction = legacy_reduction(size_average, reduce, reduction)
    C = check_args(x.shape, t.shape, np.issubdtype(t.dtype, np.integer), t.dtype, p, reduction,
                   None if weight is None else np.shape(weight))
    t = t.reshape(-1).astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= C):
        raise target_range_error(t[(t < 0) | (t >= C)][0], C)
    cdt = _compute_dtype(x.dtype)
    x2 = x.reshape(-1, C).astype(cdt, copy=False)
    w = None if weight is None else np.asarray(weight).astype(cdt)[t]
    return x, x2, t, reduction, C, w


def _active(x2, t, margin):
    """z = margin - x[y] + x[i] and the row index, with the target's own term set aside."""
    rows = np.arange(x2.shape[0])
    xy = x2[rows, t][:, None]
    z = (x2.dtype.type(margin) - xy) + x2
    return z, rows


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md, with F.multi_margin_loss's signature."""
    x, x2, t, reduction, C, w = _prepare(input, target, p, weight, size_average, reduce, reduction)
    z, rows = _active(x2, t, margin)
    h = np.maximum(z, 0, out=z)  # np.maximum propagates NaN (MML-7.1)
    if p == 2:
        h *= h
    if w is not None:
        h *= w[:, None]  # per term, so inf * 0 is NaN (MML-2.4, MML-7.3)
    h[rows, t] = 0  # the target's own term is not part of the sum (MML-2.2)
    losses = h.sum(axis=1) / x2.dtype.type(C)
    return _reduce(losses, reduction, np.shape(target), x.dtype)


def _reduce(losses, reduction, target_shape, dtype):
    if reduction == "none":
        return losses.reshape(target_shape).astype(dtype)
    if reduction == "sum":
        return np.asarray(losses.sum(), dtype=dtype)
    if losses.size == 0:
        return np.asarray(np.nan, dtype=dtype)  # the mean of nothing (MML-6.3)
    return np.asarray(losses.sum() / losses.dtype.type(losses.size), dtype=dtype)


def multi_margin_loss_backward(cotangent, input, target, p=1, margin=1.0, weight=None,
                               size_average=None, reduce=None, reduction="mean"):
    """The gradient with respect to `input` for the output's cotangent (MML-8)."""
    x, x2, t, reduction, C, w = _prepare(input, target, p, weight, size_average, reduce, reduction)
    N = x2.shape[0]
    z, rows = _active(x2, t, margin)
    g = np.asarray(cotangent, dtype=x2.dtype).reshape(-1)
    g = np.broadcast_to(g, (N,)) if reduction == "none" else np.full(N, g.reshape(()), x2.dtype)
    if p == 1:
        slope = (z > 0).astype(x2.dtype)  # 0 at the kink (MML-8.2)
        slope[np.isnan(z)] = np.nan
    else:
        slope = 2 * np.maximum(z, 0)
    # slope first, then cotangent, weight and 1/D: a scale g * w / D computed apart could underflow
    # to 0 and turn an infinite slope into NaN; an infinite factor times a 0 slope is NaN (MML-8.4)
    d = slope * g[:, None]
    if w is not None:
        d *= w[:, None]
    d /= x2.dtype.type(C * (N if reduction == "mean" else 1))
    d[rows, t] = 0
    d[rows, t] = -d.sum(axis=1)
    return d.reshape(x.shape).astype(x.dtype)


class NumpyBackend(Backend):
    """NumPy arrays in, NumPy arrays out. A checked NumPy kernel may come with a backward function
    (`backward(cotangent, input, target, **kwargs)`); without one its gradient is unsupported."""

    name = "numpy"
    module = distribution = "numpy"
    ours = True
    description = "our vectorised NumPy implementation (impls/numpy_backend.py)"
    fn_import = "from impls.numpy_backend import multi_margin_loss, multi_margin_loss_backward"
    fn_expr = "multi_margin_loss"
    backward_expr = "multi_margin_loss_backward"

    def __init__(self, fn=None, backward=None):
        super().__init__(fn)
        self.backward = backward

    def load(self) -> None:
        if self.fn is None:
            self.fn, self.backward = multi_margin_loss, multi_margin_loss_backward

    def _grad(self, call: Call):
        if self.backward is None:
            raise NoBackward("this NumPy kernel has no backward function")
        return self.backward(call.cotangent, call.x, call.target, **call.kwargs())

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        value = self.fn(call.x, call.target, **call.kwargs())
        return Output(value, self._grad(call) if grad else None)

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        kw = call.kwargs()
        if grad:
            return lambda: (self.fn(call.x, call.target, **kw), self._grad(call))
        return lambda: self.fn(call.x, call.target, **kw)

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        dt = "ml_dtypes.bfloat16" if lit["dtype"] == "bfloat16" else f"np.{lit['dtype']}"
        lines = ["import numpy as np"] + (["import ml_dtypes"] if lit["dtype"] == "bfloat16" else [])
        lines += [self.fn_import,
                  f"x = np.array({lit['x']}, dtype={dt})",
                  f"target = np.array({lit['target']}, dtype=np.{lit['target_dtype']})"]
        if lit["weight"] is not None:
            lines.append(f"weight = np.array({lit['weight']}, dtype={dt})")
        lines += view_lines(lit, "{a}_buffer = np.full((*{a}.shape[:-1], 2 * {a}.shape[-1]), np.nan, dtype={a}.dtype); "
                                 "{a}_buffer[..., ::2] = {a}; {a} = {a}_buffer[..., ::2]")
        kw = kwargs_source(lit)
        lines.append(f"print({self.fn_expr}(x, target, {kw}))")
        if check == "grad":
            lines.append(f"cotangent = np.array({lit['cotangent']}, dtype={dt})")
            lines.append(f"print({self.backward_expr}(cotangent, x, target, {kw}))")
        return "\n".join(lines)
