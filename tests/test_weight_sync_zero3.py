"""Weight sync from the janus-pro-7b preset's learner set-up: K = 2 ranks under ZeRO-3, bf16. A module of its own:
the module-scoped K = 1 cluster of tests/test_weight_sync.py holds 1.5 of the test Ray's 2 CPUs until its module
ends, which would leave these actors waiting for CPUs."""

import pytest
import torch

from tests.test_weight_sync import _e2e_config, _train_from_rollouts
from weightsync.broadcast import tensor_checksums


@pytest.mark.slow
def test_sync_from_a_zero3_learner_of_two_ranks_in_bf16(ray_local, tiny_model_cfg):
    """The janus-pro-7b preset's set-up: two learner ranks under ZeRO-3 with every parameter partitioned (as a 7B
    model's large ones are), bf16 learner and rollout weights. The sync gathers each parameter from both ranks'
    shards while rank 0 broadcasts; after one update the worker holds the learner's weights bit for bit. (One
    worker: the broadcast to several is the protocol tests' and the K=1 tests' subject.)"""
    import ray

    from cluster.config import learner_setup
    from cluster.weight_sync import WeightSyncCoordinator
    from core.records import PromptRecord
    from learner.actor import LearnerGroup
    from policy.model import load_policy
    from rollout.actor import create_rollout_actors

    cfg = _e2e_config(tiny_model_cfg)
    cfg.model.dtype = "bfloat16"
    cfg.learner.ranks, cfg.learner.zero_stage, cfg.learner.dtype = 2, 3, "bfloat16"
    cfg.learner.zero3_persistence_threshold = 0
    cfg.learner.micro_batch_size = 1
    cfg.learner.optim.lr = 1e-3
    learner = LearnerGroup(learner_setup(cfg))
    workers = create_rollout_actors(cfg.model, cfg.rollout, count=1)
    try:
        sync = WeightSyncCoordinator(learner, workers)
        sync.connect()
        assert sync.sync() == 0
        prompts = [PromptRecord(prompt="a red cube", index=0), PromptRecord(prompt="two blue balls", index=1)]
        _train_from_rollouts(cfg, learner, workers[0], prompts, seed=0)
        assert sync.sync() == 1 and ray.get(workers[0].version.remote()) == 1
        state = learner.full_trainable_state()
        initial = dict(load_policy(cfg.model).model.named_parameters())
        assert all(t.dtype == torch.bfloat16 for t in state.values())
        assert sum(not torch.equal(t, initial[n].detach()) for n, t in state.items()) > len(state) // 2  # it trained
        learner_sums = tensor_checksums(state.items(), torch.bfloat16)
        assert ray.get(workers[0].parameter_checksums.remote()) == learner_sums
    finally:
        learner.shutdown()
        for w in workers:
            ray_local.kill(w)
