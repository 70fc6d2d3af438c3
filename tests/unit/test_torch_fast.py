"""Our PyTorch implementation beyond the golden run: row blocks, saved tensors, drop-in behaviour."""

import numpy as np
import pytest

from conformance import compare
from conformance.caseio import load_golden
from conformance.runner import call_for

torch = pytest.importorskip("torch")
torch_fast = pytest.importorskip("impls.torch_fast")


@pytest.fixture
def tiny_blocks(monkeypatch):
    """Blocks of a few rows, so every golden case crosses block boundaries (the golden run uses one)."""
    monkeypatch.setattr(torch_fast, "BLOCK_ELEMENTS", 7)


def test_every_golden_case_in_small_blocks(tiny_blocks):
    backend = torch_fast.TorchFastBackend()
    backend.load()
    failures = []
    for case in load_golden():
        if case.error:
            with pytest.raises(Exception):  # noqa: B017 (the message is checked by the golden run)
                backend.run(call_for(case, False), "cpu", "eager", False)
            continue
        out = backend.run(call_for(case, True), "cpu", "eager", True)
        for check, verdict in (("value", compare.judge_value(case, out.value)),
                               ("grad", compare.judge_grad(case, out.grad))):
            if verdict["verdict"] != "pass":
                failures.append(f"{case.key} {check}: {verdict['detail']}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("p", [1, 2])
def test_backward_saves_no_n_by_c_intermediates(p):
    N, C = 64, 50
    x = torch.randn(N, C, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        torch_fast.multi_margin_loss(x, torch.randint(0, C, (N,)), p=p, weight=torch.rand(C))
    big = [tuple(t.shape) for t in saved if t.numel() > N and t.data_ptr() != x.data_ptr()]
    assert not big, f"saved N*C intermediates {big}"


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("p", [1, 2])
def test_agrees_with_torch_on_ordinary_inputs(tiny_blocks, p, reduction):
    gen = torch.Generator().manual_seed(p)
    x = torch.randn(37, 11, dtype=torch.float64, generator=gen, requires_grad=True)
    t = torch.randint(0, 11, (37,), generator=gen)
    w = torch.rand(11, dtype=torch.float64, generator=gen)
    kw = dict(p=p, margin=0.7, weight=w, reduction=reduction)
    ours, theirs = torch_fast.multi_margin_loss(x, t, **kw), torch.nn.functional.multi_margin_loss(x, t, **kw)
    cot = torch.randn(ours.shape, dtype=torch.float64, generator=gen)
    np.testing.assert_allclose(ours.detach(), theirs.detach(), rtol=1e-12)
    np.testing.assert_allclose(torch.autograd.grad(ours, x, cot)[0], torch.autograd.grad(theirs, x, cot)[0],
                               rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bad, argument", [
    ({"p": 3}, "p"), ({"reduction": "avg"}, "reduction"), ({"weight": torch.ones(4)}, "weight"),
    ({"target": torch.tensor([0, 5])}, "target"), ({"target": torch.tensor([0, -1])}, "target"),
    ({"target": torch.tensor([0.0, 1.0])}, "target"), ({"input": torch.zeros(2, 0)}, "input"),
])
def test_errors_name_the_argument(bad, argument):
    kw = {"input": torch.zeros(2, 3), "target": torch.tensor([0, 1]), **bad}
    with pytest.raises((ValueError, TypeError, IndexError), match=argument):
        torch_fast.multi_margin_loss(**kw)
