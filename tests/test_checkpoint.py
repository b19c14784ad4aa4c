"""Learner checkpoints: train 2 steps, save, resume in a fresh learner, train 2 more == 4 steps straight; and
the exported HF directory loads with JanusForConditionalGeneration.from_pretrained.

Tolerance: bit-identical. Resume restores weights, AdamW moments, the scheduler and the step exactly, and the
CPU kernels are deterministic for the same ranks and shapes, so nothing may differ."""

import copy

import pytest
import torch

from cluster.config import Config, learner_setup
from learner.config import LossConfig, OptimConfig
from learner.synthetic import random_samples
from policy.config import ModelConfig


def _config(model_cfg, ranks=1, zero_stage=2) -> Config:
    cfg = Config()
    cfg.model = copy.deepcopy(model_cfg)
    cfg.trainer.prompts_per_step, cfg.rollout.group_size, cfg.trainer.steps = 1, 4, 4
    cfg.learner.ranks, cfg.learner.zero_stage, cfg.learner.micro_batch_size = ranks, zero_stage, 2
    cfg.learner.num_cpus_per_rank = 0.5
    cfg.learner.optim = OptimConfig(lr=1e-3, warmup_steps=1)
    cfg.learner.loss = LossConfig(beta=0.04)
    return cfg


def _batch(policy, step):
    # no behaviour log-probs (importance weight 1); made by the version it trains (one update per batch)
    return random_samples(policy, 4, seed=100 + step, version=step)


def _rng(group):
    import ray

    return ray.get(group.actors[0].__ray_call__.remote(lambda self: torch.get_rng_state()))


@pytest.mark.parametrize(
    "ranks,zero_stage",
    [
        (1, 2),
        pytest.param(2, 3, marks=pytest.mark.slow),
    ],
    ids=["K1-zero2", "K2-zero3"],
)
def test_resume_equals_straight_run_and_export_loads(
    ray_local, tiny_model_cfg, tiny_policy, tmp_path, ranks, zero_stage
):
    from transformers import JanusForConditionalGeneration

    from learner.actor import LearnerGroup
    from policy.model import load_policy

    cfg = _config(tiny_model_cfg, ranks, zero_stage)
    ckpt = tmp_path / "ckpt"

    straight = LearnerGroup(learner_setup(cfg))
    try:
        for step in range(2):
            straight.train_batch(_batch(tiny_policy, step))
        saved = straight.save_checkpoint(str(ckpt))
        assert saved.endswith("step_2") and (ckpt / "latest").read_text().strip() == "step_2"
        rng_at_save = _rng(straight)
        straight_lr = [straight.train_batch(_batch(tiny_policy, step))["lr"] for step in (2, 3)]
        straight_state = straight.full_trainable_state()
        assert straight.version() == 4
        export = tmp_path / "export"
        assert straight.export_hf(str(export)) == str(export)
    finally:
        straight.shutdown()

    resumed = LearnerGroup(learner_setup(cfg))
    try:
        assert resumed.load_checkpoint(str(ckpt)) == 2 and resumed.version() == 2
        assert torch.equal(_rng(resumed), rng_at_save)
        resumed_lr = [resumed.train_batch(_batch(tiny_policy, step))["lr"] for step in (2, 3)]
        resumed_state = resumed.full_trainable_state()
    finally:
        resumed.shutdown()

    assert resumed_lr == straight_lr  # the scheduler resumed: linear decay continues from step 2
    initial = {n: p.detach() for n, p in tiny_policy.model.named_parameters()}
    for n, t in straight_state.items():
        assert torch.equal(resumed_state[n], t), n
        assert not torch.equal(t, initial[n]) or n.endswith("embed_tokens.weight"), n  # embeddings of unused ids stay

    # the export: a complete Janus directory with the trained weights and the untouched frozen parts
    loaded = JanusForConditionalGeneration.from_pretrained(export, local_files_only=True)
    for n, p in loaded.named_parameters():
        want = straight_state.get(n, initial[n])
        assert torch.equal(p.detach(), want), n
    assert (loaded.generation_config.generation_kwargs or {}).get("boi_token_id") == tiny_policy.ids.boi
    policy = load_policy(ModelConfig(path=str(export)))  # usable as model.path (tokenizer included)
    assert policy.ids == tiny_policy.ids


def test_resume_from_missing_checkpoint_is_a_clear_error(tmp_path):
    from learner.checkpoint import load_checkpoint

    with pytest.raises(FileNotFoundError, match="no checkpoint in"):
        load_checkpoint(trainer=type("T", (), {"rank": 0, "world_size": 1})(), directory=tmp_path)
