"""The DeepSpeed learner on Ray: K = 1 and K = 2 ranks (ZeRO-2, and ZeRO-3 with gradient checkpointing, a
sharded reference and lm_head in chunks) take the same optimizer steps on the same global batch, and that step
equals a plain-torch re-implementation (no DeepSpeed) of the update: proximal log-probs from one no-grad forward
before the first of two updates, truncated importance weights against the behaviour log-probs, micro-batch losses
averaged, gradient clipping, AdamW, linear learning-rate decay. Then rollouts of a worker trained on without a
semantic CoT (the token-only ablation), in the guided log-prob mode, with importance weights checked by hand.

Tolerance: parameters agree to 2e-5 absolute (lr is 1e-3, so that is 2 % of one Adam step; the observed
difference is ~1e-7, float32 reductions summed in a different order across ranks)."""

import copy
import dataclasses
import math

import pytest
import torch

from cluster.config import Config, learner_setup
from learner.batch import pack_level, pack_values
from learner.config import LearnerConfig, LossConfig, OptimConfig, lr_schedule
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
    base = LearnerConfig(
        micro_batch_size=2,
        updates_per_batch=UPDATES,
        num_cpus_per_rank=0.5,
        optim=OptimConfig(lr=1e-3, grad_clip=1.0, warmup_steps=0, schedule="linear"),  # T2I-R1's schedule
        loss=LossConfig(beta=0.05, clip_low=0.2, clip_high=0.25),
    )
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
            levels = {
                "semantic": pack_level([s.cot_prompt_ids], [s.cot_ids], tiny_policy.ids.pad),
                "token": pack_level([s.image_prompt_ids], [s.image_ids], tiny_policy.ids.pad, target_pad=0),
            }
            out = module(levels)
            noise = lambda n: (torch.rand(n, generator=g) - 0.5) * 1.8
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
        mb = samples[i : i + 2]
        levels = {
            "semantic": pack_level([s.cot_prompt_ids for s in mb], [s.cot_ids for s in mb], pad),
            "token": pack_level([s.image_prompt_ids for s in mb], [s.image_ids for s in mb], pad, target_pad=0),
        }
        behaviour = {
            "semantic": pack_values([s.cot_logprobs for s in mb], levels["semantic"].targets.shape[1]),
            "token": pack_values([s.image_logprobs for s in mb], levels["token"].targets.shape[1]),
        }
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


@pytest.mark.parametrize(
    "learner",
    [
        dict(ranks=1, zero_stage=2),
        dict(ranks=2, zero_stage=2),
        # every parameter partitioned (as a 7B model's large ones are) and lm_head in chunks of 3 CoT tokens, so the
        # ranks' micro-batches need different numbers of chunks: the ranks must still make the same gathers
        pytest.param(
            dict(
                ranks=2,
                zero_stage=3,
                gradient_checkpointing=True,
                ref_on_cpu=False,
                zero3_persistence_threshold=0,
                logprob_chunk_tokens=3,
            ),
            marks=pytest.mark.slow,
        ),
    ],
    ids=["K1-zero2", "K2-zero2", "K2-zero3-ckpt-shardedref"],
)
def test_update_equals_plain_torch_reference(ray_local, tiny_model_cfg, tiny_policy, batch, expected, learner):
    cfg = _config(tiny_model_cfg, **learner)
    state, stats = _train(cfg, batch)
    want, losses = expected
    assert set(state) == set(want)
    initial = {n: p.detach() for n, p in tiny_policy.model.named_parameters()}
    moved = max(float((want[n] - initial[n]).abs().max()) for n in want)
    assert moved > 5e-4  # the step is real (about lr), so ATOL is a meaningful bound
    for n in want:
        torch.testing.assert_close(state[n], want[n], atol=ATOL, rtol=0, msg=lambda m, n=n: f"{n}: {m}")
    assert stats["loss"] == pytest.approx(sum(losses) / len(losses), abs=1e-5)
    assert 0 < stats["token/clip_frac"] < 1  # the second update's ratios leave the clip range
    assert 0 < stats["token/is_truncated_frac"] < 1 and 0 < stats["semantic/is_truncated_frac"] < 1
    assert stats["token/tokens"] == 2 * len(batch[0].image_ids)  # per micro-batch of 2


