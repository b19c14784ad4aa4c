"""The image-token sampler against independent references: hand-worked values, transformers' logits
warpers and `generate(generation_mode="image")`, and a teacher-forced forward through transformers' modules."""

from __future__ import annotations

import math
import weakref

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from policy.config import TinyModelConfig
from policy.model import build_tiny_janus
from policy.sampling import (
    cfg_combine,
    conditional_logprobs,
    filter_logits,
    hash32,
    sample_from_logits,
    sampling_logprobs,
    seed_keys,
    step_keys,
    top_k_filter,
    top_p_filter,
)
from policy.tokenizer import SpecialIds
from rollout.config import ImageSamplingConfig
from rollout.image_sampler import ImageSampler, kv_cache_bytes

INF = float("inf")


def params(**kw) -> ImageSamplingConfig:
    return ImageSamplingConfig(**kw)


# --------------------------------------------------------------------------------------------------- pure functions


def test_cfg_combine_hand_values():
    cond = torch.tensor([2.0, 0.0, -1.0])
    uncond = torch.tensor([1.0, 1.0, 1.0])
    # uncond + 5 * (cond - uncond) = [1 + 5, 1 - 5, 1 - 10]
    assert cfg_combine(cond, uncond, 5.0).tolist() == [6.0, -4.0, -9.0]
    assert cfg_combine(cond, uncond, 1.0).tolist() == cond.tolist()
    assert cfg_combine(cond, uncond, 0.0).tolist() == uncond.tolist()


def test_top_k_hand_values_keeps_ties():
    assert top_k_filter(torch.tensor([1.0, 3.0, 2.0, 0.0]), 2).tolist() == [-INF, 3.0, 2.0, -INF]
    assert top_k_filter(torch.tensor([1.0, 2.0, 2.0, 0.0]), 1).tolist() == [-INF, 2.0, 2.0, -INF]
    assert top_k_filter(torch.tensor([1.0, 2.0]), 0).tolist() == [1.0, 2.0]  # 0 = off


def test_top_p_hand_values():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p)).tolist()  # noqa: E731
    # mass strictly above each code: 0, 0.5, 0.8, 0.95; a code stays while that mass is < p
    assert kept(0.7) == [True, True, False, False]
    assert kept(0.5) == [True, False, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    assert kept(0.01) == [True, False, False, False]  # the most likely code always stays


def test_filter_order_is_temperature_then_top_k_then_top_p():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    # T=2: probs ∝ sqrt(p) = [.707, .548, .387, .224] / 1.866 = [.379, .293, .208, .120];
    # mass above: 0, .379, .672, .880 -> top_p=0.7 keeps three codes (without the temperature, two).
    out = filter_logits(logits, params(temperature=2.0, top_p=0.7))
    assert torch.isfinite(out).tolist() == [True, True, True, False]
    assert torch.allclose(out[:3], logits[:3] / 2)
    out = filter_logits(logits, params(temperature=2.0, top_k=1, top_p=0.7))
    assert torch.isfinite(out).tolist() == [True, False, False, False]


def test_filters_match_transformers_warpers():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 50, generator=g) * 3
    for t, k, p in [(1.0, 0, 1.0), (0.7, 10, 1.0), (1.3, 0, 0.8), (0.5, 20, 0.6)]:
        ref = logits.clone()
        ref = TemperatureLogitsWarper(t)(None, ref)
        if k:
            ref = TopKLogitsWarper(k)(None, ref)
        if p < 1:
            ref = TopPLogitsWarper(p)(None, ref)
        ours = filter_logits(logits, params(temperature=t, top_k=k, top_p=p))
        assert torch.equal(torch.isfinite(ours), torch.isfinite(ref)), (t, k, p)
        assert torch.allclose(ours[torch.isfinite(ours)], ref[torch.isfinite(ref)], atol=1e-6)


