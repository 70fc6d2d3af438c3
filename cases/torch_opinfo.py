"""PyTorch's own test inputs for this op, as a case file: the OpInfo of
nn.functional.multi_margin_loss in the installed torch (torch/testing/_internal/
common_methods_invocations.py), its sample, reference and error inputs, for each dtype the OpInfo
lists (CPU and CUDA), drawn with a fixed seed and written with exact values.

Each case's expectation comes, as for any case file, from SPEC.md and the exact reference; where
PyTorch's own tests and the spec disagree (a 0-d input is a valid sample for PyTorch, an error for
MML-10.3), the case follows the spec and its `doc` says what PyTorch's test expects. An error input
whose float target is not its intended fault (PyTorch's error inputs draw every target as float32)
also gets a twin with int64 class indices, so that the intended fault is tested on its own.

Used by `mmconf cases import torch-opinfo`. Importing PyTorch's test utilities changes global state
(cudnn flags, argument parsing), so call it in a process of its own, as that command is.
"""

from __future__ import annotations

import numpy as np

from conformance.caseio import Case, default_cotangent

OP = "nn.functional.multi_margin_loss"
SEED = 0


def _numpy(t) -> np.ndarray:
    """A tensor's values as float64 (exact for every float dtype) or int64."""
    import torch

    t = t.detach().cpu()
    return t.to(torch.float64 if t.is_floating_point() else torch.int64).numpy()


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _case(id_: str, dtype: str, x, target, kwargs: dict, doc: str) -> Case:
    target = _numpy(target)
    reduction = kwargs.get("reduction") or "mean"
    weight = kwargs.get("weight")
    return Case(id=id_, dtype=dtype, x=_numpy(x), target=target,
                target_dtype="int64" if target.dtype == np.int64 else "float32",
                p=kwargs.get("p", 1), margin=float(kwargs.get("margin", 1.0)),
                weight=None if weight is None else _numpy(weight), reduction=reduction,
                cotangent=default_cotangent(np.shape(target)) if reduction == "none" else None, doc=doc)


def _describe(x, target, kwargs: dict) -> str:
    shown = {k: (f"tensor{tuple(v.shape)}" if hasattr(v, "shape") else v) for k, v in kwargs.items()}
    return f"input {tuple(x.shape)}, target {tuple(target.shape)} {_dtype_name(target.dtype)}, kwargs {shown}"


def cases() -> list[Case]:
    """Every sample, reference and error input of the OpInfo, as cases with expectations."""
    import torch
    from torch.testing._internal.common_methods_invocations import op_db

    ops = [op for op in op_db if op.name == OP]
    if not ops:
        raise LookupError(f"torch {torch.__version__} has no OpInfo named {OP}")
    op = ops[0]
    source = f"PyTorch {torch.__version__} OpInfo {OP}"
    dtypes = [*op.dtypes, *(d for d in getattr(op, "dtypesIfCUDA", ()) if d not in op.dtypes)]
    dtypes = sorted(dtypes, key=lambda d: torch.finfo(d).bits * 10 + (d == torch.float16))
    out = []
    for dtype in dtypes:
        name = _dtype_name(dtype)
        for kind, inputs in (("sample", op.sample_inputs), ("reference", op.reference_inputs)):
            torch.manual_seed(SEED)
            for k, s in enumerate(inputs("cpu", dtype, requires_grad=False)):
                target = s.args[0]
                doc = f"{source}, {kind}_inputs #{k} ({name}): {_describe(s.input, target, s.kwargs)}"
                out.append(_case(f"opinfo/{kind}-{k}", name, s.input, target, s.kwargs, doc))
    torch.manual_seed(SEED)
    for k, e in enumerate(op.error_inputs("cpu")):
        s = e.sample_input
        x, target = s.input, s.args[0]
        name = _dtype_name(x.dtype)
        doc = (f"{source}, error_inputs #{k}: {_describe(x, target, s.kwargs)}; PyTorch expects "
               f"{e.error_type.__name__} matching {e.error_regex!r}")
        out.append(_case(f"opinfo/error-{k}", name, x, target, s.kwargs, doc))
        if target.is_floating_point():
            C = x.shape[-1] if x.ndim else 1
            labels = torch.arange(target.numel()).reshape(target.shape) % max(C, 1)
            twin = _case(f"opinfo/error-{k}-int64-target", name, x, labels, s.kwargs,
                         f"{doc}; here with int64 class indices, so that its other fault is tested alone")
            if twin.spec_error() is not None:  # else the float target was its only fault
                out.append(twin)
    for c in out:
        c.with_expectation(where=c.id)
    return out
