"""Example kernels for `mmconf check --framework torch`: one written from the spec, and some with
classic mistakes, which the suite must catch. Autograd gives their gradients."""

import torch


def _prepare(input, target, p, weight, reduction):
    """Check the call (MML-10); return the input as (N, C) in a wide enough dtype, the target as (N, 1)
    and each sample's weight w[y] as (N, 1)."""
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"unknown reduction {reduction!r}")
    if input.dim() not in (1, 2) or input.shape[-1] == 0:
        raise ValueError(f"input must be (C,) or (N, C) with C >= 1, got {tuple(input.shape)}")
    if target.is_floating_point():
        raise TypeError("target must hold integer class indices")
    expected = [tuple(input.shape[:1])] if input.dim() == 2 else [(), (1,)]
    if tuple(target.shape) not in expected:
        raise ValueError(f"target shape {tuple(target.shape)} does not match input {tuple(input.shape)}")
    C = input.shape[-1]
    if weight is not None and weight.shape != (C,):
        raise ValueError(f"weight must have shape ({C},)")
    x = input.reshape(-1, C)
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()  # float16 squares overflow (MML-9.3)
    t = target.reshape(-1, 1).long()  # out-of-range targets make gather raise (MML-10.2)
    w = torch.ones(C, dtype=x.dtype, device=x.device) if weight is None else weight.to(x.dtype)
    return x, t, w[t]


def _reduce(losses, reduction, input, target):
    if reduction == "none":
        return losses.reshape(target.shape).to(input.dtype)
    return (losses.sum() if reduction == "sum" else losses.mean()).to(input.dtype)  # mean of nothing: NaN


def _legacy(size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    return "none" if reduce is False else "sum" if size_average is False else "mean"


def correct(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    """l = (1/C) * sum over i != y of w[y] * max(0, margin - x[y] + x[i])^p, term by term (MML-2)."""
    reduction = _legacy(size_average, reduce, reduction)
    x, t, wy = _prepare(input, target, p, weight, reduction)
    C = x.shape[1]
    others = torch.arange(C, device=x.device) != t  # i != y
    z = torch.where(others, margin - x.gather(1, t) + x, -torch.inf)  # the target's own term takes no part
    h = torch.stack([z, torch.zeros_like(z)]).amax(0)  # max(0, z); unlike clamp, NaN's gradient is NaN too
    terms = torch.where(others, wy * (h if p == 1 else h * h), 0)
    return _reduce(terms.sum(1) / C, reduction, input, target)


def weight_inside(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    """The seed page's formula: the weight inside the power (MML-11.1)."""
    reduction = _legacy(size_average, reduce, reduction)
    x, t, wy = _prepare(input, target, p, weight, reduction)
    C = x.shape[1]
    others = torch.arange(C, device=x.device) != t
    z = torch.where(others, margin - x.gather(1, t) + x, -torch.inf)
    h = torch.stack([wy * z, torch.zeros_like(z)]).amax(0)
    terms = torch.where(others, h if p == 1 else h * h, 0)
    return _reduce(terms.sum(1) / C, reduction, input, target)


def all_classes_minus_margin(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                             reduction="mean"):
    """Sums over every class, the target included, then takes the target's margin^p / C back (MML-2.2)."""
    reduction = _legacy(size_average, reduce, reduction)
    x, t, wy = _prepare(input, target, p, weight, reduction)
    C = x.shape[1]
    z = margin - x.gather(1, t) + x
    h = torch.stack([z, torch.zeros_like(z)]).amax(0)
    losses = (wy * (h if p == 1 else h * h)).sum(1) / C - wy.view(-1) * margin**p / C
    return _reduce(losses, reduction, input, target)


def checks_target_in_python(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                            reduction="mean"):
    """`correct`, with the target range checked in Python first, as users write it (MML-10.2): a
    branch on tensor values, which torch.compile captures with a graph break."""
    if input.dim() in (1, 2) and input.shape[-1] and not target.is_floating_point():
        C = input.shape[-1]
        if ((target < 0) | (target >= C)).any():
            raise IndexError(f"target out of range [0, {C})")
    return correct(input, target, p, margin, weight, size_average, reduce, reduction)


def weight_read_as_contiguous(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                              reduction="mean"):
    """`correct`, reading the weight's memory as if it were contiguous, as a pointer-based kernel
    that ignores strides does (pytorch/pytorch PR #104852, MML-1.8)."""
    if weight is not None:
        weight = weight.as_strided(weight.shape, (1,))
    return correct(input, target, p, margin, weight, size_average, reduce, reduction)