def test_sampling_logprobs_hand_values():
    uncond = torch.ones(3)
    cond = torch.tensor([1.0, 1.0 + 0.5 * math.log(3.0), 1.0])
    # w = 2: guided = [1, 1 + ln 3, 1] -> probs ∝ [1, 3, 1] = [0.2, 0.6, 0.2]
    lp = sampling_logprobs(cond, uncond, params(cfg_weight=2.0))
    assert torch.allclose(lp, torch.tensor([0.2, 0.6, 0.2]).log(), atol=1e-6)
    lp = sampling_logprobs(cond, uncond, params(cfg_weight=2.0, top_k=1))
    assert lp.tolist() == [-INF, 0.0, -INF]
    # conditional alone: probs ∝ [1, sqrt 3, 1]
    expect = torch.tensor([1.0, math.sqrt(3.0), 1.0])
    assert torch.allclose(conditional_logprobs(cond), (expect / expect.sum()).log(), atol=1e-6)
    # batched [..., V]
    assert sampling_logprobs(cond.expand(2, 4, 3), uncond.expand(2, 4, 3), params(cfg_weight=2.0)).shape == (2, 4, 3)


def _hash_ref(x: int) -> int:
    m = 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def test_hash32_matches_python_integer_reference():
    vals = [0, 1, 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x9E3779B9, 123456789]
    vals += torch.randint(0, 2**32, (2000,), generator=torch.Generator().manual_seed(0), dtype=torch.int64).tolist()
    as_i32 = torch.tensor([v - 2**32 if v >= 2**31 else v for v in vals], dtype=torch.int32)
    got = [v & 0xFFFFFFFF for v in hash32(as_i32).tolist()]
    assert got == [_hash_ref(v) for v in vals]


def _draws(logits: torch.Tensor, n: int, step: int = 0) -> torch.Tensor:
    """n draws from one row of logits, one per request seed 0..n-1."""
    return sample_from_logits(logits.expand(n, -1), step_keys(seed_keys(range(n)), step))


def _within_5_sigma(draws: torch.Tensor, probs: torch.Tensor) -> bool:
    """Every code's frequency within 5 binomial standard deviations of its probability, plus 3 counts of slack
    for rare codes (where the normal approximation breaks down)."""
    n = draws.numel()
    freq = torch.bincount(draws, minlength=probs.numel()).double() / n
    return bool(((freq - probs).abs() <= 5 * (probs * (1 - probs) / n).sqrt() + 3 / n).all())


def test_draw_frequencies_match_probabilities():
    n = 40000
    probs = torch.tensor([0.5, 0.25, 0.125, 0.0625, 0.0625], dtype=torch.float64)
    draws = _draws(probs.log().float(), n)
    assert _within_5_sigma(draws, probs)
    # a later step is a fresh draw: agreement between steps 0 and 1 is sum p^2, not 1
    same = (draws == _draws(probs.log().float(), n, step=1)).double().mean().item()
    expect = float((probs**2).sum())
    assert abs(same - expect) < 5 * math.sqrt(expect * (1 - expect) / n)
    # filtered codes never win
    masked = probs.log().float().masked_fill(torch.tensor([True, False, False, False, False]), -INF)
    assert (_draws(masked, n) != 0).all()


def test_draw_frequencies_with_many_codes_and_filtered_ranges():
    n = 40000
    logits = torch.full((300,), -INF)
    logits[[3, 130, 131, 299]] = torch.tensor([0.4, 0.2, 0.1, 0.3]).log()
    probs = torch.softmax(logits.double(), -1)
    assert _within_5_sigma(_draws(logits, n), probs)
    logits = torch.randn(300, generator=torch.Generator().manual_seed(0))
    logits[128:256] = -INF
    draws = _draws(logits, n)
    assert not ((draws >= 128) & (draws < 256)).any()
    assert _within_5_sigma(draws, torch.softmax(logits.double(), -1))


def test_seed_keys_use_the_whole_seed():
    keys = seed_keys([0, 1, 2**32, -1, 2**63 - 1]).tolist()
    assert len(set(keys)) == 5


