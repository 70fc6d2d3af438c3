"""Our TensorFlow implementation of the spec (impls/_tf_loss.py), and its adapter.

Modes: `eager`, `function` (tf.function) and `xla` (tf.function(jit_compile=True)); in the two
traced modes an out-of-range target gives NaN instead of raising (MML-10.9). One tf.function per
call signature. The two traced modes share a lane: a call that the function mode has traced is
compiled by XLA from that trace (what tracing builds does not depend on jit_compile, and the
outputs are bit for bit those of a trace of its own), which halves the lane's tracing.
"""

from __future__ import annotations

import importlib.metadata
import os

import numpy as np

from .base import Backend, Call, NoBackward, Output, kwargs_source

# traced configurations kept (all are dropped when that many are held): margins are static and
# every shape is traced anew, so a long run would otherwise hold traced and compiled code without
# bound
KEEP_COMPILED = 64


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md in TensorFlow, with F.multi_margin_loss's signature."""
    from ._tf_loss import multi_margin_loss as loss

    return loss(input, target, p=p, margin=margin, weight=weight, size_average=size_average, reduce=reduce,
                reduction=reduction)


class TensorFlowBackend(Backend):
    name = "tensorflow"
    module = "tensorflow"
    distribution = "tensorflow"
    modes = ("eager", "function", "xla")
    traced_modes = ("function", "xla")
    shared_lane = ("function", "xla")
    # TensorFlow's errors for a dtype its kernels lack on a device
    capability_gaps = ("Could not find device for node", "No OpKernel was registered",
                       "is not in the list of allowed values", "not supported")
    ours = True
    description = "our TensorFlow implementation with a custom gradient (impls/tf_backend.py)"
    fn_import = "from impls.tf_backend import multi_margin_loss"
    fn_expr = "multi_margin_loss"

    def __init__(self, fn=None):
        super().__init__(fn)
        self._functions: dict = {}

    def installed_version(self) -> str | None:
        for dist in ("tensorflow", "tensorflow-cpu"):
            try:
                return importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                pass
        return None

    def load(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the worker's log readable
        import tensorflow  # noqa: F401

        if self.fn is None:
            self.fn = multi_margin_loss

    def version(self) -> str:
        import tensorflow as tf

        return tf.__version__

    def devices(self) -> list[str]:
        import tensorflow as tf

        return ["cpu"] + (["cuda"] if tf.config.list_physical_devices("GPU") else [])

    @staticmethod
    def _device(device: str) -> str:
        return "/GPU:0" if device == "cuda" else "/CPU:0"

    def _function(self, call: Call, mode: str, grad: bool, args: tuple):
        """(x, target, weight, cotangent) -> (value, gradient or None), a tf.function per call
        signature in the traced modes; xla's compiles the function mode's trace where there is one."""
        import tensorflow as tf

        kw = call.static_kwargs()
        fn = self.fn

        def value_and_grad(x, target, weight, cotangent):
            if not grad:
                return fn(x, target, weight=weight, **kw), None
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = fn(x, target, weight=weight, **kw)
            g = tape.gradient(value, x, output_gradients=tf.cast(cotangent, value.dtype))
            if g is None:
                raise NoBackward("the loss has no gradient with respect to the input")
            return value, g

        if mode == "eager":
            return value_and_grad
        key = (mode, grad, call.trace_key())  # each of which tf.function traces anew
        if key not in self._functions:
            traced = self._functions.get(("function", grad, call.trace_key()))
            if len(self._functions) >= KEEP_COMPILED:
                self._functions.clear()
            if mode == "xla" and traced is not None:
                concrete = traced.get_concrete_function(*args)  # the trace, not a new one
                self._functions[key] = tf.function(lambda *a: concrete(*a), jit_compile=True)
            else:
                self._functions[key] = tf.function(value_and_grad, jit_compile=mode == "xla")
        return self._functions[key]

    def _arguments(self, call: Call, device: str):
        import tensorflow as tf

        with tf.device(self._device(device)):
            put = lambda a: None if a is None else tf.identity(tf.constant(a))  # noqa: E731
            return put(call.x), put(call.target), put(call.weight), put(call.cotangent)

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        import tensorflow as tf

        args = self._arguments(call, device)
        with tf.device(self._device(device)):
            value, g = self._function(call, mode, grad, args)(*args)
        return Output(np.asarray(value.numpy()), None if g is None else np.asarray(g.numpy()))

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        import tensorflow as tf

        args = self._arguments(call, device)
        where = self._device(device)
        with tf.device(where):
            fn = self._function(call, mode, grad, args)

        def step():
            with tf.device(where):
                fn(*args)
            tf.test.experimental.sync_devices()  # every output is ready

        return step

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        dt = "tf.bfloat16.as_numpy_dtype" if lit["dtype"] == "bfloat16" else f"np.{lit['dtype']}"
        lines = ["import numpy as np", "import tensorflow as tf", self.fn_import,
                 f"x = tf.constant(np.array({lit['x']}, dtype={dt}))",
                 f"target = tf.constant(np.array({lit['target']}, dtype=np.{lit['target_dtype']}))"]
        if lit["weight"] is not None:
            lines.append(f"weight = tf.constant(np.array({lit['weight']}, dtype={dt}))")
        call = f"{self.fn_expr}(x, target, {kwargs_source(lit)})"
        if check == "grad":
            lines += [f"cotangent = tf.constant(np.array({lit['cotangent']}, dtype={dt}))", "",
                      "def step(x, target):", "    with tf.GradientTape() as tape:", "        tape.watch(x)",
                      f"        value = {call}",
                      "    return value, tape.gradient(value, x, output_gradients=cotangent)"]
        else:
            lines += ["", "def step(x, target):", f"    return {call}"]
        if mode != "eager":
            lines += ["", f"step = tf.function(step{', jit_compile=True' if mode == 'xla' else ''})"]
        if device == "cpu":
            lines.append("out = step(x, target)")
        else:
            lines += [f"with tf.device({self._device(device)!r}):", "    out = step(x, target)"]
        lines.append("print(*(o.numpy() for o in out), sep='\\n')" if check == "grad" else "print(out.numpy())")
        return "\n".join(lines)
