"""Our own PyTorch implementation of the spec, and its adapter.

`multi_margin_loss` is a drop-in for F.multi_margin_loss that follows SPEC.md: NaN propagates,
infinities follow IEEE arithmetic term by term, an empty `mean` is NaN, the slope at a kink is 0,
and invalid calls raise errors that name the argument. It runs on any device, with float16 and
bfloat16 computed in float32 (MML-9.3). Written from SPEC.md alone.

Speed comes from vectorised ATen ops applied to blocks of rows that stay in cache: the input is read
from memory once per pass (forward, backward) and the few elementwise steps on a block run in cache.
Backward recomputes z from the input instead of saving N*C intermediates, so it saves O(N) and moves
as little memory as it can. Blocks hold about 4 MiB (BLOCK_ELEMENTS; 2 MiB for an input that may
stay in cache, CACHED_ELEMENTS), and an input of a few blocks is cut into at least four: an ATen
call costs a few microseconds from Python, so smaller blocks lose more to calls than they gain.

Threads. On the CPU the blocks are handed out one at a time to the calling thread and to helper
threads of our own (as many threads in all as torch.get_num_threads(), fewer for small inputs:
THREAD_ELEMENTS), and every ATen op runs single-threaded on the thread that issued it. ATen's own
intra-op parallelism makes each op an OpenMP fork-join with a static split, whose join spins
(libgomp: 300,000 rounds by default) before it sleeps. When a thread of the team is descheduled,
the others spin waiting for it, keeping their cores busy, so the scheduler does not move it onto
one; it runs again only when its own core's time slice comes round. Measured on 2 cores with one
busy process in another session (another scheduling group): a single 16 MB op took 8 ms instead of
0.3 ms, a 4096x1000 forward (12 fork-joins) 92 ms instead of 1 ms, and 1.4 to 1.6 ms with
OMP_WAIT_POLICY=passive or GOMP_SPINCOUNT=0, which libgomp reads only when it loads, so they are no
fix inside a caller's process. Here a descheduled thread delays only the block it holds: the others
take the remaining blocks, and the caller waits (asleep, so its core is free) only for blocks
already started. ATen reads its thread count per thread from OpenMP (omp_get_max_threads), so the
calling thread's count is set to 1 for the length of a call and put back after, and each helper's
once; torch.set_num_threads is not used for this since it also sets the count that threads started
later get. Where the OpenMP runtime that ATen uses cannot be found and checked (another parallel
backend, another platform), ops keep ATen's own parallelism in the calling thread. The threads share
the GIL, which every ATen call releases: the blocks' views are made before the helpers start, so
that a block makes few calls (a thread that has to wait for the GIL sleeps: tens of microseconds in
a VM). Block boundaries depend on the shape alone, so which thread computes a block, and how many
there are, do not change the result. Each pass takes the blocks in the order opposite to the pass
before (ALTERNATE), so that it starts on the rows still in cache.

Memory. Each thread keeps its block buffer between calls (see _buffer: buffers allocated per call
were handed back to the system and faulted in again). The gradient is allocated after every
temporary, so that the memory it leaves is reused, and one of HUGE_PAGE_MIN_BYTES or more, which
glibc maps afresh for every call, is advised for transparent huge pages before its first write: one
fault per 2 MiB instead of per 4 KiB. PyTorch's own switch, THP_MEM_ALLOC_ENABLE=1, is not used (nor
set by the adapter): it applies to every allocation of 2 MiB or more in the process, and its
page-aligned allocations defeat glibc's adaptive mmap threshold, so that even a 16 MB gradient was
mapped and faulted in afresh for every call (measured: 4096x1000 forward+backward twice as slow).
That adaptive threshold also makes the cost of a fresh gradient depend on the process: whether a
16 or 32 MiB gradient comes from memory the heap keeps or is mapped afresh depends on what the
process freed before (measured, 256x32768 forward+backward in five fresh processes: 7.7 to 10.6
ms). keep_freed_memory() fixes glibc's thresholds instead, for the whole process, so gradients up
to MMAP_THRESHOLD reuse the heap's pages (the same five: 5.3 to 7.3 ms); it is an opt-in policy
for the process, like THP_MEM_ALLOC_ENABLE, which the torch-fast adapter takes.

torch is imported inside the functions: the harness imports this module (for the adapter's repros)
without loading any framework.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import queue
import threading

from ._checks import check_args, legacy_reduction, target_range_error
from .torch_backend import TorchBackend

BLOCK_ELEMENTS = 1 << 20  # elements per row block (4 MiB of float32): see the module docstring
# Up to this many elements (32 MiB of float32, the last-level cache here) blocks are half as big: the
# input and its gradient may then partly stay in cache from one pass to the next, and every thread's
# buffer takes room from them (measured: 4096x1000 forward+backward ~5% faster). Bigger inputs
# stream from memory anyway, and there bigger blocks mean fewer calls (16384x4096 ~5-8% faster).
CACHED_ELEMENTS = 1 << 23
THREAD_ELEMENTS = 1 << 19  # least work (elements) that pays for one more thread (waking it, sharing the GIL)
ALTERNATE = True  # each pass takes the blocks in the order opposite to the pass before
HUGE_PAGE = 2 << 20
HUGE_PAGE_MIN_BYTES = 32 << 20  # glibc's largest mmap threshold: it maps anything this big afresh
MMAP_THRESHOLD = 64 << 20  # keep_freed_memory: blocks this big or bigger are mapped afresh
TRIM_THRESHOLD = 128 << 20  # keep_freed_memory: free memory the heap keeps before giving it back
ATEN_GRAIN = 1 << 15  # ATen runs an op on fewer elements than this on one thread anyway (at::internal::GRAIN_SIZE)


def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None, reduce=None,
                      reduction="mean"):
    """The multi-class margin loss of SPEC.md, with F.multi_margin_loss's signature and autograd."""
    import torch

    reduction = legacy_reduction(size_average, reduce, reduction)
    integer = not (target.is_floating_point() or target.is_complex() or target.dtype == torch.bool)
    C = check_args(input.shape, target.shape, integer, target.dtype, p, reduction,
                   None if weight is None else weight.shape)
    if not input.is_floating_point():
        raise TypeError(f"multi_margin_loss: input must be a floating-point tensor, got dtype {input.dtype}")
    with _single_threaded(input) as threads:
        t = target.reshape(-1, 1).long()  # (N, 1): the index shape of gather and scatter
        if t.numel():
            low, high = torch.aminmax(t)
            if low.item() < 0 or high.item() >= C:
                raise target_range_error(t[(t < 0) | (t >= C)][0].item(), C)
        loss = _autograd_function().apply(input, t, weight, p, float(margin), reduction, threads)
    return loss.reshape(target.shape) if reduction == "none" else loss


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process (MMAP_THRESHOLD, TRIM_THRESHOLD; see
    the module docstring): memory a call frees is kept for the next one instead of being handed back
    and faulted in again. Process-wide, so opt-in. False where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD) and mallopt(m_trim_threshold, TRIM_THRESHOLD))