def test_step_keys_of_a_step_tensor_equal_those_of_an_int():
    """The sampler computes all steps' keys at once (and a CUDA graph replays a step tensor)."""
    keys = seed_keys([3, 4, 5])
    table = step_keys(keys[None, :], torch.arange(600, dtype=torch.int32)[:, None])
    assert torch.equal(table, torch.stack([step_keys(keys, i) for i in range(600)]))
    assert len(set(table[:, 0].tolist())) == 600


# --------------------------------------------------------------------------------------------------- the model


def _lively_janus(**tiny):
    """The tiny random Janus with GQA (4 heads, 2 KV heads) and weights at unit scale, so that greedy image
    tokens vary from step to step (the default 0.02-std init gives near-constant sequences)."""
    model, tok = build_tiny_janus(TinyModelConfig(num_heads=4, num_kv_heads=2, **tiny))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and ("language_model" in name or "generation" in name):
                std = 1.0 if "embed" in name else 1.0 / math.sqrt(p.shape[1])
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model, SpecialIds.from_tokenizer(tok)


@pytest.fixture(scope="module")
def janus():
    return _lively_janus()


def _prompts(ids: SpecialIds, lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [[ids.bos] + torch.randint(0, 250, (n,), generator=g).tolist() + [ids.boi] for n in lengths]


def _hf_greedy(model, prompts: list[list[int]], cfg_weight: float = 5.0) -> torch.Tensor:
    """transformers' own image mode, one equal-length batch."""
    ids = torch.tensor(prompts)
    model.generation_config.guidance_scale = cfg_weight
    return model.generate(ids, attention_mask=torch.ones_like(ids), generation_mode="image", do_sample=False)


@torch.no_grad()
def _teacher_forced(model, ids: SpecialIds, prompt: list[int], tokens: torch.Tensor):
    """Cond and uncond generation-head logits [N, V] for `tokens`, by one full forward of HF's modules."""
    cond = torch.tensor(prompt)
    uncond = torch.where((cond == ids.bos) | (cond == ids.boi), cond, torch.full_like(cond, ids.pad))
    rows = torch.stack([cond, uncond])
    image = model.prepare_embeddings_for_image_generation(tokens[None, :-1]).expand(2, -1, -1)
    x = torch.cat([model.get_input_embeddings()(rows), image], dim=1)
    h = model.model.language_model(inputs_embeds=x).last_hidden_state[:, len(prompt) - 1 :]
    logits = model.model.generation_head(h).float()
    return logits[0], logits[1]


def test_greedy_equals_transformers_generate(janus):
    model, ids = janus
    prompts = _prompts(ids, [9, 9, 9])
    for w in (5.0, 1.5):
        ours = ImageSampler(model, ids).sample(prompts, params(cfg_weight=w), [0, 1, 2], greedy=True).tokens
        assert torch.equal(ours, _hf_greedy(model, prompts, w)), w
    assert len(set(ours[0].tolist())) > 3  # a sequence worth comparing


def test_padded_prompts_draw_what_they_draw_alone(janus):
    model, ids = janus
    prompts = _prompts(ids, [3, 11, 6, 1])
    sampler = ImageSampler(model, ids)
    batched = sampler.sample(prompts, params(), [0, 1, 2, 3], greedy=True).tokens
    for i, p in enumerate(prompts):
        # transformers numbers positions from the pad in its image mode, so it is the reference only unpadded
        assert torch.equal(batched[i], _hf_greedy(model, [p])[0]), i
    sampled = sampler.sample(prompts, params(), [5, 6, 7, 8]).tokens
    for i, p in enumerate(prompts):
        assert torch.equal(sampled[i], sampler.sample([p], params(), [5 + i]).tokens[0]), i


def test_same_seed_same_image_whatever_the_batch(janus):
    model, ids = janus
    sampler = ImageSampler(model, ids)
    target = _prompts(ids, [7], seed=3)[0]
    others = _prompts(ids, [2, 12, 5, 9], seed=4)
    alone = sampler.sample([target], params(), [1234]).tokens[0]
    crowd = sampler.sample(others[:2] + [target] + others[2:], params(), [1, 2, 1234, 3, 4]).tokens
    chunked = sampler.sample(others + [target], params(max_batch=2), [9, 8, 7, 6, 1234]).tokens
    assert torch.equal(crowd[2], alone)
    assert torch.equal(chunked[4], alone)
    other_seed = sampler.sample([target], params(), [1235]).tokens[0]
    assert not torch.equal(other_seed, alone)
    # same prompt, same seed, two rows of one batch: identical; different seeds in one batch: different
    pair = sampler.sample([target, target, target], params(), [1234, 1234, 99]).tokens
    assert torch.equal(pair[0], alone) and torch.equal(pair[1], alone) and not torch.equal(pair[2], alone)


def test_logprobs_equal_teacher_forced_recomputation(janus):
    model, ids = janus
    prompts = _prompts(ids, [4, 10, 7])
    p = params(cfg_weight=3.0, temperature=0.9, top_k=20, top_p=0.9)
    out = ImageSampler(model, ids).sample(prompts, p, [11, 12, 13], return_logprobs=True)
    assert out.logprobs.shape == out.cond_logprobs.shape == out.tokens.shape
    for i, prompt in enumerate(prompts):
        cond, uncond = _teacher_forced(model, ids, prompt, out.tokens[i])
        # transformers' processors as the reference distribution: CFG on raw logits, then its warpers
        guided = uncond + 3.0 * (cond - uncond)
        for warp in (TemperatureLogitsWarper(0.9), TopKLogitsWarper(20), TopPLogitsWarper(0.9)):
            guided = warp(None, guided)
        ref = torch.log_softmax(guided, -1).gather(-1, out.tokens[i][:, None])[:, 0]
        ref_cond = torch.log_softmax(cond, -1).gather(-1, out.tokens[i][:, None])[:, 0]
        assert torch.isfinite(ref).all()  # never a filtered-out code
        assert torch.allclose(out.logprobs[i], ref, atol=1e-4), i
        assert torch.allclose(out.cond_logprobs[i], ref_cond, atol=1e-4), i


def test_token_frequencies_match_model_probabilities():
    """cfg_weight = 1 (the conditional distribution) at temperature 0.25 (peaked): empirical frequencies of the
    image token over 2000 seeds against softmax(cond / 0.25) from HF's forward, within 5 binomial standard
    deviations per code (fixed seeds, so the outcome is deterministic). A one-token model and a short prompt keep
    it fast."""
    model, ids = _lively_janus(image_grid=1)
    prompt = _prompts(ids, [2], seed=7)[0]
    n = 2000
    out = ImageSampler(model, ids).sample(
        [prompt] * n, params(cfg_weight=1.0, temperature=0.25, max_batch=n), list(range(n))
    )
    cond, _ = _teacher_forced(model, ids, prompt, out.tokens[0])
    probs = torch.softmax(cond[0] / 0.25, -1).double()
    assert probs.max() > 0.1  # peaked enough for the check to have power
    assert _within_5_sigma(out.tokens[:, 0], probs)


def test_reads_weights_at_call_time(janus):
    model, ids = janus
    sampler = ImageSampler(model, ids)
    prompts = _prompts(ids, [5, 5])
    before = sampler.sample(prompts, params(), [0, 1], greedy=True).tokens
    layer = model.model.language_model.layers[0].mlp.down_proj.weight
    saved = layer.detach().clone()
    try:
        with torch.no_grad():
            layer.mul_(-3.0)  # an in-place update, as the rollout worker's weight sync does
        after = sampler.sample(prompts, params(), [0, 1], greedy=True).tokens
        assert not torch.equal(after, before)
        assert torch.equal(after, _hf_greedy(model, prompts))
    finally:
        with torch.no_grad():
            layer.copy_(saved)


def test_one_kv_cache_grows_to_the_largest_call_and_frees_the_old_one(janus):
    """Calls of growing batch sizes and prompt lengths share one cache: a chunk uses its first rows, a call that
    needs more rows or positions replaces it by one covering both (the old buffer is freed), and it never holds
    more than keys and values of 2 x max_batch rows at the model's longest context, however many calls."""
    model, ids = janus
    text = model.config.text_config
    layers, kv_heads = text.num_hidden_layers, text.num_key_value_heads
    head_dim = text.hidden_size // text.num_attention_heads
    p = params(max_batch=3)
    sampler = ImageSampler(model, ids)
    # (prompt lengths, CFG rows and capacity the cache must have after the call): 1 and 2 prompts; 5 prompts run
    # as chunks of 3 and 2; 2 prompts of which one needs 302 + 16 positions (> 256)
    calls = [([4], 2, 256), ([5, 6], 4, 256), ([3, 9, 2, 7, 5], 6, 256), ([300, 8], 6, 512)]
    old = None
    for i, (lengths, rows, capacity) in enumerate(calls):
        prompts, seeds = _prompts(ids, lengths, seed=i), list(range(10 * i, 10 * i + len(lengths)))
        out = sampler.sample(prompts, p, seeds)
        fresh = ImageSampler(model, ids).sample(prompts, p, seeds)
        assert torch.equal(out.tokens, fresh.tokens)  # stale rows and slots of earlier calls change nothing
        kv = sampler.kv_cache
        assert (kv.rows, kv.capacity) == (rows, capacity)
        # keys and values, every layer, float32
        assert kv.nbytes == 2 * layers * rows * kv_heads * capacity * head_dim * 4
        assert old is None or old() is None  # every call above grew the cache: the previous buffer is gone
        old = weakref.ref(kv.k[0])
    same = sampler.kv_cache.k[0]
    sampler.sample(_prompts(ids, [6, 2]), p, [0, 1])  # fits: no new buffer
    assert sampler.kv_cache.k[0] is same
    longest = -(-text.max_position_embeddings // ImageSampler.CACHE_ROUND) * ImageSampler.CACHE_ROUND
    bound = 2 * layers * (2 * p.max_batch) * kv_heads * longest * head_dim * 4
    assert sampler.kv_cache.nbytes <= bound


def test_kv_cache_at_janus_pro_7b_shapes():
    """The cache the sampler keeps for T2I-R1's chunk of 16 images with a 1024-token CoT at Janus-Pro-7B's shapes
    (30 layers, 32 KV heads of 128, bf16): keys and values of 32 CFG rows for prompt + CoT + 576 image tokens."""
    prompt = 1 + 40 + 1024 + 5 + 1  # BOS, "User: {prompt}. ", the CoT, "\n\nAssistant:", <begin_of_image>
    capacity = -(-(prompt + 576) // ImageSampler.CACHE_ROUND) * ImageSampler.CACHE_ROUND
    assert capacity == 1792
    assert kv_cache_bytes(30, 32, 32, capacity, 128, 2) == 2 * 30 * 32 * 32 * 1792 * 128 * 2
    assert kv_cache_bytes(30, 32, 32, capacity, 128, 2) / 2**30 == 26.25


def test_rejects_bad_requests(janus):
    model, ids = janus
    sampler = ImageSampler(model, ids)
    with pytest.raises(ValueError, match="begin_of_image"):
        sampler.sample([[ids.bos, 5, 6]], params(), [0])
    with pytest.raises(ValueError, match="one seed per prompt"):
        sampler.sample(_prompts(ids, [3, 3]), params(), [0])
    empty = sampler.sample([], params(), [], return_logprobs=True)
    assert empty.tokens.shape == (0, 16) and empty.logprobs.shape == (0, 16)
