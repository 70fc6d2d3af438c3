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
from dataclasses import dataclass

import numpy as np

DTYPES = ("float16", "bfloat16", "float32", "float64")


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


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
    cotangent: np.ndarray | None = None

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

    def arrays(self) -> dict:
        out = {"x": self.x, "target": self.target}
        if self.weight is not None:
            out["weight"] = self.weight
        return out


@dataclass
class Output:
    value: np.ndarray
    grad: np.ndarray | None = None


class Backend:
    """Base class of the adapters. Subclasses set the class attributes and implement the methods."""

    name = ""  # registry name: 'numpy', 'torch', ...
    module = ""  # the import name of the framework, checked without importing it
    distribution = ""  # its pip distribution, for the version
    modes: tuple = ("eager",)
    traced_modes: tuple = ()  # modes that cannot raise on values (MML-10.9)
    ours = False  # our own implementation of the spec (also checked by finite differences)
    description = ""

    # --- cheap, in the harness process: no framework import ---
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def installed_version(self) -> str | None:
        try:
            return importlib.metadata.version(self.distribution or self.module)
        except importlib.metadata.PackageNotFoundError:
            return None

    # --- in the worker process ---
    def load(self) -> None:
        """Import the framework and configure it (threads, precision flags)."""

    def version(self) -> str:
        return self.installed_version() or "unknown"

    def devices(self) -> list[str]:
        return ["cpu"]

    def dtypes(self, device: str) -> list[str]:
        return list(DTYPES)

    def run(self, call: Call, device: str, mode: str, grad: bool) -> Output:
        raise NotImplementedError

    def unsupported(self, exc: BaseException, call: Call, device: str, mode: str) -> str | None:
        """A reason if `exc` says the dtype, device or argument kind is not implemented."""
        return None

    def describe(self) -> dict:
        devices = self.devices()
        return {
            "name": self.name,
            "version": self.version(),
            "devices": devices,
            "modes": list(self.modes),
            "traced_modes": list(self.traced_modes),
            "dtypes": {d: list(self.dtypes(d)) for d in devices},
            "ours": self.ours,
            "description": self.description,
        }
