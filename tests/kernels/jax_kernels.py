"""Example kernels for `mmconf check --framework jax`: a plain jax.numpy kernel written from the spec,
differentiated by JAX, and one with the seed page's formula (the weight inside the power, MML-11.1).

Plain jax.numpy is right on ordinary inputs; its autodiff drops NaN at the kink's `max` and XLA on CPU
flushes subnormals, which is why our own implementation (impls/_jax_loss.py) is more than this.
"""

import jax.numpy as jnp


def _rows(input, target, weight, margin):
    x = jnp.asarray(input)
    t = jnp.asarray(target).reshape(-1)
    x2 = x.reshape(-1, x.shape[-1]).astype(jnp.float64 if x.dtype == jnp.float64 else jnp.float32)
    w = jnp.ones(t.shape, x2.dtype) if weight is None else jnp.asarray(weight).astype(x2.dtype)[t]
    z = margin - jnp.take_along_axis(x2, t[:, None], axis=1) + x2
    own = jnp.arange(x2.shape[1]) == t[:, None]
    return x, x2, w, z, own


def _reduce(losses, reduction, target, dtype):
    if reduction == "none":
        return losses.reshape(jnp.shape(target)).astype(dtype)
    return (losses.sum() if reduction == "sum" else losses.mean()).astype(dtype)


def correct(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    x, x2, w, z, own = _rows(input, target, weight, margin)
    terms = jnp.where(own, 0, w[:, None] * jnp.maximum(z, 0) ** p)
    return _reduce(terms.sum(axis=1) / x2.shape[1], reduction, target, x.dtype)


def weight_inside(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None, reduction="mean"):
    """The seed page's formula: the weight inside the power (MML-11.1)."""
    x, x2, w, z, own = _rows(input, target, weight, margin)
    terms = jnp.where(own, 0, jnp.maximum(w[:, None] * z, 0) ** p)
    return _reduce(terms.sum(axis=1) / x2.shape[1], reduction, target, x.dtype)


def checks_target_in_python(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                            reduction="mean"):
    """`correct`, with the target range checked by a Python `if` on array values: fine in eager,
    not traceable by jax.jit (a capability gap of the kernel, not a wrong value)."""
    C = jnp.shape(input)[-1]
    if ((jnp.asarray(target) < 0) | (jnp.asarray(target) >= C)).any():
        raise IndexError(f"target out of range [0, {C})")
    return correct(input, target, p, margin, weight, size_average, reduce, reduction)
