"""The Triton kernels of impls/triton_backend.py (imported only where they run: importing triton
needs TRITON_INTERPRET decided first, and the harness process imports no framework)."""

import triton
import triton.language as tl


@triton.jit
def _widen(raw, BF16: tl.constexpr, ACC: tl.constexpr):
    """A loaded element in the accumulation dtype. bfloat16 travels as its bits (int16): the
    widening is then an exact shift, subnormals included, on GPUs and the interpreter alike."""
    if BF16:
        return (raw.to(tl.uint16, bitcast=True).to(tl.uint32) << 16).to(tl.float32, bitcast=True).to(ACC)
    return raw.to(ACC)


@triton.jit
def _narrow(v, out_ptr, BF16: tl.constexpr):
    """A float32 result in the output's dtype, rounded to nearest even (bfloat16 as its bits)."""
    if BF16:
        b = v.to(tl.uint32, bitcast=True)
        rounded = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).to(tl.uint16)
        bits = tl.where(v != v, 0x7FC0, rounded).to(tl.uint16)  # keep NaN a NaN
        return bits.to(tl.int16, bitcast=True)
    return v.to(out_ptr.dtype.element_ty)


@triton.jit
def forward_kernel(x_ptr, t_ptr, w_ptr, margin_ptr, loss_ptr, grad_ptr, N, C, stride, grad_divisor,
                   P: tl.constexpr, HAS_WEIGHT: tl.constexpr, WITH_GRAD: tl.constexpr, BF16: tl.constexpr,
                   ACC: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """Per-row losses for a tile of BLOCK_N rows, the columns in BLOCK_C steps; WITH_GRAD also
    writes the gradient of sum(losses) * C / grad_divisor."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    base = rows.to(tl.int64) * stride
    t = tl.load(t_ptr + rows, mask=row_ok, other=0)
    valid = (t >= 0) & (t < C)
    t_safe = tl.where(valid, t, 0)  # load from somewhere harmless; the row is NaN anyway (MML-10.9)
    margin = tl.load(margin_ptr)  # a tensor, not a scalar argument: those travel as float32
    m_xy = margin - _widen(tl.load(x_ptr + base + t_safe, mask=row_ok, other=0), BF16, ACC)
    if HAS_WEIGHT:
        wy = _widen(tl.load(w_ptr + t_safe, mask=row_ok, other=0), BF16, ACC)
    else:
        wy = tl.full((BLOCK_N,), 1.0, ACC)
    inv_d = 1.0 / grad_divisor.to(ACC)  # d loss / d term for a unit cotangent is w[y] * inv_d
    total = tl.zeros((BLOCK_N,), ACC)
    slope_sum = tl.zeros((BLOCK_N,), ACC)
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        inside = row_ok[:, None] & (cols < C)[None, :]
        other = inside & (cols[None, :] != t[:, None])  # the target's own term is left out (MML-2.2)
        offsets = base[:, None] + cols[None, :]
        z = m_xy[:, None] + _widen(tl.load(x_ptr + offsets, mask=inside, other=0), BF16, ACC)
        h = tl.maximum(z, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN stays NaN (MML-7.1)
        term = wy[:, None] * (h if P == 1 else h * h)  # term by term: inf * 0 is NaN (MML-2.4)
        total += tl.sum(tl.where(other, term, 0.0), axis=1)
        if WITH_GRAD:
            if P == 1:
                slope = tl.where(z > 0, 1.0, 0.0)  # 0 at the kink (MML-8.2)
                slope = tl.where(z != z, z, slope)  # NaN stays NaN (MML-8.4)
            else:
                slope = 2.0 * h
            # slope times w[y] first: w[y] / D alone could underflow to 0 and turn an infinite
            # slope into NaN; an infinite w[y] times a 0 slope is NaN, as it should be (MML-8.4)
            d = tl.where(other, (slope * wy[:, None]) * inv_d, 0.0)
            slope_sum += tl.sum(d, axis=1)
            tl.store(grad_ptr + offsets, _narrow(d, grad_ptr, BF16), mask=inside)
    tl.store(loss_ptr + rows, tl.where(valid, total / C.to(ACC), float("nan")), mask=row_ok)
    if WITH_GRAD:  # the target element is minus the sum of the others (MML-8.3)
        target_grad = tl.where(valid, -slope_sum, float("nan"))
        tl.store(grad_ptr + base + t_safe, _narrow(target_grad, grad_ptr, BF16), mask=row_ok)
