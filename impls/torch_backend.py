"""PyTorch's native multi_margin_loss, in eager mode (the ATen kernel) and under torch.compile
(Inductor, which runs the decomposition in torch/_decomp), and the adapter that also runs our own
PyTorch implementation (impls/torch_fast.py) and `mmconf check --framework torch` kernels.

Nothing here imports torch at module level: the harness imports adapters for repros.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os

import numpy as np

from .base import Backend, Call, Output, kwargs_source, view_lines

M_PERTURB = -6  # glibc mallopt parameter


@functools.cache
def _mallopt():
    return getattr(ctypes.CDLL(None), "mallopt", None)


@contextlib.contextmanager
def reproducible_uninitialised_memory():
    """Run a call with glibc's M_PERTURB set, so fresh heap memory is filled with a fixed byte (0xAA).

    A kernel that returns memory it never wrote (the ATen CPU kernel does on an empty batch) then
    returns the same value every time, neither 0 nor NaN, instead of whatever the heap held: its
    record fails reproducibly rather than passing by chance. Without glibc this does nothing.
    """
    mallopt = _mallopt()
    if mallopt is None:
        yield
        return
    mallopt(M_PERTURB, 0x55)
    try:
        yield
    finally:
        mallopt(M_PERTURB, 0)


def _graph_breaks() -> list[str]:
    """Every graph break Dynamo has met in this process, from its counters: the reasons (first line;
    'unimplemented' in recent releases, 'graph_break' in older ones), and where the code resumed
    after one ('torch_dynamo_resume_in_<function>_at_<line>')."""
    import re

    from torch._dynamo.utils import counters

    reasons = {str(k).strip().splitlines()[0][:200] for key in ("graph_break", "unimplemented") for k in counters[key]}
    resumes = {re.sub(r"^torch_dynamo_resume_in_(.*)_at_(\d+)$", r"resumes in \1 at line \2", str(k))
               for k in counters["resumes"]}
    return sorted(reasons) + sorted(resumes)


def to_tensor(a: np.ndarray, device: str):
    """A NumPy array (bfloat16 as ml_dtypes) as a tensor of the same dtype on `device`, bit for bit
    and with the same strides: a non-contiguous view stays one (MML-1.8)."""
    import torch

    t = torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16) if a.dtype.name == "bfloat16" else torch.from_numpy(a)
    if t.device.type == torch.device(device).type or t.is_contiguous():
        return t.to(device)
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device).copy_(t)  # .to() would compact it


def to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


class TorchBackend(Backend):
    name = "torch"
    module = distribution = "torch"
    # messages of the native kernels that mean "this dtype or argument kind is not implemented"
    capability_gaps = ("not implemented for 'Half'", "not implemented for 'BFloat16'",
                       "expected scalar type Long but found Int")  # the last: int32 targets (MML-1.5)
    modes = ("eager", "compile")
    description = ("torch.nn.functional.multi_margin_loss: the ATen kernel (eager) and the "
                   "torch/_decomp decomposition compiled by Inductor (compile)")
    fn_import = "import torch.nn.functional as F"
    fn_expr = "F.multi_margin_loss"

    # compile mode asks for one graph: the vendor op must never silently fall back to eager. A
    # checked kernel is compiled as users compile theirs (checked.py), its graph breaks reported.
    fullgraph = True

    def __init__(self, fn=None):
        super().__init__(fn)
        self._compiled = None

    def load(self) -> None:
        # Inductor's parallel compile workers are unstable on small machines
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        if self.fn is None:
            self.fn = torch.nn.functional.multi_margin_loss

    def version(self) -> str:
        import torch

        return torch.__version__

    def devices(self) -> list[str]:
        import torch

        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]

    # --- running one call ---

    def compiled(self):
        """The implementation under torch.compile, compiled for every call it sees.

        Dynamo stops compiling a function once it has been recompiled more often than its limit (8
        by default) and runs it in eager, silently unless fullgraph: raise the limits and make
        hitting them an error, so 'compile' never tests eager code. Dynamic shapes let one graph
        serve every shape of a (dtype, p, reduction, ...) kind, which keeps the golden run short.
        """
        if self._compiled is None:
            import torch
            import torch._dynamo.config as dynamo

            dynamo.recompile_limit = 1 << 20
            dynamo.accumulated_recompile_limit = 1 << 20
            dynamo.fail_on_recompile_limit_hit = True
            self._compiled = torch.compile(self.fn, fullgraph=self.fullgraph, dynamic=True)
        return self._compiled

    def function(self, mode: str):
        return self.compiled() if mode == "compile" else self.fn

    def tensors(self, call: Call, device: str, grad: bool) -> tuple:
        x = to_tensor(call.x, device).requires_grad_(grad)
        target = to_tensor(call.target, device)
        kw = call.kwargs()
        if call.weight is not None:
            kw["weight"] = to_tensor(call.weight, device)
        cot = to_tensor(call.cotangent, device) if grad else None
        return x, target, kw, cot

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        import torch

        fn = self.function(mode)
        x, target, kw, cot = self.tensors(call, device, grad)
        with reproducible_uninitialised_memory():
            out = fn(x, target, **kw)
            dx = torch.autograd.grad(out, x, grad_outputs=cot)[0] if grad else None
        capture = _graph_breaks() if mode == "compile" and not self.fullgraph else None
        return Output(to_numpy(out), None if dx is None else to_numpy(dx), capture)

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        import torch

        fn = self.function(mode)
        x, target, kw, cot = self.tensors(call, device, grad)
        sync = torch.cuda.synchronize if device.startswith("cuda") else lambda: None

        def forward():
            fn(x, target, **kw)
            sync()

        def forward_backward():
            torch.autograd.grad(fn(x, target, **kw), x, grad_outputs=cot)
            sync()

        return forward_backward if grad else forward

    def peak_memory(self, device: str) -> int | None:
        if not device.startswith("cuda"):
            return None
        import torch

        return torch.cuda.max_memory_allocated(device)

    def reset_peak_memory(self, device: str) -> None:
        if device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats(device)

    # --- repro ---

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        dt, grad = f"torch.{lit['dtype']}", check == "grad"
        lines = ["import torch", self.fn_import, f"device = {device!r}",
                 f"x = torch.tensor({lit['x']}, dtype={dt}, device=device{', requires_grad=True' if grad else ''})",
                 f"target = torch.tensor({lit['target']}, dtype=torch.{lit['target_dtype']}, device=device)"]
        if lit["weight"] is not None:
            lines.append(f"weight = torch.tensor({lit['weight']}, dtype={dt}, device=device)")
        lines += view_lines(lit, "{a} = torch.full((*{a}.shape[:-1], 2 * {a}.shape[-1]), float('nan'), "
                                 "dtype={a}.dtype, device=device)[..., ::2].copy_({a})")
        fn = self.fn_expr
        if mode == "compile":
            lines.append(f"fn = torch.compile({self.fn_expr}, fullgraph={self.fullgraph}, dynamic=True)")
            fn = "fn"
        lines += [f"out = {fn}(x, target, {kwargs_source(lit)})", "print(out)"]
        if grad:
            lines += [f"cotangent = torch.tensor({lit['cotangent']}, dtype={dt}, device=device)",
                      "print(torch.autograd.grad(out, x, grad_outputs=cotangent)[0])"]
        return "\n".join(lines)
