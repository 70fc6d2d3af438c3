"""The PyTorch adapter: bit-exact transfers, capability gaps, repros, and a compile mode that compiles."""

import contextlib
import io

import ml_dtypes
import numpy as np
import pytest

from impls.base import Call, literals

torch = pytest.importorskip("torch")
from impls.torch_backend import TorchBackend, to_numpy, to_tensor  # noqa: E402


@pytest.fixture(scope="module")
def backend():
    b = TorchBackend()
    b.load()
    return b


def small_call(dtype="float32", target_dtype="int64", reduction="none"):
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.25, -0.5]]).astype(dtype)
    return Call(x=x, target=np.array([2, 0], dtype=target_dtype), p=1, margin=1.0, weight=None,
                reduction=reduction, cotangent=np.array([1.0, -0.5]).astype(dtype))


def test_bfloat16_round_trip_is_bit_exact():
    bits = np.array([0x7FC1, 0xFF80, 0x0001, 0x8000, 0x3F80], dtype=np.uint16)  # NaN payload, -inf, subnormal...
    a = bits.view(ml_dtypes.bfloat16)
    t = to_tensor(a, "cpu")
    assert t.dtype == torch.bfloat16
    assert to_numpy(t).view(np.uint16).tolist() == bits.tolist()
    assert to_numpy(to_tensor(np.array(1.5, np.float32), "cpu")).shape == ()  # 0-d stays 0-d


def test_a_noncontiguous_view_keeps_its_strides():
    from impls.base import strided_view

    for dtype in (np.float32, ml_dtypes.bfloat16):
        t = to_tensor(strided_view(np.arange(6).reshape(2, 3).astype(dtype)), "cpu")
        assert t.stride() == (6, 2) and to_numpy(t).astype(np.float64).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_repro_of_a_noncontiguous_call_passes_views(backend):
    import dataclasses

    weight = np.array([0.5, 1.0, 2.0], np.float32)
    call = dataclasses.replace(small_call(), weight=weight, noncontiguous=("x", "weight"))
    source = backend.repro(literals(call), "cpu", "eager", "grad")
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(source, namespace)
    assert namespace["x"].stride() == (6, 2) and namespace["weight"].stride() == (2,)


@pytest.mark.parametrize("call, gap", [
    (small_call("float16"), "Half"),
    (small_call(target_dtype="int32"), "expected scalar type Long"),
])
def test_capability_gaps_are_unsupported(backend, call, gap):
    with pytest.raises(Exception) as info:  # noqa: B017 (the adapter classifies whatever torch raises)
        backend.run(call, "cpu", "eager", False)
    assert gap in backend.unsupported(info.value, call, "cpu", "eager")


def test_real_errors_are_not_capability_gaps(backend):
    call = small_call()
    call.p = 3
    with pytest.raises(Exception) as info:  # noqa: B017
        backend.run(call, "cpu", "eager", False)
    assert backend.unsupported(info.value, call, "cpu", "eager") is None


@pytest.mark.parametrize("mode", ["eager", "compile"])
def test_repro_prints_what_run_returns(backend, mode):
    call = small_call()
    out = backend.run(call, "cpu", mode, True)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(backend.repro(literals(call), "cpu", mode, "grad"), {})
    assert f"{out.value[0]:.4f}" in printed.getvalue() and f"{out.grad[0, 0]:.4f}" in printed.getvalue()


def test_compile_mode_never_falls_back_to_eager(backend):
    """More distinct signatures than Dynamo's default recompile limit (8): each output still comes
    from a compiled graph (eager's would have MultiMarginLossBackward0 as its grad_fn)."""
    compiled = backend.compiled()
    signatures = [(p, reduction, weight) for weight in (None, torch.ones(5)) for p in (1, 2)
                  for reduction in ("none", "mean", "sum")][:9]
    for p, reduction, weight in signatures:
        x = torch.randn(4, 5, requires_grad=True)
        out = compiled(x, torch.tensor([0, 1, 2, 3]), p=p, weight=weight, reduction=reduction)
        assert type(out.grad_fn).__name__ == "CompiledFunctionBackward", (p, reduction, weight)
