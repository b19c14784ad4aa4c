"""The image-token sampling distribution, as pure batched functions over ``[..., V]`` logits.

One definition serves the sampler (rollout/image_sampler.py) and the learner's "guided" log-prob mode, so the
behaviour distribution and the one the loss re-computes cannot drift apart. The order of operations is
transformers' for ``generate(generation_mode="image")``: classifier-free guidance on raw logits
(``ClassifierFreeGuidanceLogitsProcessor``), then temperature, then top-k, then top-p.

Randomness is counter-based (:func:`sample_from_logits`): the noise for a request is a hash of (its seed, the
step, the code), so a request's image depends on its seed only, not on the batch it shares or its row in it,
and the same function can run inside a CUDA graph.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Optional, Protocol, Union

import torch


class SamplingParams(Protocol):
    """What the distribution depends on (rollout.config.ImageSamplingConfig satisfies it)."""

    cfg_weight: float
    temperature: float
    top_k: int
    top_p: float


def cfg_combine(cond: torch.Tensor, uncond: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance: ``uncond + weight * (cond - uncond)`` (weight 1 = the conditional alone).

    Linear, so it also applies to anything the logits are an affine function of (the sampler combines the
    generation head's last hidden layer before its final projection).
    """
    return uncond + weight * (cond - uncond)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits (ties with the k-th are kept, as in transformers); the rest become -inf.
    ``k`` = 0 or >= V: no filtering."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely codes whose probability reaches ``p``
    (a code is kept when the mass strictly above it is < p, so the most likely code always stays).
    ``p`` >= 1: no filtering."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_above = torch.cumsum(probs, dim=-1) - probs
    drop_sorted = mass_above >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, then top-k, then top-p (transformers' warper order), in float32."""
    out = logits.float()
    if params.temperature != 1.0:
        out = out / params.temperature
    out = top_k_filter(out, params.top_k)
    return top_p_filter(out, params.top_p)


def guided_logits(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """The logits the sampler draws from (-inf where filtered out): CFG combine, temperature, top-k, top-p."""
    return filter_logits(cfg_combine(cond_logits.float(), uncond_logits.float(), params.cfg_weight), params)


def sampling_logprobs(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Log-probabilities ``[..., V]`` of the exact distribution sampled from (-inf on filtered-out codes)."""
    return torch.log_softmax(guided_logits(cond_logits, uncond_logits, params), dim=-1)


def draw_tokens(
    guided: torch.Tensor, params: SamplingParams, step_key: Optional[torch.Tensor], greedy: bool, with_logprobs: bool
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """One code per row of guided logits ``[B, V]``: ``(tokens [B], logprobs [B] | None)``, drawn after temperature
    and filters with the requests' noise of this step (``greedy``: the argmax of ``guided`` itself, no noise);
    log-probs are those of the filtered distribution. The torch definition the fused kernel is tested against."""
    if greedy and not with_logprobs:
        return guided.argmax(-1), None
    filtered = filter_logits(guided, params)
    tokens = guided.argmax(-1) if greedy else sample_from_logits(filtered, step_key)
    if not with_logprobs:
        return tokens, None
    return tokens, torch.log_softmax(filtered, -1).gather(-1, tokens[:, None])[:, 0]


def conditional_logprobs(cond_logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities ``[..., V]`` of the conditional row alone, temperature 1, no filtering
    (T2I-R1's learner quantity: no CFG in the loss)."""
    return torch.log_softmax(cond_logits.float(), dim=-1)


# --------------------------------------------------------------------------------------------------- randomness
# All keys are uint32 values stored as int32 bit patterns: int32 arithmetic is vectorised on every CPU (int64
# multiplies are not on AVX2, which made an int64 version 5x slower) and wraps on overflow like uint32 arithmetic.
# Right shifts on int32 are arithmetic, so each is masked back to a logical shift.

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2**32 / golden ratio: spreads consecutive steps apart before hashing


def _i32(v: int) -> int:
    """A uint32 value as the int32 with the same bits."""
    v &= _MASK32
    return v - (1 << 32) if v >= 1 << 31 else v


_MUL1 = _i32(0x7FEB352D)
_MUL2 = _i32(0x846CA68B)
_GOLDEN_I32 = _i32(_GOLDEN)


def hash32_(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer mix (Chris Wellons' "lowbias32"), in place on an int32 tensor of uint32 bit
    patterns (in place because the sampler runs it on [B, 16384] every step: half the time of the out-of-place
    expression)."""
    t = torch.empty_like(x)
    for shift, mask, mul in ((16, 0xFFFF, _MUL1), (15, 0x1FFFF, _MUL2)):
        torch.bitwise_right_shift(x, shift, out=t)
        x ^= t.bitwise_and_(mask)
        x *= mul
    torch.bitwise_right_shift(x, 16, out=t)
    return x.bitwise_xor_(t.bitwise_and_(0xFFFF))


def hash32(x: torch.Tensor) -> torch.Tensor:
    """:func:`hash32_` on a copy."""
    return hash32_(x.clone())


def seed_keys(seeds: Sequence[int], device: Union[str, torch.device, None] = None) -> torch.Tensor:
    """One 32-bit key per request seed ``[B]`` (int32). Any Python int; its low 64 bits count."""
    lo = torch.tensor([_i32(s) for s in seeds], dtype=torch.int32, device=device)
    hi = torch.tensor([_i32((s >> 32) ^ _GOLDEN) for s in seeds], dtype=torch.int32, device=device)
    return hash32(lo ^ hash32(hi))


def step_keys(keys: torch.Tensor, step: Union[int, torch.Tensor]) -> torch.Tensor:
    """The key of each request at decoding step ``step``: an int, or an int32 tensor that broadcasts against
    ``keys`` (e.g. ``arange(N)[:, None]`` gives the keys ``[N, B]`` of all steps at once)."""
    offset = _i32((step + 1) * _GOLDEN) if isinstance(step, int) else (step + 1) * _GOLDEN_I32
    return hash32(keys + offset)


@functools.lru_cache(maxsize=64)
def index_keys(n: int, device: str = "cpu") -> torch.Tensor:
    """Keys ``[n]`` (int32) of the codes 0..n-1; cached per size and device (as a normal tensor even when first
    asked for under inference mode)."""
    with torch.inference_mode(False):
        return hash32(torch.arange(n, dtype=torch.int32, device=device))


_ONE_BITS = 0x3F800000  # float32 1.0: with 23 random mantissa bits below it, a float in [1, 2)
_UNIFORM_SHIFT = 1.0 - 2.0**-24  # [1, 2) - this = (m + 0.5) / 2**23 for mantissa m, exactly


def uniform_from_keys(step_key: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Uniforms ``[B, n]`` in (0, 1), never 0 or 1: ``(m + 0.5) / 2**23`` for the low 23 bits m of
    ``hash32(step_key ^ key)``, built as float bits (mantissa m under the exponent of 1.0) in three passes.

    23 bits, not 24: a 24-bit ``(m + 0.5) / 2**24`` can round to 1.0 in float32 and give infinite Gumbel noise.
    """
    bits = hash32_(step_key[:, None] ^ keys[None, :]).bitwise_and_(0x7FFFFF).bitwise_or_(_ONE_BITS)
    return bits.view(torch.float32).sub_(_UNIFORM_SHIFT)


def sample_from_logits(logits: torch.Tensor, step_key: torch.Tensor) -> torch.Tensor:
    """Gumbel-max: ``argmax(logits + G)`` over ``[B, V]``, with ``G = -log(-log(u))`` standard Gumbel noise
    from the requests' uniforms for this step, is an exact draw from ``softmax(logits)`` per row (-inf logits
    never win).

    Unlike inverse-CDF sampling, which moves whenever a cumulative sum shifts by a rounding error, the draw only
    changes if the two best perturbed logits are within rounding of each other, so a request keeps its image
    when batch composition changes the floating-point reduction order. (A two-stage draw, a block of codes by
    its log-sum-exp and then a code inside it, needs 1% of the noise but was not faster on CPU: its dozens of
    small ops cost what the noise saved.)
    """
    keys = index_keys(logits.shape[-1], str(logits.device))
    neg_noise = uniform_from_keys(step_key, keys).log_().neg_().log_()  # log(-log u) = -G
    # argmin(-G - logits) = argmax(logits + G), in place in the contiguous noise buffer (the sampler's logits are
    # a transposed view, and an argmax over a result laid out like them is 3x slower)
    return torch.argmin(neg_noise.sub_(logits), dim=-1)
