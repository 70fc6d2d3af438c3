"""The one protocol every backend implements, and the call it receives.

A backend is a small class: it names itself and the framework it needs, imports that framework
only in `load()` (which runs inside the backend's own worker process), says which devices, modes
and dtypes it has, and runs a `Call` to NumPy results. Exceptions propagate: the worker turns them
into data, and `unsupported()` tells a capability gap ("not implemented for 'Half'") from a
conformance failure.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from conformance.floats import DTYPES, numpy_dtype  # noqa: F401 (the spec's dtype names; no arithmetic)


@dataclass
class Call:
    """One call of the loss: NumPy arrays in the case's dtypes, and the cotangent for the gradient
    (the output's shape; ones for 'mean' and 'sum')."""

    x: np.ndarray
    target: np.ndarray
    p: int
    margin: float
    weight: np.ndarray | None
    reduction: str
    legacy: dict | None = None  # {"size_average": ..., "reduce": ...}: pass these, not reduction
    cotangent: np.ndarray | None = None  # the output's shape and dtype; set whenever a gradient is asked
    noncontiguous: tuple = ()  # "x", "weight": passed as non-contiguous views (MML-1.8)

    def __post_init__(self):
        for name in self.noncontiguous:
            setattr(self, name, strided_view(getattr(self, name)))

    @property
    def dtype(self) -> str:
        return self.x.dtype.name

    def kwargs(self) -> dict:
        """Keyword arguments in the F.multi_margin_loss convention (legacy ones where the case has them)."""
        kw = {"p": self.p, "margin": self.margin, "weight": self.weight}
        if self.legacy is not None:
            kw.update(self.legacy)
        else:
            kw["reduction"] = self.reduction
        return kw

    def static_kwargs(self) -> dict:
        """kwargs() but the weight: the arguments a traced function is specialised on."""
        kw = self.kwargs()
        del kw["weight"]
        return kw

    def trace_key(self) -> tuple:
        """What a tracing framework compiles one function for: the static kwargs and each array's
        shape and dtype."""
        arrays = (self.x, self.target, self.weight, self.cotangent)
        shapes = tuple(None if a is None else (np.shape(a), np.asarray(a).dtype.str) for a in arrays)
        return repr(sorted(self.static_kwargs().items())), shapes

    def arrays(self) -> dict:
        out = {"x": self.x, "target": self.target}
        if self.weight is not None:
            out["weight"] = self.weight
        return out


def strided_view(a: np.ndarray) -> np.ndarray:
    """`a` as every other element, along its last axis, of a buffer twice as wide whose other
    elements are NaN: a non-contiguous view, as slicing makes one. A kernel that reads it as if it
    were contiguous reads NaN."""
    buffer = np.full((*a.shape[:-1], 2 * a.shape[-1]), np.nan, dtype=a.dtype)
    view = buffer[..., ::2]
    view[...] = a
    return view


class NoBackward(NotImplementedError):
    """The implementation under test has no gradient (a plain NumPy kernel, say)."""


@dataclass
class Output:
    value: np.ndarray
    grad: np.ndarray | None = None
    capture: list | None = None  # under a compiler that may split the function: its graph breaks


class Backend:
    """Base class of the adapters. Subclasses set the class attributes and implement the methods.

    `fn` is the implementation under test, a callable with F.multi_margin_loss's signature in the
    adapter's framework; None means the backend's own (resolved in `load()`). `mmconf check` builds
    a framework's adapter around a user's callable this way. `fn_import` and `fn_expr` are the
    source text that imports and names it, for repros.
    """

    name = ""  # registry name: 'numpy', 'torch', ...
    module = ""  # the import name of the framework, checked without importing it
    distribution = ""  # its pip distribution, for the version
    modes: tuple = ("eager",)
    traced_modes: tuple = ()  # modes that cannot raise on values (MML-10.9)
    shared_lane: tuple = ()  # modes that run each case in turn in one worker, where one reuses another's work
    capability_gaps: tuple = ()  # words of the framework's errors that mean "not implemented here"
    ours = False  # our own implementation of the spec (also checked by finite differences)
    description = ""
    fn_import = ""
    fn_expr = ""

    def __init__(self, fn: Callable | None = None):
        self.fn = fn

    # --- cheap, in the harness process: no framework import ---
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def installed_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution or self.module)
        except importlib.metadata.PackageNotFoundError:
            return None

    def repro(self, lit: dict, device: str, mode: str, check: str) -> str:
        """Self-contained source, in the framework's own code, that reproduces one call.

        `lit` holds source literals (see `literals`): x, target, weight, cotangent, p, margin,
        reduction, legacy, dtype, target_dtype, noncontiguous.
        """
        return ""

    # --- in the worker process ---
    def load(self) -> None:
        """Import the framework and configure it (threads, precision flags)."""

    def version(self) -> str:
        return self.installed_version() or "unknown"

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self, device: str) -> list[str]:
        return list(DTYPES)

    def threads(self) -> int | None:
        """The intra-op thread count the framework uses here, where it says."""
        return None

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        raise NotImplementedError

    def prepare(self, call: Call, device: str, mode: str, grad: bool) -> Callable[[], None]:
        """For the benchmark: a zero-argument callable that computes the loss (and, with `grad`,
        the input gradient, without accumulating it anywhere) on inputs already on `device`, and
        returns only when every output is ready. Its first call may compile or trace."""
        raise NotImplementedError

    def peak_memory(self, device: str) -> int | None:
        """Bytes of device memory at the peak since the last reset, where the framework tells
        (CUDA allocators do); None where it does not (the benchmark then watches the process's
        resident memory)."""
        return None

    def reset_peak_memory(self, device: str) -> None:
        pass

    def unsupported(self, exc: BaseException, call: Call, device: str, mode: str) -> str | None:
        """A reason if `exc` says the dtype, device or argument kind is not implemented: a
        NoBackward, or a message holding one of `capability_gaps` (its first line is the reason)."""
        if isinstance(exc, NoBackward):
            return str(exc)
        message = str(exc)
        if any(gap in message for gap in self.capability_gaps):
            return message.strip().splitlines()[0][:300]
        return None

    def describe(self) -> dict:
        devices = self.devices()
        return {
            "name": self.name,
            "version": self.version(),
            "devices": devices,
            "modes": list(self.modes),
            "traced_modes": list(self.traced_modes),
            "shared_lane": list(self.shared_lane),
            "dtypes": {d: list(self.dtypes(d)) for d in devices},
            "ours": self.ours,
            "threads": self.threads(),
            "description": self.description,
        }


