"""Weight sync. Protocol tests run sender and receivers as threads of this process (each its own gloo group
member, all on 127.0.0.1); the end-to-end tests run the learner and rollout workers as Ray actors."""

import threading
import time

import pytest
import torch

from learner.distributed import Rendezvous
from learner.weight_sync import SyncGroup, SyncLayout, WeightReceiver, WeightSyncError, send_weights, tensor_checksums

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

    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r, _catch(receiver, r)))
               for r in range(1, receivers + 1)]
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


@pytest.mark.parametrize("bucket_elems,dtype", [(0, "float32"), (7, "float32"), (64, "float32"), (10_000, "float32"),
                                                (50, "bfloat16")])
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
