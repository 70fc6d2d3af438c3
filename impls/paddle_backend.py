"""PaddlePaddle's own multi-margin loss, `paddle.nn.functional.multi_margin_loss`, and its adapter.

Paddle composes the loss from tensor ops (index_sample, clip, pow, mean); the gradient is its
autograd's. Mode `eager` runs it in dygraph; mode `static` runs it as a whole-graph program built by
`paddle.jit.to_static`. The static program still raises on out-of-range targets (the index_sample
kernel checks its indices when it runs), so it is not a traced mode in the sense of MML-10.9.
"""

from __future__ import annotations

import numpy as np

from .base import Backend, Call, Output, kwargs_source, numpy_dtype

LEGACY_ARGUMENTS = ("size_average", "reduce")


class PaddleBackend(Backend):
    name = "paddle"
    module = "paddle"
    distribution = "paddlepaddle"
    modes = ("eager", "static")
    description = "PaddlePaddle's paddle.nn.functional.multi_margin_loss (dygraph and paddle.jit.to_static)"
    fn_import = "import paddle.nn.functional as F"
    fn_expr = "F.multi_margin_loss"

    def load(self) -> None:
        import paddle

        self.paddle = paddle
        self._static = {}  # options -> paddle.jit.to_static function, see _loss
        paddle.disable_static()
        if self.fn is None:
            self.fn = paddle.nn.functional.multi_margin_loss

    def devices(self) -> list[str]:
        cuda = self.paddle.is_compiled_with_cuda() and self.paddle.device.cuda.device_count() > 0
        return ["cpu", "cuda"] if cuda else ["cpu"]

    # --- conversions ---
    def _place(self, device: str):
        return self.paddle.CPUPlace() if device == "cpu" else self.paddle.CUDAPlace(0)

    def _tensor(self, a: np.ndarray, device: str, requires_grad: bool = False):
        if a.dtype.name == "bfloat16":  # paddle does not take ml_dtypes arrays; the widening is exact
            t = self.paddle.to_tensor(a.astype(np.float32), place=self._place(device)).astype("bfloat16")
        else:
            t = self.paddle.to_tensor(a, place=self._place(device))
        t.stop_gradient = not requires_grad
        return t

    def _numpy(self, t) -> np.ndarray:
        """The tensor's values in its own dtype (never cast to the call's: MML-1.6 is judged on it)."""
        if t.dtype == self.paddle.bfloat16:
            return t.astype("float32").numpy().astype(numpy_dtype("bfloat16"))
        return np.asarray(t.numpy())

    def _loss(self, call: Call, mode: str):
        """The function under test with the call's options bound, in `mode`.

        Static functions are built once per set of options and kept: paddle 3.3.1 crashed (SIGSEGV
        in pir name analysis) when the programs of discarded ones were freed while gradients of
        static outputs were being taken."""
        fn = self.fn
        options = {k: v for k, v in call.kwargs().items() if k != "weight"}

        def loss(input, label, weight=None):
            return fn(input, label, weight=weight, **options)

        if mode != "static":
            return loss
        key = (repr(sorted(options.items())), call.weight is None)
        if key not in self._static:
            self._static[key] = self.paddle.jit.to_static(loss, full_graph=True)
        return self._static[key]

    def _inputs(self, call: Call, device: str, grad: bool):
        x = self._tensor(call.x, device, requires_grad=grad)
        label = self._tensor(call.target, device)
        weight = None if call.weight is None else self._tensor(call.weight, device)
        return x, label, weight

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        x, label, weight = self._inputs(call, device, grad)
        out = self._loss(call, mode)(x, label, weight)
        g = None
        if grad:
            cot = self._tensor(call.cotangent, device)
            (g,) = self.paddle.grad([out], [x], grad_outputs=[cot])
            g = self._numpy(g)
        return Output(self._numpy(out), g)

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        x, label, weight = self._inputs(call, device, grad)
        loss = self._loss(call, mode)
        cot = self._tensor(call.cotangent, device) if grad else None
        paddle = self.paddle

        def step():
            out = loss(x, label, weight)
            if grad:
                paddle.grad([out], [x], grad_outputs=[cot])  # returned, not accumulated into x.grad
            if device != "cpu":
                paddle.device.synchronize()

        return step

    def peak_memory(self, device: str) -> int | None:
        return None if device == "cpu" else int(self.paddle.device.cuda.max_memory_allocated())

    def reset_peak_memory(self, device: str) -> None:
        if device != "cpu":
            self.paddle.device.cuda.reset_max_memory_allocated()

    def unsupported(self, exc: BaseException, call: Call, device: str, mode: str) -> str | None:
        message = str(exc)
        legacy = any(f"unexpected keyword argument '{a}'" in message for a in LEGACY_ARGUMENTS)
        if isinstance(exc, TypeError) and legacy:
            return f"paddle has no size_average/reduce arguments: {_last_line(message)}"
        if call.dtype in ("float16", "bfloat16"):
            no_kernel = f"Selected wrong DataType `{call.dtype}`"  # dygraph: index_sample has no such kernel
            rejected = "in multi_margin_loss must be ['float32', 'float64']"  # static: the API's dtype check
            for line in message.splitlines():
                if no_kernel in line or rejected in line:
                    return f"{call.dtype} on {device} ({mode}): {line.strip()}"
        return super().unsupported(exc, call, device, mode)

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        place = "paddle.CPUPlace()" if device == "cpu" else "paddle.CUDAPlace(0)"
        dt = repr(lit["dtype"])
        grad = check == "grad"
        lines = ["import paddle", self.fn_import,
                 f"x = paddle.to_tensor({lit['x']}, dtype={dt}, place={place}, stop_gradient={not grad})",
                 f"label = paddle.to_tensor({lit['target']}, dtype={lit['target_dtype']!r}, place={place})"]
        weight = "None"
        if lit["weight"] is not None:
            lines.append(f"weight = paddle.to_tensor({lit['weight']}, dtype={dt}, place={place})")
            weight = "weight"
        call = f"{self.fn_expr}(x, label, {kwargs_source(lit)})"
        if mode == "static":
            lines += ["", "@paddle.jit.to_static(full_graph=True)", "def loss_fn(x, label, weight):",
                      f"    return {call}", "", f"loss = loss_fn(x, label, {weight})"]
        else:
            lines.append(f"loss = {call}")
        lines.append("print(loss)")
        if grad:
            lines.append(f"cotangent = paddle.to_tensor({lit['cotangent']}, dtype={dt}, place={place})")
            lines.append("print(paddle.grad([loss], [x], grad_outputs=[cotangent])[0])")
        return "\n".join(lines)


def _last_line(message: str) -> str:
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else message

