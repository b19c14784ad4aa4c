"""The DeepSpeed learner on Ray: K = 1 and K = 2 ranks (ZeRO-2, and ZeRO-3 with gradient checkpointing and a
sharded reference) take the same optimizer steps on the same global batch, and that step equals a plain-torch
re-implementation (no DeepSpeed) of the update: micro-batch losses averaged, gradient clipping, AdamW, linear
learning-rate decay.

Tolerance: parameters agree to 2e-5 absolute (lr is 1e-3, so that is 2 % of one Adam step; the observed
difference is ~1e-7, float32 reductions summed in a different order across ranks)."""

import copy
import dataclasses

import pytest
import torch

from cluster.config import Config, learner_setup
from learner.batch import pack_level, pack_values
from learner.config import LearnerConfig, LossConfig, OptimConfig
from learner.engine import deepspeed_config, grad_accumulation_steps
from learner.logprobs import PolicyLogProbs
from learner.loss import LevelTerms, grpo_loss
from learner.synthetic import random_samples

ATOL = 2e-5
UPDATES = 2


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the CPU is shared: 2 OpenMP threads on a busy 2-core box run ~20x slower
    yield
    torch.set_num_threads(n)


def _config(model_cfg, **learner) -> Config:
    cfg = Config()
    cfg.model = copy.deepcopy(model_cfg)
    cfg.trainer.prompts_per_step, cfg.rollout.group_size, cfg.trainer.steps = 2, 4, 3
    base = LearnerConfig(micro_batch_size=2, updates_per_batch=UPDATES, num_cpus_per_rank=0.5,
                         optim=OptimConfig(lr=1e-3, grad_clip=1.0),
                         loss=LossConfig(beta=0.05, clip_low=0.2, clip_high=0.25))
    cfg.learner = dataclasses.replace(base, **learner)
    return cfg


@pytest.fixture(scope="module")
def batch(tiny_policy):
    """8 samples whose behaviour log-probs are the initial policy's plus noise of up to +-0.9, so the importance
    weights vary and some are truncated at 2."""
    samples = random_samples(tiny_policy, 8, seed=11)
    g = torch.Generator().manual_seed(5)
    module = PolicyLogProbs(tiny_policy.model)
    with torch.no_grad():
        for s in samples:
            levels = {"semantic": pack_level([s.cot_prompt_ids], [s.cot_ids], tiny_policy.ids.pad),
                      "token": pack_level([s.image_prompt_ids], [s.image_ids], tiny_policy.ids.pad, target_pad=0)}
            out = module(levels)
            noise = lambda n: ((torch.rand(n, generator=g) - 0.5) * 1.8)
            s.cot_logprobs = (out["semantic"][0] + noise(len(s.cot_ids))).tolist()
            s.image_logprobs = (out["token"][0] + noise(len(s.image_ids))).tolist()
    return samples