# --- source literals for repros -------------------------------------------------------------------


def py_literal(a) -> str:
    """Python source for an array's values: nested lists, exact floats (repr round-trips),
    float('nan') and float('inf') for the special values; an empty array, whose shape no nested
    list can carry, as `np.empty(shape)` (the repro then imports numpy as np)."""
    a = np.asarray(a)
    if a.size == 0 and a.ndim > 1:
        return f"np.empty({a.shape})"
    if a.ndim == 0:
        v = a.item()
        if isinstance(v, float) and not math.isfinite(v):
            return f"float('{v}')"
        return repr(v)
    return "[" + ", ".join(py_literal(row) for row in a) + "]"


def literals(call: Call) -> dict:
    """The literals `Backend.repro` formats, from a call (arrays in float64 / int64 text)."""
    return {
        "x": py_literal(np.asarray(call.x, dtype=np.float64)),
        "target": py_literal(np.asarray(call.target).astype(np.float64 if call.target.dtype.kind == "f" else np.int64)),
        "weight": None if call.weight is None else py_literal(np.asarray(call.weight, dtype=np.float64)),
        "cotangent": None if call.cotangent is None else py_literal(np.asarray(call.cotangent, dtype=np.float64)),
        "p": repr(call.p),
        "margin": py_literal(np.float64(call.margin)),
        "reduction": repr(call.reduction),
        "legacy": call.legacy,
        "dtype": call.dtype,
        "target_dtype": call.target.dtype.name,
        "noncontiguous": call.noncontiguous,
    }


def view_lines(lit: dict, template: str) -> list[str]:
    """Repro lines that make each array the call passes as a non-contiguous view into one:
    `template` rebinds the array named `{a}` (MML-1.8)."""
    return [template.format(a=name) + "  # a non-contiguous view (MML-1.8)" for name in lit["noncontiguous"]]


def kwargs_source(lit: dict, weight_name: str | None = "weight") -> str:
    """`p=2, margin=1.0, weight=weight, reduction='none'` (or the legacy arguments)."""
    parts = [f"p={lit['p']}", f"margin={lit['margin']}"]
    if lit["weight"] is not None and weight_name:
        parts.append(f"weight={weight_name}")
    if lit["legacy"] is not None:
        parts += [f"{k}={v!r}" for k, v in lit["legacy"].items() if v is not None]
    else:
        parts.append(f"reduction={lit['reduction']}")
    return ", ".join(parts)