def _bf16_agreement(
    bf16: dict[str, torch.Tensor], fp32: dict[str, torch.Tensor], initial: dict[str, torch.Tensor]
) -> tuple[float, float, float]:
    """How a bf16 learner's two updates compare with the fp32 learner's, over the weights whose fp32 change exceeds
    two bf16 ulps of the weight (the changes bf16 can resolve): the fraction changed in the same direction, the
    fraction within one ulp of the fp32 weight, and the error of the change relative to the fp32 change (norms).
    The bf16 run starts from the initial weights rounded to bf16."""
    d32, dbf, ulp = [], [], []
    for n, w in fp32.items():
        w0 = initial[n].detach()
        ulp.append(2.0 ** (torch.floor(torch.log2(w0.abs().clamp(min=1e-30))) - 7).flatten())  # 8-bit significand
        d32.append((w - w0).flatten())
        dbf.append((bf16[n].float() - w0.bfloat16().float()).flatten())
    d32, dbf, ulp = torch.cat(d32), torch.cat(dbf), torch.cat(ulp)
    resolved = d32.abs() > 2 * ulp
    d32, dbf, ulp = d32[resolved], dbf[resolved], ulp[resolved]
    same_sign = float((torch.sign(dbf) == torch.sign(d32)).float().mean())
    within_ulp = float(((dbf - d32).abs() <= ulp).float().mean())
    return same_sign, within_ulp, float((dbf - d32).norm() / d32.norm())


@pytest.mark.slow
def test_bf16_learner_trains_close_to_fp32(ray_local, tiny_model_cfg, tiny_policy, batch, expected):
    """Adam turns even tiny gradients into steps of about lr, so where bf16 and fp32 gradients of a weight differ
    in sign the two runs part by ~lr, many ulps of a small weight: measured, 99.6 % of the resolved changes agree
    in sign, 75 % end within one ulp of the fp32 weight and the changes differ by 13 % (norms). The bounds below
    leave margin for that and reject a learner that does not update (0 %, 0 %, 100 %)."""
    state, stats = _train(_config(tiny_model_cfg, ranks=1, zero_stage=2, dtype="bfloat16"), batch)
    want, _ = expected
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    initial = dict(tiny_policy.model.named_parameters())
    same_sign, within_ulp, change_error = _bf16_agreement(state, want, initial)
    assert same_sign > 0.99 and within_ulp > 0.6 and change_error < 0.25, (same_sign, within_ulp, change_error)
    no_op = {n: initial[n].detach().bfloat16() for n in want}
    assert _bf16_agreement(no_op, want, initial) == (0.0, 0.0, 1.0)
    assert torch.isfinite(torch.tensor(stats["loss"]))


@pytest.mark.parametrize(
    "schedule, expected",
    [
        # 2 warm-up steps (0, 1/2 of lr), then from lr linearly to 0 at step 6, or lr from then on
        ("linear", [0.0, 0.05, 0.1, 0.075, 0.05, 0.025]),
        ("constant", [0.0, 0.05, 0.1, 0.1, 0.1, 0.1]),
    ],
)
def test_lr_schedules_by_hand(schedule, expected):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = lr_schedule(opt, OptimConfig(lr=0.1, warmup_steps=2, schedule=schedule), 6)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx(expected)


def test_batch_size_errors(tiny_model_cfg):
    cfg = _config(tiny_model_cfg, micro_batch_size=3)
    with pytest.raises(ValueError, match="multiple of learner.micro_batch_size"):
        grad_accumulation_steps(learner_setup(cfg), 1)
    ds = deepspeed_config(learner_setup(_config(tiny_model_cfg)), world_size=2)
    assert (ds["train_batch_size"], ds["gradient_accumulation_steps"]) == (8, 2)


# ------------------------------------------------------------------------------ rollouts -> learner, token level


