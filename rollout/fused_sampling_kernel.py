"""The Triton kernel behind rollout/fused_sampling.py: one program per row draws one image token.

Kept in its own module, imported only when the kernel runs, so that installs without Triton (it is not a
dependency of the project) never import it, and so that tests can import it under ``TRITON_INTERPRET=1``
(Triton decides between compiling and interpreting when ``@triton.jit`` runs, i.e. at import).

Every step copies the arithmetic of the torch path (policy/sampling.py) operation by operation, with each
result rounded to float32 where torch rounds it, so that the same step keys give the same token:
- CFG ``u + w * (c - u)`` as three rounded operations (launch with ``enable_fp_fusion=False``: an FMA would
  round once);
- temperature as torch does it on the device at hand: CUDA multiplies by the float32 reciprocal of a Python
  scalar divisor (ATen's BinaryDivTrueKernel.cu), the CPU divides (``TEMP_RECIPROCAL``);
- top-k as a binary search for the k-th largest value over the float32 values in sortable-integer order
  (exact: the answer is an element of the row; ties with it are kept, as ``logits < kth`` does);
- top-p as a binary search for the smallest value whose strictly-larger mass is below ``p``;
- Gumbel-max on the same hashed uniforms as :func:`policy.sampling.uniform_from_keys`, ``argmin(log(-log u) -
  x)``, first index on ties like ``torch.argmin``; on CUDA the logs are libdevice's ``logf`` (what torch calls)
  rather than Triton's approximate ``log`` (``ACCURATE``; the interpreter has no libdevice).
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice


@triton.jit
def _hash32(x):
    """policy.sampling.hash32_ on int32 bit patterns (logical right shifts as arithmetic shift + mask;
    -2073254261 is 0x846CA68B as an int32)."""
    x ^= (x >> 16) & 0xFFFF
    x *= 0x7FEB352D
    x ^= (x >> 15) & 0x1FFFF
    x *= -2073254261
    x ^= (x >> 16) & 0xFFFF
    return x


@triton.jit
def _sort_key(x):
    """float32 -> int64 whose integer order is the float order (-0.0 just below +0.0)."""
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF).to(tl.int64)


@triton.jit
def _from_sort_key(key):
    """The inverse of :func:`_sort_key`."""
    k = key.to(tl.int32)
    return tl.where(k >= 0, k, k ^ 0x7FFFFFFF).to(tl.float32, bitcast=True)


@triton.jit
def _log(x, ACCURATE: tl.constexpr):
    if ACCURATE:
        return libdevice.log(x)
    return tl.log(x)


@triton.jit
def _exp(x, ACCURATE: tl.constexpr):
    if ACCURATE:
        return libdevice.exp(x)
    return tl.exp(x)


@triton.jit
def fused_sample_kernel(
    cond_ptr,
    uncond_ptr,
    key_ptr,
    token_ptr,
    logprob_ptr,
    stride_cond,
    stride_uncond,
    n_rows,
    n_codes,
    cfg_weight,
    temperature,
    top_k,
    top_p,
    HAS_UNCOND: tl.constexpr,
    TEMP_RECIPROCAL: tl.constexpr,
    TOP_K: tl.constexpr,
    TOP_P: tl.constexpr,
    GREEDY: tl.constexpr,
    WITH_LOGPROB: tl.constexpr,
    ACCURATE: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Rows ``ROWS * program_id(0) ...``: guided logits -> temperature -> top-k -> top-p -> token (and log-prob).

    ``ROWS`` is 1 on a GPU (a 16,384-code row fills a program's registers); the interpreter runs programs one
    after another in Python, so there a program takes many rows at once. ``temperature`` is the reciprocal when
    ``TEMP_RECIPROCAL``; ``top_k``/``top_p`` are read only when their flag is set. ``GREEDY``: the argmax of the
    guided logits before temperature and filters (the sampler's greedy mode); the log-prob is still that of the
    filtered distribution.
    """
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    codes = tl.arange(0, BLOCK)
    row_ok = rows < n_rows
    valid = row_ok[:, None] & (codes < n_codes)[None, :]
    neg_inf = float("-inf")
    g = tl.load(cond_ptr + rows[:, None] * stride_cond + codes[None, :], mask=valid, other=0.0).to(tl.float32)
    if HAS_UNCOND:
        u = tl.load(uncond_ptr + rows[:, None] * stride_uncond + codes[None, :], mask=valid, other=0.0)
        u = u.to(tl.float32)
        g = u + cfg_weight * (g - u)
    g = tl.where(valid, g, neg_inf)

    if TEMP_RECIPROCAL:
        x = g * temperature
    else:
        x = tl.math.div_rn(g, temperature)

    if TOP_K:
        # per row, the largest t with #(x >= t) >= k, over the sortable keys between the row's min and max
        lo = _sort_key(tl.min(tl.where(valid, x, float("inf")), axis=1))
        hi = _sort_key(tl.max(x, axis=1))
        for _ in range(32):
            mid = lo + (hi - lo + 1) // 2
            enough = tl.sum((x >= _from_sort_key(mid)[:, None]).to(tl.int32), axis=1) >= top_k
            lo = tl.where(enough, mid, lo)
            hi = tl.where(enough, hi, mid - 1)
        x = tl.where(x >= _from_sort_key(lo)[:, None], x, neg_inf)

    if TOP_P:
        # per row, the smallest t whose strictly-larger mass is < p; the kept codes are x >= t
        m = tl.max(x, axis=1)
        e = _exp(x - m[:, None], ACCURATE)
        probs = e / tl.sum(e, axis=1)[:, None]
        lo = _sort_key(tl.min(tl.where(valid, x, float("inf")), axis=1))
        hi = _sort_key(m)
        for _ in range(32):
            mid = lo + (hi - lo) // 2
            below = tl.sum(tl.where(x > _from_sort_key(mid)[:, None], probs, 0.0), axis=1) < top_p
            hi = tl.where(below, mid, hi)
            lo = tl.where(below, lo, mid + 1)
        x = tl.where(x >= _from_sort_key(hi)[:, None], x, neg_inf)

    if GREEDY:
        token = tl.argmax(g, axis=1)
    else:
        code_key = _hash32(codes.to(tl.int32))
        step_key = tl.load(key_ptr + rows, mask=row_ok, other=0)
        bits = (_hash32(step_key[:, None] ^ code_key[None, :]) & 0x7FFFFF) | 0x3F800000
        uniform = bits.to(tl.float32, bitcast=True) - 0.99999994  # 1 - 2**-24, exact in float32
        neg_noise = _log(-_log(uniform, ACCURATE), ACCURATE)
        token = tl.argmin(tl.where(valid, neg_noise - x, float("inf")), axis=1)
    tl.store(token_ptr + rows, token.to(tl.int64), mask=row_ok)

    if WITH_LOGPROB:
        m = tl.max(x, axis=1)
        lse = m + _log(tl.sum(_exp(x - m[:, None], ACCURATE), axis=1), ACCURATE)
        picked = tl.sum(tl.where(codes[None, :] == token[:, None], x, 0.0), axis=1)
        tl.store(logprob_ptr + rows, picked - lse, mask=row_ok)
