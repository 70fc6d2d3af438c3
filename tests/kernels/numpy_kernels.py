"""Example kernels for `mmconf check --framework numpy`: one written from the spec, and two with
the classic mistakes, which the suite must catch."""

import numpy as np


def _rows(input, target):
    x = np.asarray(input)
    t = np.asarray(target)
    if x.ndim not in (1, 2) or x.shape[-1] == 0 or t.dtype.kind not in "iu":
        raise ValueError("input must be (C,) or (N, C) with C >= 1, and target integer")
    x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    t2 = t.reshape(-1)
    if (x.ndim == 2 and t.shape != (x.shape[0],)) or (x.ndim == 1 and t.shape not in ((), (1,))):
        raise ValueError("target shape does not match input")
    if t2.size and (t2.min() < 0 or t2.max() >= x2.shape[1]):
        raise IndexError("target out of range")
    return x, x2, t2


def _reduce(losses, reduction, target, dtype):
    if reduction == "none":
        return losses.reshape(np.shape(target)).astype(dtype)
    if reduction == "sum":
        return np.asarray(losses.sum(), dtype=dtype)
    return np.asarray(losses.mean() if losses.size else np.nan, dtype=dtype)


def _check(p, reduction, weight, C):
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"unknown reduction {reduction!r}")
    if weight is not None and np.shape(weight) != (C,):
        raise ValueError("weight must have shape (C,)")


def correct(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    if size_average is not None or reduce is not None:
        reduction = "none" if reduce is False else "sum" if size_average is False else "mean"
    x, x2, t = _rows(input, target)
    N, C = x2.shape
    _check(p, reduction, weight, C)
    w = np.ones(N) if weight is None else np.asarray(weight, np.float64)[t]
    z = margin - x2[np.arange(N), t][:, None] + x2
    terms = w[:, None] * np.maximum(z, 0) ** p
    terms[np.arange(N), t] = 0
    return _reduce(terms.sum(axis=1) / C, reduction, target, x.dtype)


def weight_inside(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    """The seed page's formula: the weight inside the power (MML-11.1)."""
    x, x2, t = _rows(input, target)
    N, C = x2.shape
    _check(p, reduction, weight, C)
    w = np.ones(N) if weight is None else np.asarray(weight, np.float64)[t]
    z = margin - x2[np.arange(N), t][:, None] + x2
    terms = np.maximum(w[:, None] * z, 0) ** p
    terms[np.arange(N), t] = 0
    return _reduce(terms.sum(axis=1) / C, reduction, target, x.dtype)


def all_classes_minus_margin(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                             reduction="mean"):
    """Sums over every class, the target included, then takes the target's margin^p / C back."""
    x, x2, t = _rows(input, target)
    N, C = x2.shape
    _check(p, reduction, weight, C)
    w = np.ones(N) if weight is None else np.asarray(weight, np.float64)[t]
    z = margin - x2[np.arange(N), t][:, None] + x2
    losses = (w[:, None] * np.maximum(z, 0) ** p).sum(axis=1) / C - w * margin**p / C
    return _reduce(losses, reduction, target, x.dtype)
