"""Weight sync. Protocol tests run sender and receivers as threads of this process (each its own gloo group
member, all on 127.0.0.1); the end-to-end tests run the learner and rollout workers as Ray actors."""

import threading
import time

import pytest
import torch

from weightsync.broadcast import SyncGroup, SyncLayout, WeightReceiver, WeightSyncError, send_weights, tensor_checksums
from weightsync.distributed import Rendezvous

HOST = "127.0.0.1"


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [("embed", (13, 6)), ("layer.0.w", (6, 6)), ("layer.0.b", (6,)), ("norm", (6,)), ("head", (9, 6))]
    return [(n, torch.randn(s, generator=g)) for n, s in shapes]


def _run(layout, named, version, receivers=2, timeout_s=20.0):
    """Sender on this thread, receivers on threads; returns (sender result or exception, {rank: result or exc})."""
    rdzv = Rendezvous(HOST, receivers + 1, timeout_s)
    results = {}

    def receiver(rank):
        group = SyncGroup.join(HOST, rdzv.port, rank, receivers + 1, "gloo", "cpu", timeout_s)
        return WeightReceiver(group, layout).receive()

    threads = [
        threading.Thread(target=lambda r=r: results.__setitem__(r, _catch(receiver, r)))
        for r in range(1, receivers + 1)
    ]
    for t in threads:
        t.start()
    group = SyncGroup.join(HOST, rdzv.port, 0, receivers + 1, "gloo", "cpu", timeout_s, store=rdzv.store)
    try:
        sent = send_weights(group, layout, version, iter(named))
    except Exception as e:
        sent = e
    for t in threads:
        t.join(timeout=timeout_s + 10)
        assert not t.is_alive(), "a receiver hung"
    return sent, results


def test_layout_chunks_are_fixed_size_buckets_over_one_stream():
    named = _params()  # 78 + 36 + 6 + 6 + 54 = 180 elements
    layout = SyncLayout.build([(n, t.shape) for n, t in named], "float32", bucket_mb=64 * 4 / 2**20)  # 64 elements
    assert layout.total_numel == 180 and layout.bucket_numel == 64
    assert layout.chunks() == [(0, 64), (64, 128), (128, 180)]
    per_tensor = SyncLayout.build([(n, t.shape) for n, t in named], "float32", bucket_mb=0)
    assert per_tensor.chunks() == [(0, 78), (78, 114), (114, 120), (120, 126), (126, 180)]
    assert SyncLayout.build([(n, t.shape) for n, t in named], "bfloat16", 64 * 2 / 2**20).bucket_numel == 64


@pytest.mark.parametrize(
    "bucket_elems,dtype", [(0, "float32"), (7, "float32"), (64, "float32"), (10_000, "float32"), (50, "bfloat16")]
)
def test_round_trip_is_bit_exact(bucket_elems, dtype):
    named = _params(1)
    itemsize = 2 if dtype == "bfloat16" else 4
    layout = SyncLayout.build([(n, t.shape) for n, t in named], dtype, bucket_elems * itemsize / 2**20)
    sent, results = _run(layout, named, version=5)
    assert sent["chunks"] == len(layout.chunks())
    want = tensor_checksums(named, layout.torch_dtype)
    for rank in (1, 2):
        version, received = results[rank]
        assert version == 5
        assert [n for n, _ in received] == [n for n, _ in named]
        assert all(t.shape == p.shape and t.dtype == layout.torch_dtype for (_, t), (_, p) in zip(received, named))
        assert tensor_checksums(received) == want


def test_layout_check_names_and_shapes():
    named = _params()
    layout = SyncLayout.build([(n, t.shape) for n, t in named], "float32", 1)
    layout.check(named)
    with pytest.raises(ValueError, match="layout mismatch.*head"):
        layout.check(named[:-1])
    with pytest.raises(ValueError, match=r"shapes: \['norm"):
        layout.check(named[:3] + [("norm", torch.zeros(7))] + named[4:])


