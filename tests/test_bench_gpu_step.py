"""benchmarks/bench_gpu_step.py on CPU with the tiny model: the logic of the GPU step benchmark, before GPU time.

Our step must learn (finite loss, trainable weights move, nothing else does) and leave the sampler's own model
holding the new weights, sampling with them through its cached decoders; the T2I-R1 baseline must run the same
step, and its log-probs (full forwards, heads over every position) must equal the learner's on the same inputs.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.bench_gpu_step import SETUPS, Models, OursStep, Prompts, StageClock, T2IR1Step
from benchmarks.bench_learner import T2IR1LogProbs
from learner.logprobs import PolicyLogProbs
from rollout.image_sampler import ImageSampler

SETUP = SETUPS["tiny"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return Models.build(SETUP, "cpu")


def test_our_step_learns_and_the_sampler_samples_with_the_new_weights(models):
    ours = OursStep(models, SETUP)
    prompts = Prompts.random(SETUP, models.ids, seed=0)
    probe = [[models.ids.bos] + p + [models.ids.boi] for p in prompts.raw]
    seeds = list(range(len(probe)))
    # the step's batch first, so that the sampler's one KV cache has its rows already (a larger call re-allocates
    # it and drops every decoder captured on the old one)
    ours.sampler.sample(probe * SETUP.group, ours.image_params, list(range(SETUP.samples)), greedy=True)
    before_tokens = ours.sampler.sample(probe, ours.image_params, seeds, greedy=True).tokens
    # warmed up and captured with the old weights
    (probe_decoder,) = [d for d in ours.sampler._graphs._decoders.values() if d.b == len(probe)]
    named = dict(models.policy.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}

    report = ours.run(prompts, seed=1)

    assert math.isfinite(report.loss)
    assert report.images == SETUP.samples and len(report.rewards) == SETUP.samples
    assert set(report.seconds) == {"cot", "image", "decode", "reward", "reference", "train", "sync"}
    moved = {n for n, p in named.items() if not torch.equal(p, before[n])}
    assert moved and moved <= set(models.trainable)
    assert all(not torch.equal(named[n], before[n]) for n in models.trainable if "layers.0." in n)
    sampler_params = dict(models.sampler_model.named_parameters())
    assert all(torch.equal(sampler_params[n], named[n]) for n in models.trainable)
    # the cached decoder (captured before the update) samples what a fresh sampler on the policy samples
    after_tokens = ours.sampler.sample(probe, ours.image_params, seeds, greedy=True).tokens
    assert torch.equal(
        after_tokens,
        ImageSampler(models.policy, models.ids).sample(probe, ours.image_params, seeds, greedy=True).tokens,
    )
    assert not torch.equal(after_tokens, before_tokens)
    assert probe_decoder in ours.sampler._graphs._decoders.values()  # the same capture, not a new one


def test_baseline_step_runs_and_its_logprobs_equal_the_learners(models):
    base = T2IR1Step(models, SETUP)
    report = base.run(Prompts.random(SETUP, models.ids, seed=2), seed=3)
    assert math.isfinite(report.loss)
    assert set(report.seconds) == {"cot", "image", "decode", "reward", "reference", "train"}

    r = base.rollout(Prompts.random(SETUP, models.ids, seed=4), seed=5, clock=StageClock(models.device))
    levels, _, _ = base._micro_batches(r, torch.zeros(SETUP.samples))[0]
    with torch.no_grad():
        theirs = T2IR1LogProbs(models.reference)(levels)
        ours = PolicyLogProbs(models.reference)(levels)
    for name in ("semantic", "token"):
        assert torch.allclose(theirs[name], ours[name], atol=1e-4), name
        assert (ours[name][levels[name].target_mask] < 0).all()
