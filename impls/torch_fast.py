"""Our own PyTorch implementation of the spec, and its adapter.

`multi_margin_loss` is a drop-in for F.multi_margin_loss that follows SPEC.md: NaN propagates,
infinities follow IEEE arithmetic term by term, an empty `mean` is NaN, the slope at a kink is 0,
and invalid calls raise errors that name the argument. It runs on any device, with float16 and
bfloat16 computed in float32 (MML-9.3).

Speed comes from multithreaded, vectorised ATen ops applied to blocks of rows that stay in cache:
the input is read from memory once per pass (forward, backward) and the few elementwise steps on a
block (three full passes each way) run in cache. Backward recomputes z from the input instead of
saving N*C intermediates, so it saves O(N) and moves as little memory as it can. Each ATen call
costs a few microseconds (dispatch and an OpenMP fork-join), so blocks of 4 MiB, in L2 and L3,
were faster on a 2-core EPYC (1 MiB of L2 per core) than blocks that fit in L2 alone; an input of
one block or less (the latency-bound small case) makes no loop at all. Written from SPEC.md alone.

torch is imported inside the functions: the harness imports this module (for the adapter's repros)
without loading any framework.
"""

from __future__ import annotations

import functools

from ._checks import check_args, legacy_reduction, target_range_error
from .torch_backend import TorchBackend

BLOCK_ELEMENTS = 1 << 20  # elements per row block (4 MiB of float32): see the module docstring


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md, with F.multi_margin_loss's signature and autograd."""
    import torch

    reduction = legacy_reduction(size_average, reduce, reduction)
    integer = not (target.is_floating_point() or target.is_complex() or target.dtype == torch.bool)
    C = check_args(input.shape, target.shape, integer, target.dtype, p, reduction,
                   None if weight is None else weight.shape)
    if not input.is_floating_point():
        raise TypeError(f"multi_margin_loss: input must be a floating-point tensor, got dtype {input.dtype}")
    t = target.reshape(-1, 1).long()  # (N, 1): the index shape of gather and scatter
    if t.numel():
        low, high = torch.aminmax(t)
        if low.item() < 0 or high.item() >= C:
            raise target_range_error(t[(t < 0) | (t >= C)][0].item(), C)
    loss = _autograd_function().apply(input, t, weight, p, float(margin), reduction)
    return loss.reshape(target.shape) if reduction == "none" else loss