def test_receiver_dying_mid_sync_fails_loudly_and_nothing_is_applied():
    """Receiver 2 takes the header and one bucket, then drops out (its connections close, as when its process
    dies). The sender must raise naming the version and how far it got, drain its tensor iterator (ZeRO-3
    ranks gather in step with it), and close the group so receiver 1 fails at once, with no weights."""
    named = _params(2)
    layout = SyncLayout.build([(n, t.shape) for n, t in named], "float32", 16 * 4 / 2**20)  # 12 chunks
    produced = []

    def tensors():
        for n, t in named:
            produced.append(n)
            yield n, t

    def dying_receiver(rank):
        group = SyncGroup.join(HOST, rdzv_port[0], rank, 3, "gloo", "cpu", 20.0)
        if rank == 1:
            return WeightReceiver(group, layout).receive()
        group.broadcast(torch.zeros(4, dtype=torch.int64))
        group.broadcast(torch.zeros(16))
        group.close()
        return "left"

    rdzv = Rendezvous(HOST, 3, 20.0)
    rdzv_port = [rdzv.port]
    results = {}
    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r, _catch(dying_receiver, r))) for r in (1, 2)]
    for t in threads:
        t.start()
    group = SyncGroup.join(HOST, rdzv.port, 0, 3, "gloo", "cpu", 20.0, store=rdzv.store)
    t0 = time.perf_counter()
    with pytest.raises(WeightSyncError, match=r"sending weight version 9 failed after \d+ of 12 chunks"):
        send_weights(group, layout, 9, tensors())
    for t in threads:
        t.join(timeout=30)
    assert time.perf_counter() - t0 < 15  # receiver 1 failed fast, not at the 20 s timeout
    assert produced == [n for n, _ in named]  # drained
    assert results[2] == "left"
    assert isinstance(results[1], WeightSyncError) and "nothing applied" in str(results[1])
    with pytest.raises(WeightSyncError, match="closed"):
        group.broadcast(torch.zeros(1))


def _catch(fn, *args):
    try:
        return fn(*args)
    except Exception as e:
        return e


# --------------------------------------------------------------------------------------------------- end to end


def _e2e_config(model_cfg, engine="transformers"):
    import copy

    from cluster.config import Config

    cfg = Config()
    cfg.model = copy.deepcopy(model_cfg)
    cfg.rollout.workers, cfg.rollout.group_size, cfg.rollout.num_cpus_per_worker = 2, 2, 0.5
    cfg.rollout.cot.max_new_tokens = 8
    cfg.rollout.cot.engine = engine
    cfg.trainer.prompts_per_step, cfg.trainer.steps = 2, 2
    cfg.learner.micro_batch_size, cfg.learner.num_cpus_per_rank = 2, 0.5
    cfg.learner.optim.lr = 0.05  # large, so that two steps visibly change the greedy outputs of a random model
    cfg.learner.optim.warmup_steps = 0  # (the embedded default's warm-up would make the first step's rate 0)
    cfg.learner.sync_bucket_mb = 1  # several buckets (the tiny model's trainable weights are ~3 MB in fp32)
    cfg.learner.sync_timeout_s = 30.0
    return cfg


@pytest.fixture(scope="module", params=["transformers", pytest.param("vllm", marks=pytest.mark.slow)])
def cluster(request, ray_local, tiny_model_cfg):
    """A K=1 learner and two rollout workers. With the vLLM engine the text half is a separate copy of the
    weights inside vLLM, which the sync must reach too (vLLM workers take ~25 s each to start here)."""
    from cluster.config import learner_setup
    from cluster.weight_sync import WeightSyncCoordinator
    from learner.actor import LearnerGroup
    from rollout.actor import create_rollout_actors

    if request.param == "vllm":
        pytest.importorskip("vllm")
    cfg = _e2e_config(tiny_model_cfg, request.param)
    learner = LearnerGroup(learner_setup(cfg))
    workers = create_rollout_actors(cfg.model, cfg.rollout)
    sync = WeightSyncCoordinator(learner, workers)
    try:
        sync.connect()
        yield cfg, learner, workers, sync
    finally:
        learner.shutdown()
        for w in workers:
            ray_local.kill(w)


