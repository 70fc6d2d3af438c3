"""The deployment path: PyTorch's multi_margin_loss exported with `torch.onnx.export(dynamo=True)`
and run by ONNX Runtime.

ONNX has no multi-margin operator: the exporter lowers the op through PyTorch's decomposition
(torch/_decomp) into GatherElements, Sub, Add, Clip, Mul, Where and Reduce nodes, which ONNX
Runtime then runs with its own kernels. One model per call signature (shapes, dtypes, p, margin,
reduction, weight or none), exported with static shapes as a deployed model is; the exports are
kept in mmconf's cache directory (MMCONF_ONNX_CACHE, set by the runner), since each takes a third
of a second even with the exporter's registry built once per process. No gradient: ONNX Runtime's
inference build has no autodiff, and torch.onnx has no translation of
aten.multi_margin_loss_backward (torch 2.13), so a deployed gradient is no option.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np

from conformance.files import write_atomic

from .base import Backend, Call, NoBackward, Output, kwargs_source

NO_GRADIENT = ("ONNX Runtime (inference) computes no gradient, and torch.onnx has no translation of "
               "aten.multi_margin_loss_backward")


def _build_the_exporters_registry_once() -> None:
    """torch.onnx.export builds its registry of ONNX translations (torchlib's ~5000 functions, each
    parsed from its source) again for every export: 0.4 of an export's 0.7 s here. The registry is
    the same every time and no export changes it (we pass no custom translations), so build it once
    per process. The models exported are the same bytes (tests/unit/test_onnxruntime.py)."""
    try:
        from torch.onnx._internal.exporter._registration import ONNXRegistry
    except ImportError:  # another torch: its exporter, as it is
        return
    build = ONNXRegistry.from_torchlib
    if not hasattr(build, "cache_info"):
        ONNXRegistry.from_torchlib = classmethod(functools.cache(build.__func__))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    module = distribution = "onnxruntime"
    modes = ("export",)
    traced_modes = ("export",)  # a graph: an out-of-range target cannot raise before it runs
    capability_gaps = ("Could not find an implementation for", "NOT_IMPLEMENTED")  # a kernel ORT lacks
    description = "torch.onnx.export(dynamo=True) of F.multi_margin_loss, run by ONNX Runtime"

    def __init__(self, fn=None):
        super().__init__(fn)
        self._sessions: dict = {}

    def installed(self) -> bool:
        return super().installed() and all(importlib.util.find_spec(m) for m in ("torch", "onnxscript", "onnx"))

    def load(self) -> None:
        import logging

        import onnxruntime
        import torch

        logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its progress lines, per export
        onnxruntime.set_default_logger_severity(3)
        _build_the_exporters_registry_once()
        self._versions = f"torch {torch.__version__}, onnxscript {importlib.metadata.version('onnxscript')}"

    def version(self) -> str:
        return f"{self.installed_version()} ({self._versions})"

    def devices(self) -> list[str]:
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        return ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in providers else [])

    def _session(self, call: Call, device: str):
        """(ONNX Runtime session, its input names) for the call's signature."""
        import onnxruntime

        key = (device, call.trace_key())  # the static arguments (legacy ones too), shapes, dtypes
        if key not in self._sessions:
            model = self._model(call)
            providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
            session = onnxruntime.InferenceSession(model, providers=providers)
            self._sessions[key] = session, [i.name for i in session.get_inputs()]
        return self._sessions[key]

    def _model(self, call: Call) -> bytes:
        """The exported model's bytes, from the cache where it holds them."""
        signature = repr((call.trace_key(), self._versions))
        where = os.environ.get("MMCONF_ONNX_CACHE")
        path = Path(where) / f"{hashlib.sha256(signature.encode()).hexdigest()[:32]}.onnx" if where else None
        if path is not None and path.is_file():
            return path.read_bytes()
        model = self._export(call)
        if path is not None:
            write_atomic(path, model)
        return model

    def _export(self, call: Call) -> bytes:
        import torch

        from .torch_backend import to_tensor

        kw = call.static_kwargs()
        has_weight = call.weight is not None

        class Loss(torch.nn.Module):
            def forward(self, x, target, weight=None):
                return torch.nn.functional.multi_margin_loss(x, target, weight=weight, **kw)

        args = (to_tensor(call.x, "cpu"), to_tensor(call.target, "cpu"))
        if has_weight:
            args += (to_tensor(call.weight, "cpu"),)
        program = torch.onnx.export(Loss(), args, dynamo=True, verbose=False, optimize=True)
        return program.model_proto.SerializeToString()

    def prepare(self, call: Call, device: str, mode: str, grad: bool):
        """session.run on the call's arrays, by the names the model's inputs have."""
        if grad:
            raise NoBackward(NO_GRADIENT)
        session, names = self._session(call, device)
        arrays = {"x": call.x, "target": call.target, "weight": call.weight}
        feeds = {name: arrays[name] for name in names}
        return lambda: session.run(None, feeds)

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        (value,) = self.prepare(call, device, mode, grad)()
        return Output(np.asarray(value))

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        dt = f"torch.{lit['dtype']}"
        weight = lit["weight"] is not None
        lines = ["import onnxruntime", "import torch", "import torch.nn.functional as F", "",
                 "class Loss(torch.nn.Module):",
                 f"    def forward(self, x, target{', weight' if weight else ''}):",
                 f"        return F.multi_margin_loss(x, target, {kwargs_source(lit)})", "",
                 f"x = torch.tensor({lit['x']}, dtype={dt})",
                 f"target = torch.tensor({lit['target']}, dtype=torch.{lit['target_dtype']})"]
        args = "x, target"
        if weight:
            lines.append(f"weight = torch.tensor({lit['weight']}, dtype={dt})")
            args += ", weight"
        provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
        lines += [f"model = torch.onnx.export(Loss(), ({args},), dynamo=True).model_proto.SerializeToString()",
                  f"session = onnxruntime.InferenceSession(model, providers=[{provider!r}])",
                  f"feeds = dict(x=x.numpy(), target=target.numpy(){', weight=weight.numpy()' if weight else ''})",
                  "print(session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})[0])",
                  "print(Loss()(" + args + "))  # PyTorch eager, for comparison"]
        return "\n".join(lines)
