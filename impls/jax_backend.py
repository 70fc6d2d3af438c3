"""Our JAX implementation of the spec (impls/_jax_loss.py), and its adapter.

Modes: `eager` (op by op, but for the exact path that rare calls take: one function compiled per
shape) and `jit` (one compiled function per static configuration, where an out-of-range target
gives NaN instead of raising, MML-10.9). float64 needs JAX's x64 mode, which `load()` turns on;
float32 inputs still compute in float32.
"""

from __future__ import annotations

import numpy as np

from .base import Backend, Call, Output, kwargs_source


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md in JAX, with F.multi_margin_loss's signature."""
    from ._jax_loss import multi_margin_loss as loss

    return loss(input, target, p=p, margin=margin, weight=weight, size_average=size_average, reduce=reduce,
                reduction=reduction)


# configurations (static arguments, shapes, dtypes) whose compiled code is kept: a long run over
# many margins and shapes would otherwise hold gigabytes of it
KEEP_COMPILED = 64


class JaxBackend(Backend):
    name = "jax"
    module = distribution = "jax"
    modes = ("eager", "jit")
    traced_modes = ("jit",)
    ours = True
    description = "our jax.numpy implementation with a custom VJP (impls/jax_backend.py)"
    fn_import = "from impls.jax_backend import multi_margin_loss"
    fn_expr = "multi_margin_loss"

    def __init__(self, fn=None):
        super().__init__(fn)
        self._compiled: dict = {}

    def load(self) -> None:
        import jax

        jax.config.update("jax_enable_x64", True)
        if self.fn is None:
            self.fn = multi_margin_loss

    def devices(self) -> list[str]:
        import jax

        found = ["cpu"]
        for platform in ("cuda", "rocm"):  # torch's names, so that reports line up
            try:
                if jax.devices(platform):
                    found.append(platform)
            except RuntimeError:
                pass
        return found

    def _function(self, call: Call, mode: str, grad: bool):
        """(x, target, weight, cotangent) -> (value, gradient or None); compiled once per static
        configuration in `jit` mode."""
        import jax

        kw = call.static_kwargs()
        fn = self.fn

        def value_and_grad(x, target, weight, cotangent):
            loss = lambda x: fn(x, target, weight=weight, **kw)  # noqa: E731
            if not grad:
                return loss(x), None
            value, vjp = jax.vjp(loss, x)
            return value, vjp(cotangent.astype(value.dtype))[0]

        if mode == "eager":  # JAX caches eager ops per shape itself; clearing that cache makes eager 100x slower
            return value_and_grad
        key = (grad, call.trace_key())
        if key not in self._compiled:
            if len(self._compiled) >= KEEP_COMPILED:
                self._compiled.clear()  # dropping a jitted function frees its compiled code
            self._compiled[key] = jax.jit(value_and_grad)
        return self._compiled[key]

    def _arguments(self, call: Call, device: str):
        import jax

        dev = jax.devices(device)[0]
        put = lambda a: None if a is None else jax.device_put(a, dev)  # noqa: E731
        return put(call.x), put(call.target), put(call.weight), put(call.cotangent)

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        value, g = self._function(call, mode, grad)(*self._arguments(call, device))
        return Output(np.asarray(value), None if g is None else np.asarray(g))

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        import jax

        fn = self._function(call, mode, grad)
        args = self._arguments(call, device)
        return lambda: jax.block_until_ready(fn(*args))

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        dt = f"jnp.{lit['dtype']}"
        put = "" if device == "cpu" else f", device=jax.devices({device!r})[0]"
        lines = ["import jax", 'jax.config.update("jax_enable_x64", True)', "import jax.numpy as jnp",
                 self.fn_import,
                 f"x = jnp.array({lit['x']}, dtype={dt}{put})",
                 f"target = jnp.array({lit['target']}, dtype=jnp.{lit['target_dtype']}{put})"]
        if lit["weight"] is not None:
            lines.append(f"weight = jnp.array({lit['weight']}, dtype={dt}{put})")
        loss = f"lambda x, target: {self.fn_expr}(x, target, {kwargs_source(lit)})"
        lines.append(f"loss = jax.jit({loss})" if mode == "jit" else f"loss = {loss}")
        lines.append("print(loss(x, target))")
        if check == "grad":
            lines += [f"cotangent = jnp.array({lit['cotangent']}, dtype={dt}{put})",
                      "value, vjp = jax.vjp(lambda x: loss(x, target), x)",
                      "print(vjp(cotangent)[0])"]
        return "\n".join(lines)
