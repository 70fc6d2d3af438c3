"""Our Triton implementation of the spec: fused kernels behind a torch.autograd.Function.

The forward kernel reads each row once, in tiles of BLOCK_N x BLOCK_C, and writes one loss per row
(accumulated in float32, float64 for float64 inputs). When the input needs a gradient the same pass
also writes the gradient for a unit cotangent, so forward + backward moves N*C elements in and
N*C out, the minimum; the backward only rescales it when the cotangent is not 1. Without a GPU,
Triton's interpreter (TRITON_INTERPRET=1) runs the same kernels on the CPU.

Semantics follow SPEC.md: NaN propagates through max (MML-7.1), every term is w[y] * max(0, z)^p
(MML-2.4), the kink slope is 0 (MML-8.2), an out-of-range target makes its row NaN inside the
kernel (MML-10.9) and `multi_margin_loss` raises for it before launching (MML-10.2).
"""

from __future__ import annotations

import functools
import os

from ._checks import check_args, legacy_reduction, target_range_error
from .torch_backend import TorchBackend


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """Drop-in for torch.nn.functional.multi_margin_loss, computed by the Triton kernels."""
    import torch

    if not input.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton multi_margin_loss needs a CUDA tensor, or TRITON_INTERPRET=1 set "
                           "before triton is imported to run it on the CPU")
    reduction = legacy_reduction(size_average, reduce, reduction)
    C = check_args(input.shape, target.shape, not target.is_floating_point() and target.dtype != torch.bool,
                   target.dtype, p, reduction, None if weight is None else weight.shape)
    t = target.reshape(-1)
    bad = (t < 0) | (t >= C)
    if t.numel() and bool(bad.any()):
        raise target_range_error(t[bad][0].item(), C)
    x2 = input.reshape(-1, C).contiguous()
    w = None if weight is None else weight.contiguous()
    return _autograd_function().apply(x2, t.contiguous(), w, float(margin), p, reduction, target.shape)


def _launch(x2, t, w, margin: float, p: int, grad_divisor: int | None):
    """Per-row losses (in the accumulation dtype) and, with a grad_divisor, the gradient for a unit
    cotangent on every row's loss divided by grad_divisor / C (C for 'none' and 'sum', C*N for
    'mean', which folds the mean's 1/N into the same pass)."""
    import torch
    import triton.language as tl

    from .triton_kernels import forward_kernel as kernel

    N, C = x2.shape
    acc = torch.float64 if x2.dtype == torch.float64 else torch.float32
    bf16 = x2.dtype == torch.bfloat16
    losses = torch.empty(N, dtype=acc, device=x2.device)
    with_grad = grad_divisor is not None
    grad = torch.empty_like(x2) if with_grad else losses  # an unused pointer when no gradient
    margin_t = torch.tensor([margin], dtype=acc, device=x2.device)
    block_c = min(1024, max(16, 1 << (C - 1).bit_length()))
    block_n = max(1, min(64, 4096 // block_c))
    grid = (max(1, -(-N // block_n)),)

    def bits(a):  # bfloat16 goes to the kernels as its bits (see triton_kernels._widen)
        return a.view(torch.int16) if bf16 and a is not None else a

    kernel[grid](bits(x2), t, bits(w) if w is not None else x2, margin_t, losses, bits(grad) if with_grad else grad,
                 N, C, x2.stride(0), grad_divisor or C, P=p, HAS_WEIGHT=w is not None, WITH_GRAD=with_grad,
                 BF16=bf16, ACC=tl.float64 if acc == torch.float64 else tl.float32, BLOCK_N=block_n,
                 BLOCK_C=block_c)
    return losses, (grad if with_grad else None)



@functools.cache
def _autograd_function():
    """The torch.autograd.Function, defined on first use so that importing this module imports no torch."""
    import torch

    class MultiMarginLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x2, t, w, margin, p, reduction, target_shape):
            N, C = x2.shape
            with_grad = ctx.needs_input_grad[0]
            ctx.reduction = reduction
            if N == 0:
                losses, grad = x2.new_zeros(0, dtype=torch.float32), torch.zeros_like(x2)
            else:
                # the mean's 1/N is folded into the gradient pass, so a unit cotangent costs no pass
                divisor = C * N if reduction == "mean" else C
                losses, grad = _launch(x2, t, w, margin, p, divisor if with_grad else None)
            ctx.save_for_backward(grad if with_grad else None)
            if reduction == "none":
                return losses.to(x2.dtype).reshape(target_shape)
            if reduction == "sum":
                return losses.sum().to(x2.dtype)
            return (losses.sum() / N if N else losses.new_tensor(float("nan"))).to(x2.dtype)

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, cotangent):
            (grad,) = ctx.saved_tensors
            if ctx.reduction == "none":
                g = cotangent.reshape(-1, 1)
                grad = grad if bool((g == 1).all()) else grad * g
            elif bool(cotangent != 1):
                grad = grad * cotangent
            return grad, None, None, None, None, None, None

    return MultiMarginLoss


class NotTimed(NotImplementedError):
    """The interpreter checks the kernels' semantics; its speed says nothing about them."""


class TritonBackend(TorchBackend):
    """Our Triton kernels on CUDA, or without a GPU under Triton's CPU interpreter (device 'cpu')."""

    name = "triton"
    module = distribution = "triton"
    modes = ("eager",)
    ours = True
    description = "our fused Triton kernels (impls/triton_backend.py); without a GPU, Triton's interpreter"
    fn_import = "from impls.triton_backend import multi_margin_loss"
    fn_expr = "multi_margin_loss"

    def load(self) -> None:
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is first imported
        if self.fn is None:
            self.fn = multi_margin_loss
        super().load()
        import triton  # noqa: F401  (fail here, as 'missing', if it cannot load)

    def version(self) -> str:
        import triton

        return triton.__version__

    def devices(self) -> list[str]:
        import torch

        return ["cuda"] if torch.cuda.is_available() else ["cpu"]

    def prepare(self, call, device: str, mode: str, grad: bool):
        if device == "cpu":
            raise NotTimed("not timed on the CPU: Triton's interpreter runs the kernels for checking only")
        return super().prepare(call, device, mode, grad)

    def unsupported(self, exc: BaseException, call, device: str, mode: str) -> str | None:
        return str(exc) if isinstance(exc, NotTimed) else super().unsupported(exc, call, device, mode)

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        code = super().repro(lit, device, mode, check)
        if device == "cpu":
            code = 'import os\nos.environ["TRITON_INTERPRET"] = "1"  # no GPU: Triton\'s interpreter\n' + code
        return code