def _plain_torch_update(cfg: Config, samples) -> tuple[dict[str, torch.Tensor], list[float]]:
    """The learner's update without DeepSpeed, written out step by step."""
    from transformers import get_linear_schedule_with_warmup

    from policy.model import load_policy, set_trainable

    pol, ref = load_policy(cfg.model), load_policy(cfg.model)
    names = set(set_trainable(pol.model, cfg.model.trainable))
    params = [p for n, p in pol.model.named_parameters() if n in names]
    pol.model.train()
    o = cfg.learner.optim
    opt = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, o.warmup_steps, cfg.trainer.steps * cfg.learner.updates_per_batch)
    policy_lp, ref_lp = PolicyLogProbs(pol.model), PolicyLogProbs(ref.model)
    pad = pol.ids.pad
    micro = []
    for i in range(0, len(samples), 2):
        mb = samples[i:i + 2]
        levels = {"semantic": pack_level([s.cot_prompt_ids for s in mb], [s.cot_ids for s in mb], pad),
                  "token": pack_level([s.image_prompt_ids for s in mb], [s.image_ids for s in mb], pad, target_pad=0)}
        behaviour = {"semantic": pack_values([s.cot_logprobs for s in mb], levels["semantic"].targets.shape[1]),
                     "token": pack_values([s.image_logprobs for s in mb], levels["token"].targets.shape[1])}
        with torch.no_grad():  # proximal: the policy before the first update; and the reference
            micro.append((mb, levels, behaviour, policy_lp(levels), ref_lp(levels)))
    losses = []
    for _ in range(cfg.learner.updates_per_batch):
        opt.zero_grad()
        for mb, levels, behaviour, old, r in micro:
            cur = policy_lp(levels)
            terms = {k: LevelTerms(cur[k], old[k], levels[k].target_mask, r[k], behaviour[k]) for k in levels}
            loss, _ = grpo_loss(terms, torch.tensor([s.advantage for s in mb]), cfg.learner.loss)
            (loss / len(micro)).backward()
            losses.append(float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
        opt.step()
        sched.step()
    return {n: p.detach().clone() for n, p in pol.model.named_parameters() if n in names}, losses


@pytest.fixture(scope="module")
def expected(tiny_model_cfg, batch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _plain_torch_update(_config(tiny_model_cfg), batch)
    finally:
        torch.set_num_threads(n)


def _train(cfg, batch):
    from learner.actor import LearnerGroup

    group = LearnerGroup(learner_setup(cfg))
    try:
        assert group.version() == 0
        stats = group.train_batch(batch)
        assert group.version() == UPDATES
        return group.full_trainable_state(), stats
    finally:
        group.shutdown()


@pytest.mark.parametrize("learner", [
    dict(ranks=1, zero_stage=2),
    dict(ranks=2, zero_stage=2),
    pytest.param(dict(ranks=2, zero_stage=3, gradient_checkpointing=True, ref_on_cpu=False), marks=pytest.mark.slow),
], ids=["K1-zero2", "K2-zero2", "K2-zero3-ckpt-shardedref"])
def test_update_equals_plain_torch_reference(ray_local, tiny_model_cfg, tiny_policy, batch, expected, learner):
    cfg = _config(tiny_model_cfg, **learner)
    state, stats = _train(cfg, batch)
    want, losses = expected
    assert set(state) == set(want)
    initial = {n: p.detach() for n, p in tiny_policy.model.named_parameters()}
    moved = max(float((want[n] - initial[n]).abs().max()) for n in want)
    assert moved > 5e-4  # the step is real (about lr), so ATOL is a meaningful bound
    for n in want:
        torch.testing.assert_close(state[n], want[n], atol=ATOL, rtol=0, msg=lambda m: f"{n}: {m}")
    assert stats["loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-5)
    assert 0 < stats["token/clip_frac"] < 1  # the second update's ratios leave the clip range
    assert 0 < stats["token/is_truncated_frac"] < 1 and 0 < stats["semantic/is_truncated_frac"] < 1
    assert stats["token/tokens"] == 2 * len(batch[0].image_ids)  # per micro-batch of 2


@pytest.mark.slow
def test_bf16_learner_trains_close_to_fp32(ray_local, tiny_model_cfg, batch, expected):
    state, stats = _train(_config(tiny_model_cfg, ranks=1, zero_stage=2, dtype="bfloat16"), batch)
    want, _ = expected
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    # bf16 keeps ~3 significant digits; the weights are O(0.02-1), one step is ~1e-3
    worst = max(float((state[n].float() - want[n]).abs().max()) for n in want)
    assert worst < 1.5e-2 and torch.isfinite(torch.tensor(stats["loss"]))


def test_batch_size_errors(tiny_model_cfg):
    cfg = _config(tiny_model_cfg, micro_batch_size=3)
    with pytest.raises(ValueError, match="multiple of learner.micro_batch_size"):
        grad_accumulation_steps(learner_setup(cfg), 1)
    ds = deepspeed_config(learner_setup(_config(tiny_model_cfg)), world_size=2)
    assert (ds["train_batch_size"], ds["gradient_accumulation_steps"]) == (8, 2)
