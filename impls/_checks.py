"""Argument checks shared by our own implementations (NumPy, JAX, TensorFlow, PyTorch, Triton).

Framework-free: they look at shapes, dtype kinds and Python scalars only, so a traced function can
run them at trace time. Each message names the offending argument (SPEC.md, MML-10).
"""

from __future__ import annotations

REDUCTIONS = ("none", "mean", "sum")


def legacy_reduction(size_average, reduce, reduction: str) -> str:
    """The deprecated size_average / reduce arguments override `reduction` when either is given."""
    if size_average is None and reduce is None:
        return reduction
    if reduce is False:
        return "none"
    return "sum" if size_average is False else "mean"


def check_args(x_shape, target_shape, target_is_integer: bool, target_dtype, p, reduction,
               weight_shape) -> int:
    """Raise ValueError for an invalid call (all but the target's values); return C."""
    x_shape, target_shape = tuple(x_shape), tuple(target_shape)
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"multi_margin_loss: p must be 1 or 2, got {p!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"multi_margin_loss: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    if len(x_shape) not in (1, 2):
        raise ValueError(f"multi_margin_loss: input must be 1-D (C,) or 2-D (N, C), got shape {x_shape}")
    C = x_shape[-1]
    if C == 0:
        raise ValueError(f"multi_margin_loss: input must have at least one class, got shape {x_shape}")
    if not target_is_integer:
        raise TypeError(f"multi_margin_loss: target must hold integer class indices, got dtype {target_dtype}")
    expected = ((x_shape[0],),) if len(x_shape) == 2 else ((), (1,))
    if target_shape not in expected:
        raise ValueError(f"multi_margin_loss: target shape {target_shape} does not match input shape "
                         f"{x_shape}; expected {' or '.join(map(str, expected))}")
    if weight_shape is not None and tuple(weight_shape) != (C,):
        raise ValueError(f"multi_margin_loss: weight must have shape ({C},), got {tuple(weight_shape)}")
    return C


def target_range_error(bad_value, C: int) -> IndexError:
    return IndexError(f"multi_margin_loss: target values must lie in [0, {C}), got {bad_value}")