def _train_from_rollouts(cfg, learner, worker, prompts, seed):
    """Rollouts -> advantages -> learner step, as the training loop does (on-policy)."""
    import ray

    from learner.advantages import batch_advantages
    from learner.batch import train_samples

    groups = ray.get(worker.rollout.remote(prompts, seed))
    rewards = [[float(len(s.cot_ids) % 3) + 0.1 * j for j, s in enumerate(g.samples)] for g in groups]
    return learner.train_batch(train_samples(groups, batch_advantages(rewards, cfg.learner.advantage)))


def test_sync_makes_every_worker_bit_identical_to_the_learner_and_changes_greedy_output(cluster, tmp_path):
    import ray

    from core.records import PromptRecord
    from rollout.actor import create_rollout_actors

    cfg, learner, workers, sync = cluster
    prompts = [PromptRecord(prompt="a red cube", index=0), PromptRecord(prompt="two blue balls", index=1)]
    before = ray.get(workers[0].rollout.remote(prompts, 0, True))
    for step in range(2):
        _train_from_rollouts(cfg, learner, workers[step % 2], prompts, seed=step)
        assert sync.sync() == step + 1
    assert ray.get([w.version.remote() for w in workers]) == [2, 2]

    from policy.model import DTYPES

    learner_sums = tensor_checksums(learner.full_trainable_state().items(), DTYPES[cfg.model.dtype])
    worker_sums = ray.get([w.parameter_checksums.remote() for w in workers])
    assert all(s == learner_sums for s in worker_sums)

    # greedy generation (text engine AND image sampler) now equals that of a worker started from the learner's
    # exported weights, and differs from before the updates
    export = learner.export_hf(str(tmp_path / "export"))
    after = ray.get(workers[1].rollout.remote(prompts, 0, True))
    ref_cfg = _e2e_config(cfg.model, cfg.rollout.cot.engine)
    ref_cfg.model.path = export
    ref_worker = create_rollout_actors(ref_cfg.model, ref_cfg.rollout, count=1)[0]
    try:
        expected = ray.get(ref_worker.rollout.remote(prompts, 0, True))
    finally:
        ray.kill(ref_worker)

    def greedy(groups):
        return [(s.cot_ids, s.image_ids) for g in groups for s in g.samples]

    assert greedy(after) == greedy(expected)
    # both levels changed, so the equality above shows the text engine's weights were updated too (with vLLM
    # they are a separate copy) and not only the image sampler's
    assert [c for c, _ in greedy(after)] != [c for c, _ in greedy(before)]
    assert [i for _, i in greedy(after)] != [i for _, i in greedy(before)]
    assert all(s.policy_version == 2 for g in after for s in g.samples)


@pytest.mark.parametrize("cluster", ["transformers"], indirect=True)
def test_sync_to_a_dead_worker_fails_loudly_and_the_survivor_keeps_its_version(cluster):
    import ray

    cfg, learner, workers, sync = cluster
    version_before = ray.get(workers[0].version.remote())
    sums_before = ray.get(workers[0].parameter_checksums.remote())
    from core.records import PromptRecord

    _train_from_rollouts(cfg, learner, workers[0], [PromptRecord("a cat", index=0), PromptRecord("a dog", index=1)], 9)
    import psutil

    pid = ray.get(workers[1].__ray_call__.remote(lambda self: __import__("os").getpid()))
    ray.kill(workers[1])
    try:  # ray.kill is asynchronous; sync only once the process is gone
        psutil.Process(pid).wait(timeout=30)
    except psutil.NoSuchProcess:
        pass
    with pytest.raises(WeightSyncError) as err:
        sync.sync()
    message = str(err.value)
    assert "rollout worker 1 died" in message and "learner rank 0" in message, message
    assert ray.get(workers[0].version.remote()) == version_before
    assert ray.get(workers[0].parameter_checksums.remote()) == sums_before  # nothing half-applied

    # the driver re-forms the group with the survivors and carries on
    from cluster.weight_sync import WeightSyncCoordinator

    survivors = WeightSyncCoordinator(learner, workers[:1])
    survivors.connect()
    assert survivors.sync() == learner.version() == version_before + 1