def _block_rows(N: int, C: int) -> int:
    """Rows per block: about BLOCK_ELEMENTS elements, at least one row, at most N."""
    return min(N, max(1, BLOCK_ELEMENTS // C))


def _blocks(rows: int, *tensors):
    """The tensors (the same number of rows each) in blocks of `rows` rows; a small input is one block."""
    if rows >= len(tensors[0]):
        return (tensors,)
    return zip(*(a.split(rows) for a in tensors))


def _row_sums(x, t, T, p, w_per_term):
    """S_n = sum over i != y of h_i^p (each term times w[y] when given), h_i = max(0, x_i - T_n)."""
    import torch

    N, C = x.shape
    rows = _block_rows(N, C)
    S = T.new_empty(N)
    scratch = T.new_empty(rows, C)  # one block at a time, in cache
    extra = () if w_per_term is None else (w_per_term,)
    for xb, tb, Tb, Sb, *wb in _blocks(rows, x, t, T, S, *extra):
        h = scratch if len(xb) == rows else scratch[: len(xb)]
        torch.sub(xb, Tb, out=h)  # z = margin - x[y] + x[i]: the one read of x
        h.clamp_min_(0)  # max(0, z), NaN stays NaN (MML-7.1)
        if p == 2:
            h.mul_(h)
        if wb:
            h.mul_(wb[0])  # term by term, so inf * 0 is NaN (MML-2.4, MML-7.3)
        h.scatter_(1, tb, 0)  # the target's own term is not in the sum (MML-2.2)
        torch.sum(h, 1, out=Sb)
    return S


def _forward(x, t, weight, p, margin, reduction):
    """The loss, and what backward needs: T_n = x[y] - margin, the unweighted row sums (None when
    the terms were weighted one by one) and w[y]."""
    import torch

    N, C = x.shape
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32  # no float16 overflow (MML-9.3)
    T = x.gather(1, t).to(cdt).sub_(margin)  # z_i = x_i - T_n
    wy = None if weight is None else weight.to(cdt)[t]
    if wy is not None and not wy.isfinite().all():
        # an infinite or NaN weight times a zero term is NaN: weigh each term
        losses, S = _row_sums(x, t, T, p, wy) / C, None
    else:
        S = _row_sums(x, t, T, p, None)
        losses = S / C if wy is None else S * wy.view(N) / C
    if reduction == "none":
        out = losses
    elif reduction == "sum":
        out = losses.sum()
    else:
        out = losses.sum() / N if N else losses.new_tensor(float("nan"))  # the mean of nothing (MML-6.3)
    return out.to(x.dtype), T, S, wy


def _backward(grad_out, x, t, T, S, wy, p, reduction):
    """The input gradient (MML-8): for i != y, g * w[y] * p * h_i^(p-1) * [z_i > 0] / D, and the
    target element minus the sum of the others."""
    import torch

    N, C = x.shape
    grad = x.new_empty(N, C)
    if N == 0:
        return grad
    scale = grad_out.to(T.dtype).reshape(-1, 1).expand(N, 1) * (p / (C * N if reduction == "mean" else C))
    if wy is not None:
        scale = scale * wy
    # p = 1 has a fast path where every slope is exactly 0 or 1 and every scale finite: no z is NaN
    # (no row sum is) and no scale infinite. Elsewhere IEEE rules make the NaNs (MML-8.4).
    mask_path = p == 1 and S is not None and bool((S.view(N, 1) * scale).isfinite().all())
    rows = _block_rows(N, C)
    scratch = None if grad.dtype == T.dtype else T.new_empty(rows, C)  # float16 and bfloat16: in float32
    for xb, tb, Tb, sb, gb in _blocks(rows, x, t, T, scale, grad):
        d = gb if scratch is None else scratch[: len(xb)]
        if mask_path:
            torch.gt(xb, Tb, out=d)  # [z > 0] as 0 or 1: 0 at the kink (MML-8.2)
            d.scatter_(1, tb, 0)
            others = d.sum(1, keepdim=True).mul_(sb)
            d.mul_(sb)
        else:
            torch.sub(xb, Tb, out=d)
            d.clamp_min_(0)  # h, NaN stays NaN
            if p == 1:
                d.ceil_().clamp_max_(1)  # the slope: 1, 0 (kink and inactive) or NaN
            d.mul_(sb)  # an infinite scale times a zero slope is NaN (MML-8.4)
            d.scatter_(1, tb, 0)
            others = d.sum(1, keepdim=True)
        d.scatter_(1, tb, others.neg_())  # minus the sum of the others (MML-8.3)
        if scratch is not None:
            gb.copy_(d)
    return grad


@functools.cache
def _autograd_function():
    """The torch.autograd.Function, defined on first use so that importing this module imports no torch."""
    import torch

    class MultiMarginLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, t, weight, p, margin, reduction):
            out, T, S, wy = _forward(input.reshape(-1, input.shape[-1]), t, weight, p, margin, reduction)
            ctx.save_for_backward(input, t, T, S, wy)
            ctx.p, ctx.reduction = p, reduction
            return out

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad_out):
            input, t, T, S, wy = ctx.saved_tensors
            grad = _backward(grad_out, input.reshape(-1, input.shape[-1]), t, T, S, wy, ctx.p, ctx.reduction)
            return grad.view(input.shape), None, None, None, None, None

    return MultiMarginLoss


class TorchFastBackend(TorchBackend):
    name = "torch-fast"
    modes = ("eager",)
    ours = True
    description = "our blocked, vectorised PyTorch implementation (impls/torch_fast.py)"
    fn_import = "from impls.torch_fast import multi_margin_loss"
    fn_expr = "multi_margin_loss"

    def load(self) -> None:
        if self.fn is None:
            self.fn = multi_margin_loss
        super().load()
