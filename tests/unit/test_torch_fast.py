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


def golden_failures(errors_raise: bool) -> list[str]:
    """Every golden case through the backend, judged; the failures. Error cases must raise when
    `errors_raise`, else are skipped (they raise before any block runs)."""
    backend = torch_fast.TorchFastBackend()
    backend.load()
    failures = []
    for case in load_golden():
        if case.error:
            if errors_raise:
                with pytest.raises(Exception):  # noqa: B017 (the message is checked by the golden run)
                    backend.run(call_for(case, False), "cpu", "eager", False)
            continue
        out = backend.run(call_for(case, True), "cpu", "eager", True)
        for check, verdict in (("value", compare.judge_value(case, out.value)),
                               ("grad", compare.judge_grad(case, out.grad))):
            if verdict["verdict"] != "pass":
                failures.append(f"{case.key} {check}: {verdict['detail']}")
    return failures


def test_every_golden_case_in_small_blocks(tiny_blocks):
    failures = golden_failures(errors_raise=True)
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


# --- threads: the blocks shared by the caller and helper threads, each running single-threaded ops ---


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def threaded(monkeypatch, two_threads):
    """Blocks of a few rows handed to two threads whatever the input's size, and huge-page advice on
    every gradient: the paths a big input takes, on inputs small enough to judge exactly."""
    if torch_fast._openmp() is None:
        pytest.skip("no OpenMP runtime to run ATen ops single-threaded: the pool is not used here")
    monkeypatch.setattr(torch_fast, "BLOCK_ELEMENTS", 7)
    monkeypatch.setattr(torch_fast, "THREAD_ELEMENTS", 1)
    monkeypatch.setattr(torch_fast, "ATEN_GRAIN", 0)
    monkeypatch.setattr(torch_fast, "HUGE_PAGE_MIN_BYTES", 0)


def record_blocks(monkeypatch):
    """Wrap the block functions to record (thread, ATen's thread count there) for every block run."""
    import threading

    seen = []
    for name in ("_sums_block", "_grad_block"):
        inner = getattr(torch_fast, name)

        def wrapped(*args, _inner=inner):
            seen.append((threading.get_ident(), torch.get_num_threads()))
            return _inner(*args)

        monkeypatch.setattr(torch_fast, name, wrapped)
    return seen


def test_every_golden_case_on_threads(threaded):
    failures = golden_failures(errors_raise=False)  # error cases raise before any block runs
    assert not failures, "\n".join(failures)
    assert torch.get_num_threads() == 2  # the caller's count is put back after every call


@pytest.mark.parametrize("p", [1, 2])
def test_helpers_share_the_blocks_and_run_ops_single_threaded(threaded, monkeypatch, p):
    seen = record_blocks(monkeypatch)
    gen = torch.Generator().manual_seed(p)
    x = torch.randn(400, 64, generator=gen, requires_grad=True)
    t = torch.randint(0, 64, (400,), generator=gen)
    for _ in range(20):  # a helper that wakes late may find the first calls done
        torch.autograd.grad(torch_fast.multi_margin_loss(x, t, p=p), x)
        if len({thread for thread, _ in seen}) > 1:
            break
    assert len({thread for thread, _ in seen}) > 1, "no block ran on a helper thread"
    assert {count for _, count in seen} == {1}, "an ATen op could fork an OpenMP team inside a block"
    assert torch.get_num_threads() == 2


def test_threads_do_not_change_the_result(monkeypatch, two_threads):
    if torch_fast._openmp() is None:
        pytest.skip("no OpenMP runtime: the pool is not used here")
    monkeypatch.setattr(torch_fast, "BLOCK_ELEMENTS", 512)
    monkeypatch.setattr(torch_fast, "THREAD_ELEMENTS", 1)
    monkeypatch.setattr(torch_fast, "ATEN_GRAIN", 0)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(300, 50, generator=gen)
    x[7, 3], x[11, 0] = float("nan"), float("inf")
    t = torch.randint(0, 50, (300,), generator=gen)
    w = torch.rand(50, generator=gen)
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        xr = x.clone().requires_grad_(True)
        for p, kw in ((1, {}), (2, {"weight": w}), (1, {"reduction": "none"})):
            out = torch_fast.multi_margin_loss(xr, t, p=p, **kw)
            results.append((out.detach(), torch.autograd.grad(out, xr, torch.ones_like(out))[0]))
    half = len(results) // 2
    for (v1, g1), (v2, g2) in zip(results[:half], results[half:]):
        assert torch.equal(v1.nan_to_num(7.0), v2.nan_to_num(7.0))
        assert torch.equal(g1.nan_to_num(7.0), g2.nan_to_num(7.0))


def test_an_error_on_a_helper_reaches_the_caller(threaded, monkeypatch):
    import threading

    main = threading.get_ident()
    inner = torch_fast._sums_block

    def failing(*args):
        if threading.get_ident() != main:
            raise RuntimeError("boom on a helper")
        return inner(*args)

    monkeypatch.setattr(torch_fast, "_sums_block", failing)
    x, t = torch.randn(400, 64), torch.randint(0, 64, (400,))
    with pytest.raises(RuntimeError, match="boom on a helper"):
        for _ in range(50):  # until a helper takes a block
            torch_fast.multi_margin_loss(x, t)
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(torch_fast, "_sums_block", inner)
    torch.testing.assert_close(torch_fast.multi_margin_loss(x, t), torch.nn.functional.multi_margin_loss(x, t))


def test_thread_count_put_back_after_an_invalid_call(threaded):
    with pytest.raises(IndexError, match="target"):
        torch_fast.multi_margin_loss(torch.zeros(400, 64), torch.full((400,), 64))
    assert torch.get_num_threads() == 2


def test_inference_mode_on_threads(threaded):
    x, t = torch.randn(400, 64), torch.randint(0, 64, (400,))
    with torch.inference_mode():
        got = torch_fast.multi_margin_loss(x, t, reduction="none")
    torch.testing.assert_close(got, torch.nn.functional.multi_margin_loss(x, t, reduction="none"))


def test_huge_page_advice_on_a_big_gradient(monkeypatch):
    monkeypatch.setattr(torch_fast, "HUGE_PAGE_MIN_BYTES", 0)
    x = torch.randn(1024, 1024, requires_grad=True)  # 4 MiB: holds a whole 2 MiB page
    t = torch.randint(0, 1024, (1024,))
    ours = torch.autograd.grad(torch_fast.multi_margin_loss(x, t), x)[0]
    theirs = torch.autograd.grad(torch.nn.functional.multi_margin_loss(x, t), x)[0]
    torch.testing.assert_close(ours, theirs)


def test_block_and_thread_policy():
    B = torch_fast.BLOCK_ELEMENTS
    assert torch_fast._block_rows(32, 10) == 32  # a small input is one block
    rows = torch_fast._block_rows(4096, 1000)  # a few MiB: at least four blocks, to share
    assert -(-4096 // rows) >= 4
    assert torch_fast._block_rows(16384, 4096) * 4096 <= B  # a big one: blocks of at most B
    assert torch_fast._block_rows(1, 10 * B) == 1
    assert torch_fast._block_rows(0, 5) >= 0
    assert torch_fast._threads_for(2, 320) == 1  # waking a helper costs more than it saves
    assert torch_fast._threads_for(2, 4096 * 1000) == 2
    assert torch_fast._threads_for(1, 4096 * 1000) == 1  # never more than torch.get_num_threads()
