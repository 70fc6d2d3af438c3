"""Backends: one module each, behind the protocol in impls.base.

Importing this package imports no framework. Other packages add backends through the entry-point
group `mmconf.backends` (name = "module:Class", the class a subclass of impls.base.Backend).
"""

from __future__ import annotations

import importlib
import importlib.metadata

ENTRY_POINT_GROUP = "mmconf.backends"

BUILTIN = {
    "numpy": "impls.numpy_backend:NumpyBackend",
    "torch": "impls.torch_backend:TorchBackend",
    "torch-fast": "impls.torch_fast:TorchFastBackend",
    "triton": "impls.triton_backend:TritonBackend",
    "paddle": "impls.paddle_backend:PaddleBackend",
    "mindspore": "impls.mindspore_backend:MindSporeBackend",
    "jax": "impls.jax_backend:JaxBackend",
    "tensorflow": "impls.tf_backend:TensorFlowBackend",
    "onnxruntime": "impls.onnxruntime_backend:OnnxRuntimeBackend",
}


def registry() -> dict[str, str]:
    """Backend name -> 'module:Class', built-in backends first, then installed plug-ins."""
    out = dict(BUILTIN)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        out.setdefault(ep.name, ep.value)
    return out


def load_backend(name: str):
    """An instance of the backend registered as `name` (its framework is not imported yet)."""
    target = registry().get(name)
    if target is None:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(registry())}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)()