@pytest.fixture(scope="module")
def no_cot(tiny_model_cfg, ray_local):
    """T2I-R1's token-only ablation: rollouts without a semantic CoT (rollout.prompt.use_cot=false), image
    log-probs recorded and trained under the guided distribution with temperature, top-k and top-p in force, one
    update per batch. A rollout worker in this process, a K=1 learner on Ray."""
    from learner.actor import LearnerGroup
    from rollout.worker import RolloutWorker

    cfg = _config(
        tiny_model_cfg, micro_batch_size=4, updates_per_batch=1, loss=LossConfig(levels="token", image_logprob="guided")
    )
    cfg.rollout.prompt.use_cot = False
    cfg.rollout.image.temperature, cfg.rollout.image.top_k, cfg.rollout.image.top_p = 0.9, 20, 0.9
    worker = RolloutWorker(cfg.model, cfg.rollout, cfg.learner.loss.image_logprob)
    group = LearnerGroup(learner_setup(cfg))
    try:
        yield cfg, worker, group
    finally:
        group.shutdown()
        worker.close()


def _no_cot_samples(worker, seed: int):
    from core.records import PromptRecord
    from learner.batch import train_samples

    prompts = [PromptRecord("a red cube", index=0), PromptRecord("two green balls", index=1)]
    groups = worker.rollout(prompts, seed)
    assert all(s.cot_ids == [] and s.cot_prompt_ids == [] for g in groups for s in g.samples)
    return train_samples(groups, [[1.0, -1.0, 0.5, -0.5], [-0.2, 0.8, -1.2, 0.6]])


def test_token_level_trains_on_rollouts_without_a_semantic_cot(no_cot):
    """On main the learner rejected the empty CoT context even though loss.levels=token trains no CoT."""
    cfg, worker, learner = no_cot
    samples = _no_cot_samples(worker, seed=3)
    before = learner.full_trainable_state()
    stats = learner.train_batch(samples)
    assert learner.version() == 1 and set(k.split("/")[0] for k in stats if "/" in k) == {"token"}
    after = learner.full_trainable_state()
    assert any(not torch.equal(before[n], after[n]) for n in before)
    # one update: the proximal log-probs are the loss forward's own, so the ratio is exactly 1
    assert stats["token/ratio_mean"] == 1.0 and stats["token/clip_frac"] == 0.0
    # guided mode end to end: the worker's recorded log-probs are the learner's, so the weights are ~1
    assert stats["token/logp_gap_max"] < 1e-4 and stats["token/no_behaviour_frac"] == 0.0
    assert stats["token/is_weight_mean"] == pytest.approx(1.0, abs=1e-4)


def test_importance_weights_of_a_batch_mixing_shifted_and_missing_behaviour_logprobs(no_cot):
    """The worker, synced to the learner, rolls out 8 samples (2 micro-batches of 4); their recorded image
    log-probs are then shifted by known amounts d, so each token's weight is min(exp(-d), 2) by hand, and some have
    none (or were recorded in another mode): weight 1, counted."""
    cfg, worker, learner = no_cot
    worker.update_weights(learner.full_trainable_state().items(), learner.version())
    samples = _no_cot_samples(worker, seed=4)
    shifts = {1: 1.0, 2: -1.0, 5: 0.5}  # sample -> d (behaviour = recorded + d)
    for i, d in shifts.items():
        samples[i].image_logprobs = [v + d for v in samples[i].image_logprobs]
    samples[3].image_logprobs = None
    samples[4].image_logprob_mode = "conditional"  # recorded under another distribution than the loss's
    stats = learner.train_batch(samples)

    e = math.exp
    weights = [[1, e(-1), 2, 1], [1, e(-0.5), 1, 1]]  # per sample of each micro-batch (e^1 truncated at 2)
    assert stats["token/is_weight_mean"] == pytest.approx(sum(sum(w) / 4 for w in weights) / 2, abs=1e-4)
    assert stats["token/is_truncated_frac"] == pytest.approx((1 / 4 + 0) / 2)
    assert stats["token/no_behaviour_frac"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    # over the tokens that have behaviour log-probs: gaps 0, 1, 1 and 0.5, 0, 0 (all samples have 16 tokens)
    assert stats["token/logp_gap_mean"] == pytest.approx((2 / 3 + 0.5 / 3) / 2, abs=1e-4)
    assert stats["token/logp_gap_max"] == pytest.approx(1.0, abs=1e-4)
    assert stats["token/ratio_mean"] == 1.0
