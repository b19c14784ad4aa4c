"""The CUDA-graph decode path of the image sampler against its default loop.

On CPU the static-buffer step that a graph captures runs through the same warm-up, capture and replay sequence
with eager stand-ins for the CUDA calls (same buffers, whole-cache attention with future slots masked, the step
index on the device): it must draw what the default loop draws. On CUDA the same comparisons run with the step
captured and replayed, and the draw done by the fused Triton kernel.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from rollout.config import ImageSamplingConfig
from rollout.factories import build_image_sampler
from rollout.image_sampler import ImageSampler
from tests.test_image_sampler import _lively_janus, _prompts


@pytest.fixture(scope="module")
def janus():
    return _lively_janus()


def _compare(model, ids, prompts, seeds, p, **kw):
    ref = ImageSampler(model, ids).sample(prompts, p, seeds, **kw)
    graph_sampler = build_image_sampler(model, ids, cuda_graphs=True)
    out = graph_sampler.sample(prompts, p, seeds, **kw)
    assert torch.equal(out.tokens, ref.tokens)
    if kw.get("return_logprobs"):
        assert torch.allclose(out.logprobs, ref.logprobs, atol=1e-5)
        assert torch.allclose(out.cond_logprobs, ref.cond_logprobs, atol=1e-5)
    return graph_sampler, ref


def _compare_with(sampler, model, ids, prompts, seeds, p):
    ref = ImageSampler(model, ids).sample(prompts, p, seeds, return_logprobs=True)
    out = sampler.sample(prompts, p, seeds, return_logprobs=True)
    assert torch.equal(out.tokens, ref.tokens)
    assert torch.allclose(out.logprobs, ref.logprobs, atol=1e-5)


def test_static_step_draws_what_the_loop_draws_on_cpu(janus):
    model, ids = janus
    prompts = _prompts(ids, [3, 11, 6])  # padded: the mask path
    p = ImageSamplingConfig(cfg_weight=3.0, temperature=0.9, top_k=20, top_p=0.9)
    _compare(model, ids, prompts, [1, 2, 3], p, greedy=True)
    sampler, _ = _compare(model, ids, prompts, [1, 2, 3], p, return_logprobs=True)
    # a second call with other prompt lengths reuses the decoder and its buffers
    again = _prompts(ids, [7, 2, 9], seed=5)
    ref = ImageSampler(model, ids).sample(again, p, [4, 5, 6], return_logprobs=True)
    out = sampler.sample(again, p, [4, 5, 6], return_logprobs=True)
    assert torch.equal(out.tokens, ref.tokens)
    assert len(sampler._graphs._decoders) == 1


def test_static_step_unpadded_default_params_on_cpu(janus):
    model, ids = janus
    _compare(model, ids, _prompts(ids, [8, 8]), [7, 8], ImageSamplingConfig())


@pytest.mark.parametrize("kw", [dict(greedy=True), dict(return_logprobs=True)], ids=["greedy", "sampled"])
def test_warm_up_and_capture_keep_the_prompt_cache_of_unpadded_prompts_on_cpu(janus, kw):
    """The CPU stand-ins run the warm-up steps and the capture in CUDA's order, on the same buffers: warm-up must
    not write over the prompt's cache slots (BOS, the start of the text), at the first capture nor at the
    re-capture when the cache grows."""
    model, ids = janus
    p = ImageSamplingConfig(cfg_weight=3.0, temperature=0.9, top_k=20, top_p=0.9)
    sampler, _ = _compare(model, ids, _prompts(ids, [12, 12]), [21, 22], p, **kw)
    first = next(iter(sampler._graphs._decoders.values()))
    assert first.graph is not None  # went through warm-up and capture
    # A prompt longer than the cache's first capacity: a new cache, a new decoder, a second capture.
    long = _prompts(ids, [ImageSampler.CACHE_ROUND, ImageSampler.CACHE_ROUND], seed=3)
    ref = ImageSampler(model, ids).sample(long, p, [23, 24], **kw)
    out = sampler.sample(long, p, [23, 24], **kw)
    assert torch.equal(out.tokens, ref.tokens)
    if kw.get("return_logprobs"):
        assert torch.allclose(out.logprobs, ref.logprobs, atol=1e-5)
        assert torch.allclose(out.cond_logprobs, ref.cond_logprobs, atol=1e-5)
    second = next(iter(sampler._graphs._decoders.values()))
    assert second is not first and second.cache.capacity > first.cache.capacity


def test_growing_the_cache_drops_the_decoders_captured_on_the_old_one_on_cpu(janus):
    """A call with more images than the cache has rows re-allocates the cache: every decoder whose graph reads the
    old buffer goes with it (so the buffer is freed), and the next calls capture on the new one."""
    model, ids = janus
    p = ImageSamplingConfig(cfg_weight=3.0, temperature=0.9, top_k=20, top_p=0.9)
    sampler, _ = _compare(model, ids, _prompts(ids, [5, 9]), [1, 2], p, return_logprobs=True)
    old_buffer = weakref.ref(sampler.kv_cache.k[0])
    _compare_with(sampler, model, ids, _prompts(ids, [4, 7, 3], seed=1), [3, 4, 5], p)  # 6 rows > 4
    gc.collect()  # the CPU stand-in's replay is a bound method of its decoder: a cycle (a CUDA graph holds none)
    assert old_buffer() is None
    assert [d.b for d in sampler._graphs._decoders.values()] == [3]
    # two images again: a new decoder on the first rows of the 6-row cache, drawing what the loop draws
    _compare_with(sampler, model, ids, _prompts(ids, [8, 2], seed=2), [6, 7], p)
    assert sorted(d.b for d in sampler._graphs._decoders.values()) == [2, 3]
    assert sampler.kv_cache.rows == 6


@pytest.mark.gpu
@pytest.mark.parametrize(
    "kw", [dict(greedy=True), dict(), dict(return_logprobs=True)], ids=["greedy", "sampled", "logprobs"]
)
def test_graph_replay_draws_what_the_loop_draws_on_cuda(kw):
    model, ids = _lively_janus()
    model = model.cuda()
    prompts = _prompts(ids, [5, 12, 9, 9])
    for p in (ImageSamplingConfig(), ImageSamplingConfig(cfg_weight=3.0, temperature=0.9, top_k=20, top_p=0.9)):
        sampler, _ = _compare(model, ids, prompts, [11, 12, 13, 14], p, **kw)
        decoder = next(iter(sampler._graphs._decoders.values()))
        assert isinstance(decoder.graph, torch.cuda.CUDAGraph)  # replayed, not the eager stand-in


@pytest.mark.gpu
def test_graph_sees_in_place_weight_updates_on_cuda():
    model, ids = _lively_janus()
    model = model.cuda()
    prompts = _prompts(ids, [6, 6])
    sampler = build_image_sampler(model, ids, cuda_graphs=True)
    p = ImageSamplingConfig()
    before = sampler.sample(prompts, p, [0, 1], greedy=True).tokens
    with torch.no_grad():
        model.model.language_model.layers[0].mlp.down_proj.weight.mul_(-3.0)
    after = sampler.sample(prompts, p, [0, 1], greedy=True).tokens
    assert not torch.equal(after, before)
    assert torch.equal(after, ImageSampler(model, ids).sample(prompts, p, [0, 1], greedy=True).tokens)
    assert len(sampler._graphs._decoders) == 1  # same graph, replayed with the updated weights
