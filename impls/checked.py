"""`mmconf check`: a user's callable behind its framework's adapter.

The callable has F.multi_margin_loss's signature, (input, target, p=1, margin=1.0, weight=None,
size_average=None, reduce=None, reduction='mean'), and takes and returns its framework's arrays.
For NumPy, which has no autograd, a function named `<callable>_backward` beside it (signature
`(cotangent, input, target, **same keyword arguments)`) gives the gradient, if it exists.
"""

from __future__ import annotations

import importlib
import os

# framework name -> the adapter class that runs a callable of that framework
FRAMEWORKS = {
    "numpy": "impls.numpy_backend:NumpyBackend",
    "torch": "impls.torch_backend:TorchBackend",
    "jax": "impls.jax_backend:JaxBackend",
    "tensorflow": "impls.tf_backend:TensorFlowBackend",
}


def resolve(target: str):
    """'package.module:callable' -> the callable, imported."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected MODULE:CALLABLE, got {target!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


def adapter_class(framework: str):
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
    module, _, cls = FRAMEWORKS[framework].partition(":")
    return getattr(importlib.import_module(module), cls)


# what each framework's compiler raises on a function it cannot capture: (mode, exception class names)
CAPTURE_ERRORS = {
    "torch": (("compile",), ("Unsupported", "UserError")),  # torch._dynamo.exc, under fullgraph
    "jax": (("jit",), ("ConcretizationTypeError", "TracerBoolConversionError", "TracerIntegerConversionError",
                       "TracerArrayConversionError")),  # jax.errors
    "tensorflow": (("function", "xla"), ("OperatorNotAllowedInGraphError",)),  # tf.errors
}


def capture_gap(framework: str, exc: BaseException, mode: str) -> str | None:
    """Why the framework's compiler could not capture the kernel, when that is what `exc` says: a
    capability gap of the kernel (Python control flow on values, say), not wrong values."""
    modes, names = CAPTURE_ERRORS.get(framework, ((), ()))
    if mode in modes and type(exc).__name__ in names:
        lines = str(exc).strip().splitlines()
        return f"{mode} cannot capture it ({type(exc).__name__}): {lines[0][:300] if lines else ''}"
    return None


def checked_backend(framework: str, target: str):
    """The adapter of `framework` around the callable named by `target` ('module:callable').

    The callable is imported by `load()`, in the worker process; the harness process only uses
    the adapter's framework-free parts (repros).
    """
    cls = adapter_class(framework)
    module, _, attr = target.partition(":")

    class Checked(cls):
        name = f"check:{framework}:{target}"
        ours = True  # a kernel under development gets the finite-difference check too
        description = f"{target} (checked with the {framework} adapter)"
        fn_import = f"from {module} import {attr.split('.')[0]}"
        fn_expr = attr
        backward_expr = f"{attr}_backward"
        # torch.compile as users call it, graph breaks allowed and reported; `mmconf check --fullgraph`
        # asks for one graph, and then a break is a capability gap
        fullgraph = os.environ.get("MMCONF_FULLGRAPH") == "1"

        def unsupported(self, exc, call, device, mode):
            return capture_gap(framework, exc, mode) or cls.unsupported(self, exc, call, device, mode)

        def load(self):
            cls.load(self)  # configures the framework (threads, x64, ...)
            self.fn = resolve(target)
            if framework == "numpy":
                mod = importlib.import_module(module)
                self.backward = getattr(mod, f"{attr}_backward", None)

    Checked.__name__ = f"Checked{cls.__name__}"
    return Checked()
