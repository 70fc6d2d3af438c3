"""MindSpore's own multi-margin loss, `mindspore.ops.multi_margin_loss`, and its adapter.

The op is a native kernel (the MultiMarginLoss primitive and its MultiMarginLossGrad), run in
PyNative mode. There is no graph mode: `mindspore.jit` runs the same CPU kernel (it gave the same
verdict on every golden record) but stalls about 3 s on each kernel-side error before raising,
which made a golden run 26 times slower, and it writes rank_0/om/analyze_fail.ir into the working
directory when a call fails.

`ops.multi_margin_loss` accepts only a Python int margin (it checks `isinstance(margin, int)` and
hands `float(margin)` to the primitive), so an integral margin is passed as that int and any other
margin as the float it is, which the op rejects with its own TypeError.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Backend, Call, Output, kwargs_source, numpy_dtype

LEGACY_ARGUMENTS = ("size_average", "reduce")


def api_margin(margin: float):
    """The margin as ops.multi_margin_loss takes it: an int where the value is one."""
    return int(margin) if math.isfinite(margin) and float(margin).is_integer() else margin


def _margin_source(literal: str) -> str:
    try:
        value = float(literal)
    except ValueError:  # float('nan') and the infinities stay as they are
        return literal
    return repr(api_margin(value))


class MindSporeBackend(Backend):
    name = "mindspore"
    module = distribution = "mindspore"
    modes = ("pynative",)
    description = "MindSpore's mindspore.ops.multi_margin_loss (PyNative)"
    fn_import = "from mindspore import ops"
    fn_expr = "ops.multi_margin_loss"

    def load(self) -> None:
        import mindspore

        self.ms = mindspore
        mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
        mindspore.set_device("CPU")
        if self.fn is None:
            self.fn = mindspore.ops.multi_margin_loss

    # --- conversions ---
    def _tensor(self, a: np.ndarray):
        ms = self.ms
        if a.dtype.name == "bfloat16":  # MindSpore does not take ml_dtypes arrays; the widening is exact
            return ms.Tensor(a.astype(np.float32)).astype(ms.bfloat16)
        return ms.Tensor(a)

    def _numpy(self, t) -> np.ndarray:
        """The tensor's values in its own dtype (never cast to the call's: MML-1.6 is judged on it)."""
        if t.dtype == self.ms.bfloat16:
            return t.astype(self.ms.float32).asnumpy().astype(numpy_dtype("bfloat16"))
        return np.asarray(t.asnumpy())

    def _functions(self, call: Call):
        """The loss, and the loss with the input gradient for a cotangent.

        The gradient is that of sum(loss * cotangent), which is the cotangent's vector-Jacobian
        product; ops.mul and ops.sum, not the Tensor operators, whose first use here raised a NumPy
        ABI ImportError in MindSpore 2.10 under NumPy 2."""
        ms, fn = self.ms, self.fn
        options = {k: v for k, v in call.kwargs().items() if k != "weight"}
        options["margin"] = api_margin(options["margin"])

        def loss(x, target, weight):
            return fn(x, target, weight=weight, **options)

        def objective(x, target, cotangent, weight):
            out = loss(x, target, weight)
            return ms.ops.sum(ms.ops.mul(out, cotangent)), out

        return loss, ms.value_and_grad(objective, grad_position=0, has_aux=True)

    def _inputs(self, call: Call, grad: bool):
        weight = None if call.weight is None else self._tensor(call.weight)
        cotangent = self._tensor(call.cotangent) if grad else None
        return self._tensor(call.x), self._tensor(call.target), cotangent, weight

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        x, target, cotangent, weight = self._inputs(call, grad)
        loss, with_grad = self._functions(call)
        if not grad:
            return Output(self._numpy(loss(x, target, weight)))
        (_, out), g = with_grad(x, target, cotangent, weight)
        return Output(self._numpy(out), self._numpy(g))

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        x, target, cotangent, weight = self._inputs(call, grad)
        loss, with_grad = self._functions(call)
        synchronize = self.ms.runtime.synchronize  # PyNative launches kernels asynchronously
        if grad:
            return lambda: (with_grad(x, target, cotangent, weight), synchronize())
        return lambda: (loss(x, target, weight), synchronize())

    def unsupported(self, exc: BaseException, call: Call, device: str, mode: str) -> str | None:
        message = str(exc)
        first = message.strip().splitlines()[0] if message.strip() else message
        if any(f"unexpected keyword argument '{a}'" in message for a in LEGACY_ARGUMENTS):
            return f"mindspore has no size_average/reduce arguments: {first}"
        if isinstance(exc, TypeError) and "For primitive[MultiMarginLoss], the input argument" in message:
            # the primitive's dtype check: input and weight float16/32/64 only, target int64 only
            if call.dtype == "bfloat16" and "but got Tensor[BFloat16]" in message:
                return f"bfloat16 on {device} ({mode}): {first}"
            if call.target.dtype == np.int32 and "argument[target]" in message and "Tensor[Int32]" in message:
                return f"int32 targets (MML-1.5): {first}"
        return super().unsupported(exc, call, device, mode)

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        dt = f"mindspore.{lit['dtype']}"
        lines = ["import mindspore", self.fn_import,
                 f"x = mindspore.Tensor({lit['x']}, dtype={dt})",
                 f"target = mindspore.Tensor({lit['target']}, dtype=mindspore.{lit['target_dtype']})"]
        weight = "None"
        if lit["weight"] is not None:
            lines.append(f"weight = mindspore.Tensor({lit['weight']}, dtype={dt})")
            weight = "weight"
        kw = kwargs_source({**lit, "margin": _margin_source(lit["margin"])}, weight_name=None)
        lines += ["", "def loss(x, target, weight):",
                  f"    return {self.fn_expr}(x, target, weight=weight, {kw})", ""]
        if check == "grad":
            lines += [f"cotangent = mindspore.Tensor({lit['cotangent']}, dtype={dt})", "",
                      "def objective(x, target, cotangent, weight):  # the gradient is this cotangent's VJP",
                      "    out = loss(x, target, weight)",
                      "    return ops.sum(ops.mul(out, cotangent)), out", "",
                      "with_grad = mindspore.value_and_grad(objective, grad_position=0, has_aux=True)",
                      f"(_, out), grad = with_grad(x, target, cotangent, {weight})",
                      "print(out)", "print(grad)"]
        else:
            lines.append(f"print(loss(x, target, {weight}))")
        return "\n".join(lines)