# --- threads --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _single_threaded(x):
    """Yields the threads a call on x may use (torch.get_num_threads(), the user's setting); where
    ATen would fork for x, the calling thread's OpenMP count is 1 inside, and put back after. 1
    where ATen runs x's ops on one thread anyway (small inputs, other devices), and where the
    runtime is unknown: there ATen keeps its own parallelism (see the module docstring)."""
    import torch

    threads = torch.get_num_threads() if x.is_cpu and x.numel() > ATEN_GRAIN else 1
    omp = _openmp() if threads > 1 else None
    if omp is None:
        yield 1
        return
    omp.omp_set_num_threads(1)
    try:
        yield threads
    finally:
        omp.omp_set_num_threads(threads)


@functools.cache
def _openmp_candidates():
    """The OpenMP runtimes loaded in this process (Linux: from /proc/self/maps), then the global scope."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                name = os.path.basename(path)
                if name.startswith(("libgomp", "libiomp", "libomp")) and ".so" in name and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    libs = []
    for path in [*paths, None]:
        try:
            lib = ctypes.CDLL(path)
            lib.omp_set_num_threads.argtypes, lib.omp_get_max_threads.restype = [ctypes.c_int], ctypes.c_int
        except (OSError, AttributeError):
            continue
        libs.append(lib)
    return libs


@functools.cache
def _aten_uses_openmp() -> bool:
    import torch

    return "OpenMP" in torch.__config__.parallel_info().split("parallel backend:")[-1]


_OPENMP = []  # [the runtime ATen uses] once found and checked; [None] once known to be absent


def _openmp():
    """The OpenMP runtime whose per-thread thread count ATen reads, or None. Checked by setting it and
    reading it back through torch.get_num_threads(), which ATen answers from that runtime."""
    if _OPENMP:
        return _OPENMP[0]
    import torch

    if not _aten_uses_openmp():
        _OPENMP.append(None)
        return None
    n = torch.get_num_threads()  # also ATen's first-use setup of this thread's count
    if n == 1:
        return None  # no way to tell a runtime that works from one that does nothing; ask again later
    for lib in _openmp_candidates():
        before = lib.omp_get_max_threads()
        lib.omp_set_num_threads(1)
        found = torch.get_num_threads() == 1
        lib.omp_set_num_threads(before)
        if found:
            _OPENMP.append(lib)
            return lib
    _OPENMP.append(None)
    return None


class _Job:
    """Blocks 0..n-1 of one call, claimed one at a time by whichever thread is free."""

    __slots__ = ("fn", "n", "next", "busy", "cond", "error", "inference")

    def __init__(self, fn, n: int, inference: bool):
        self.fn, self.n, self.next, self.busy, self.error = fn, n, 0, 0, None
        self.cond = threading.Condition(threading.Lock())
        self.inference = inference

    def work(self):
        scratch = {}  # this thread's buffers for this call
        cond = self.cond
        while True:
            with cond:
                fn, i = self.fn, self.next
                if fn is None or i >= self.n:
                    return
                self.next, self.busy = i + 1, self.busy + 1
            try:
                fn(i, scratch)
            except BaseException as e:  # noqa: BLE001 (handed to the caller, which raises it)
                with cond:
                    self.error = self.error or e
                    self.next = self.n  # no more blocks
            finally:
                with cond:
                    self.busy -= 1
                    if not self.busy:
                        cond.notify_all()


class _Pool:
    """Helper threads, started on first use and kept; each runs its ATen ops single-threaded."""

    def __init__(self):
        self.jobs = queue.SimpleQueue()
        self.size = 0
        self.lock = threading.Lock()

    def grow(self, n: int, omp):
        with self.lock:
            while self.size < n:
                threading.Thread(target=_helper, args=(self.jobs, omp), name=f"torch-fast-{self.size}",
                                 daemon=True).start()
                self.size += 1


def _helper(jobs, omp):
    import torch

    torch.get_num_threads()  # ATen sets this thread's OpenMP count on first use; override it after
    omp.omp_set_num_threads(1)
    torch.set_grad_enabled(False)  # thread-local: the blocks write into buffers with out= and in place
    while True:
        job = jobs.get()
        if job.inference:  # the caller's buffers are inference tensors: in-place ops need the mode
            with torch.inference_mode():
                job.work()
        else:
            job.work()


_POOL = [_Pool()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _POOL.__setitem__(0, _Pool()))  # threads do not survive fork


_BACKWARDS = [False]


def _run_blocks(n: int, fn, threads: int):
    """fn(i, scratch) for i in range(n), on `threads` threads at most (the caller's included); a
    thread's `scratch` dict persists over the blocks it runs in this call. Each call takes the blocks
    in the order opposite to the call before (ALTERNATE): a pass then starts on the rows the last
    pass left in cache (a backward on what its forward read last, a forward on what the last
    backward or forward read last)."""
    if ALTERNATE:
        backwards = _BACKWARDS[0] = not _BACKWARDS[0]
        if backwards:
            fn = functools.partial(_reversed_block, fn, n - 1)
    if threads <= 1 or n <= 1:
        scratch = {}
        for i in range(n):
            fn(i, scratch)
        return
    import torch

    job = _Job(fn, n, torch.is_inference_mode_enabled())
    pool = _POOL[0]
    helpers = min(threads, n) - 1
    pool.grow(helpers, _OPENMP[0])
    for _ in range(helpers):
        pool.jobs.put(job)
    job.work()
    with job.cond:
        job.fn = None  # a helper that comes late finds nothing, and the job keeps no tensor alive
        while job.busy:  # only blocks already started: asleep, so a descheduled helper gets this core
            job.cond.wait()
    if job.error is not None:
        raise job.error


def _reversed_block(fn, last, i, scratch):
    fn(last - i, scratch)


def _buffers(like, threads: int, blocks: int, rows: int, C: int):
    """A function giving each thread that asks its own (rows, C) buffer of like's dtype (_buffer)."""
    if _keeps(like, rows * C):
        return functools.partial(_kept_buffer, like.dtype, rows, C)
    bufs = like.new_empty(max(1, min(threads, blocks)), rows, C).unbind(0)
    taken = itertools.count()
    return lambda: bufs[next(taken)]


def _buffer(like, rows: int, C: int):
    """A (rows, C) buffer of like's dtype for the calling thread. On the CPU each thread keeps its
    buffer between calls: allocated per call, buffers are handed back to the system when freed (by
    glibc trimming the top of its heap, or a helper thread's arena) and faulted in again on the next
    call (measured: from none to ~550 faults, +0.8 ms, on a 1 ms 4096x1000 forward, and up to ~2,500
    on forward+backward, depending on what else the heap holds). Small buffers (ATEN_GRAIN elements
    or fewer) come from the heap's free lists anyway, and ones of more than 2 * BLOCK_ELEMENTS (a
    row of very many classes) are not worth keeping."""
    if _keeps(like, rows * C):
        return _kept_buffer(like.dtype, rows, C)
    return like.new_empty(rows, C)


def _keeps(like, elements: int) -> bool:
    return like.is_cpu and ATEN_GRAIN < elements <= 2 * BLOCK_ELEMENTS


_KEPT = threading.local()


def _kept_buffer(dtype, rows: int, C: int):
    """This thread's kept (rows, C) buffer of dtype: one a thread (16 MiB at most), grown as needed,
    made outside inference mode so that it serves calls in and out of it."""
    import torch

    kept = getattr(_KEPT, "buffer", None)
    if kept is not None and kept[0] == (dtype, rows, C):
        return kept[1]  # the view too is kept: making one is a call into torch (see _split)
    nbytes = rows * C * dtype.itemsize
    raw = None if kept is None else kept[2]
    if raw is None or len(raw) < nbytes:
        with torch.inference_mode(False):
            raw = torch.empty(nbytes, dtype=torch.uint8)
    view = raw[:nbytes].view(dtype).view(rows, C)
    _KEPT.buffer = ((dtype, rows, C), view, raw)
    return view


def _threads_for(threads: int, elements: int) -> int:
    return max(1, min(threads, elements // THREAD_ELEMENTS))


def _block_rows(N: int, C: int) -> int:
    """Rows per block, at least one: about BLOCK_ELEMENTS elements, half that for an input of up to
    CACHED_ELEMENTS (see there), and at least four blocks where each still holds a quarter of
    BLOCK_ELEMENTS, so that threads share a small input evenly. The shape alone decides, not the
    threads."""
    elements = N * C
    size = BLOCK_ELEMENTS if elements > CACHED_ELEMENTS else BLOCK_ELEMENTS // 2
    blocks = max(1, -(-elements // size), min(4, elements // max(1, BLOCK_ELEMENTS // 4)))
    return max(1, min(N, -(-N // blocks)))


def _block_bounds(N: int, rows: int) -> list[int]:
    """The blocks' first rows, and N."""
    return [*range(0, N, rows), N]


def _split(bounds, *tensors):
    """For each block, the tuple of the tensors' views on its rows. Made at once, before any helper
    starts: every call into torch lets another thread take the GIL, and one that then has to wait
    for it sleeps (tens of microseconds in a VM), so the blocks themselves make as few as they can."""
    sizes = [e - r for r, e in zip(bounds, bounds[1:])]
    # unsafe_: views that autograd does not track, which is all a pass under no_grad needs
    return list(zip(*(a.unsafe_split_with_sizes(sizes) for a in tensors)))


# --- the loss -------------------------------------------------------------------------------------


def _row_sums(x, t, T, p, w_per_term, threads=1):
    """S_n = sum over i != y of h_i^p (each term times w[y] when given), h_i = max(0, x_i - T_n)."""
    N, C = x.shape
    rows = _block_rows(N, C)
    S = T.new_empty(N)
    if rows >= N:  # one block: no views, no threads
        _sums_block(x, t, T, S, w_per_term, _buffer(T, N, C), p)
        return S
    blocks = -(-N // rows)
    threads = _threads_for(threads, N * C)
    buffer = _buffers(T, threads, blocks, rows, C)
    parts = _split(_block_bounds(N, rows), x, t, T, S, *(() if w_per_term is None else (w_per_term,)))

    def block(i, scratch):
        h = scratch.get("h")
        if h is None:
            h = scratch["h"] = buffer()  # one block at a time, in cache
        xb, tb, Tb, Sb, *wb = parts[i]
        _sums_block(xb, tb, Tb, Sb, wb[0] if wb else None, h if len(xb) == rows else h[: len(xb)], p)

    _run_blocks(blocks, block, threads)
    return S


def _sums_block(xb, tb, Tb, Sb, wb, h, p):
    """One block of _row_sums, with h a buffer of xb's shape (in cache)."""
    import torch

    torch.sub(xb, Tb, out=h)  # z = margin - x[y] + x[i]: the one read of x
    h.clamp_min_(0)  # max(0, z), NaN stays NaN (MML-7.1)
    if p == 2:
        h.mul_(h)
    if wb is not None:
        h.mul_(wb)  # term by term, so inf * 0 is NaN (MML-2.4, MML-7.3)
    h.scatter_(1, tb, 0)  # the target's own term is not in the sum (MML-2.2)
    torch.sum(h, 1, out=Sb)


def _forward(x, t, weight, p, margin, reduction, threads=1):
    """The loss, and what backward needs: T_n = x[y] - margin, the unweighted row sums (None when
    the terms were weighted one by one) and w[y]."""
    import torch

    N, C = x.shape
    cdt = torch.float64 if x.dtype == torch.float64 else torch.float32  # no float16 overflow (MML-9.3)
    T = x.gather(1, t).to(cdt).sub_(margin)  # z_i = x_i - T_n
    wy = None if weight is None else weight.to(cdt)[t]
    if wy is not None and not wy.isfinite().all():
        # an infinite or NaN weight times a zero term is NaN: weigh each term
        losses, S = _row_sums(x, t, T, p, wy, threads) / C, None
    else:
        S = _row_sums(x, t, T, p, None, threads)
        losses = S / C if wy is None else S * wy.view(N) / C
    if reduction == "none":
        out = losses
    elif reduction == "sum":
        out = losses.sum()
    else:
        out = losses.sum() / N if N else losses.new_tensor(float("nan"))  # the mean of nothing (MML-6.3)
    return out.to(x.dtype), T, S, wy


def _backward(grad_out, x, t, T, S, wy, p, reduction, threads=1):
    """The input gradient (MML-8): for i != y, g * w[y] * p * h_i^(p-1) * [z_i > 0] / D, and the
    target element minus the sum of the others."""
    N, C = x.shape
    if N == 0:
        return x.new_empty(N, C)
    # g w[y] p / D: one number for every row unless the output's cotangent or the weight varies by row
    scale = grad_out.to(T.dtype).reshape(-1, 1) * (p / (C * N if reduction == "mean" else C))
    if wy is not None:
        scale = scale * wy
    per_row = len(scale) > 1
    # p = 1 has a fast path where every slope is exactly 0 or 1 and every scale finite: no z is NaN
    # (no row sum is) and no scale infinite. Elsewhere IEEE rules make the NaNs (MML-8.4). Each
    # S_n * scale_n is finite when their sum is (S_n >= 0), or with one scale, when sum(S) * scale is.
    if p != 1 or S is None:
        mask_path = False
    elif per_row:
        mask_path = bool((S.view(N, 1) * scale).sum().isfinite())
    else:
        mask_path = bool((S.sum() * scale).isfinite())
    neg_scale = scale.neg() if mask_path else None
    rows = _block_rows(N, C)
    blocks = -(-N // rows)
    threads = _threads_for(threads, N * C)
    wide = x.dtype != T.dtype  # float16 and bfloat16: computed in float32, then rounded
    buffer = _buffers(T, threads, blocks, rows, C) if wide else None
    others = T.new_empty(N, 1)  # the target elements
    # The gradient comes last: with no temporary placed above it on the heap, the memory it leaves
    # when dropped is reused by the next call instead of being handed back and faulted in again.
    grad = x.new_empty(N, C)
    if grad.is_cpu and grad.nbytes >= HUGE_PAGE_MIN_BYTES:
        _advise_huge_pages(grad)
    if blocks == 1:  # no views, no threads
        _grad_block(x, t, T, scale, neg_scale, grad, others, _buffer(T, N, C) if wide else grad, p, mask_path)
        return grad
    row_scales = [a for a in (scale, neg_scale) if per_row and a is not None]  # else one for all rows
    parts = _split(_block_bounds(N, rows), x, t, T, grad, others, *row_scales)

    def block(i, scratch):
        xb, tb, Tb, gb, ob, *sbs = parts[i]
        d = gb
        if wide:
            d = scratch.get("d")
            if d is None:
                d = scratch["d"] = buffer()
            d = d[: len(gb)]
        _grad_block(xb, tb, Tb, sbs[0] if sbs else scale, sbs[1] if len(sbs) > 1 else neg_scale, gb, ob, d, p,
                    mask_path)

    _run_blocks(blocks, block, threads)
    return grad


@functools.cache
def _madvise():
    """libc's madvise and MADV_HUGEPAGE, or None (not Linux, no such call)."""
    import mmap
    import sys

    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn, mmap.MADV_HUGEPAGE


def _advise_huge_pages(a):
    """Ask the kernel to back the whole 2 MiB pages inside a's (untouched) memory with transparent
    huge pages: a fresh gradient is faulted in a 2 MiB page at a time instead of 4 KiB. Only the
    gradient's own memory is advised, and only when it is so big (HUGE_PAGE_MIN_BYTES) that glibc
    maps it fresh for every call anyway; advice only, so a refusal changes nothing."""
    found = _madvise()
    if found is None:
        return
    madvise, advice = found
    start = -(-a.data_ptr() // HUGE_PAGE) * HUGE_PAGE
    end = (a.data_ptr() + a.nbytes) // HUGE_PAGE * HUGE_PAGE
    if end > start:
        madvise(start, end - start, advice)


def _grad_block(xb, tb, Tb, sb, nsb, gb, ob, d, p, mask_path):
    """One block of _backward: the gradient into gb, through d (gb itself, or a float32 buffer of
    its shape for float16 and bfloat16), the target elements through ob."""
    import torch

    if mask_path:
        torch.gt(xb, Tb, out=d)  # [z > 0] as 0 or 1: 0 at the kink (MML-8.2)
        d.scatter_(1, tb, 0)
        torch.sum(d, 1, keepdim=True, out=ob)  # how many are active
        d.mul_(sb)
        ob.mul_(nsb)  # minus the sum of the others: -(K * s), exactly
    else:
        torch.sub(xb, Tb, out=d)
        d.clamp_min_(0)  # h, NaN stays NaN
        if p == 1:
            d.ceil_().clamp_max_(1)  # the slope: 1, 0 (kink and inactive) or NaN
        d.mul_(sb)  # an infinite scale times a zero slope is NaN (MML-8.4)
        d.scatter_(1, tb, 0)
        torch.sum(d, 1, keepdim=True, out=ob)
        ob.neg_()
    d.scatter_(1, tb, ob)  # minus the sum of the others (MML-8.3)
    if d is not gb:
        gb.copy_(d)


@functools.cache
def _autograd_function():
    """The torch.autograd.Function, defined on first use so that importing this module imports no torch."""
    import torch

    class MultiMarginLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, input, t, weight, p, margin, reduction, threads):
            x = input if input.dim() == 2 else input.reshape(1, -1)
            out, T, S, wy = _forward(x, t, weight, p, margin, reduction, threads)
            ctx.save_for_backward(input, t, T, S, wy)
            ctx.p, ctx.reduction = p, reduction
            return out

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, grad_out):
            input, t, T, S, wy = ctx.saved_tensors
            x = input if input.dim() == 2 else input.reshape(1, -1)
            with _single_threaded(x) as threads:
                grad = _backward(grad_out, x, t, T, S, wy, ctx.p, ctx.reduction, threads)
            return grad if input.dim() == 2 else grad.view(input.shape), None, None, None, None, None, None

    return MultiMarginLoss


class TorchFastBackend(TorchBackend):
    name = "torch-fast"
    modes = ("eager",)
    ours = True
    description = ("our blocked, vectorised PyTorch implementation (impls/torch_fast.py), its own threads, "
                   "freed memory kept by the heap (keep_freed_memory)")
    fn_import = "from impls.torch_fast import multi_margin_loss"
    fn_expr = "multi_margin_loss"

    def load(self) -> None:
        if self.fn is None:
            self.fn = multi_margin_loss
            keep_freed_memory()
        super().load()
