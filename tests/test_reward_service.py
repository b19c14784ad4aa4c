"""Reward servers and the client, in this process (no Ray): scoring, bad input, faults, limits, auth, CLI.

Scorers are the real embedded colour rule from the registry, except the ones named *ForTests below, which
misbehave on purpose (raise, return NaN, hang) to exercise the fault paths.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from core.images import encode_png
from core.ports import free_ports
from core.records import PromptRecord
from protos import reward_pb2, reward_pb2_grpc
from rewards import wire
from rewards.base import TASK_TYPES, ImageScore, PreparedScorer, Scorer, ScorerInputError
from rewards.client import SPLIT, RewardClient, RewardServiceError
from rewards.config import RewardsConfig
from rewards.registry import build_scorer
from rewards.server import RewardServer, ServerThread

ROOT = Path(__file__).resolve().parents[1]
RED_CAR = PromptRecord("a photo of a red car", "color", ["car"], ["red car"], index=7)
BLUE_CUP = PromptRecord(
    "a blue cup left of a dog",
    "spatial",
    ["cup", "dog"],
    spatial_info={"obj1": "cup", "obj2": "dog", "locality": "left of"},
    index=8,
)


# ------------------------------------------------------------------------------- test-only scorers


class RaisingScorerForTests(Scorer):
    name, version = "color", "raises"

    def score(self, prompt, images):
        raise RuntimeError("model exploded on purpose")


class NaNScorerForTests(Scorer):
    name, version = "color", "nan"

    def score(self, prompt, images):
        return [ImageScore(float("nan")) for _ in images]


class HangingScorerForTests(Scorer):
    """Blocks until released (at most 60 s), then scores 0.5: a replica that is too slow, or a model that holds
    the next group in the server's queue."""

    name, version = "color", "hangs"

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()

    def score(self, prompt, images):
        self.entered.set()
        self.release.wait(60)
        return [ImageScore(0.5) for _ in images]


class PreparingScorerForTests(PreparedScorer):
    """Scores each image by its mean pixel value, computed in ``prepare_image``, and records the threads each part
    ran on. The two images whose means are in ``meet`` wait for each other in ``prepare_image``: a server that
    prepared them one after the other would never get past the first (the barrier times out, the call fails).
    An image whose pixels are all 7 is refused."""

    name, version = "color", "prepares"

    def __init__(self, meet: tuple[float, float]):
        self.meet = meet
        self.barrier = threading.Barrier(2, timeout=30)
        self.threads: dict[str, set[str]] = {"prepare": set(), "score": set()}

    def prepare_image(self, prompt, image):
        self.threads["prepare"].add(threading.current_thread().name)
        if (image == 7).all():
            raise ScorerInputError("all pixels are 7")
        mean = float(image.mean())
        if mean in self.meet:
            self.barrier.wait()
        return mean

    def score_prepared(self, prompt, prepared):
        self.threads["score"].add(threading.current_thread().name)
        return [ImageScore(m) for m in prepared]


# ------------------------------------------------------------------------------- helpers


def images(n=4, size=16, seed=0):
    """Solid colours: red, blue, then noise, so colour scores differ by image."""
    rng = np.random.default_rng(seed)
    out = [np.full((size, size, 3), (220, 20, 30), np.uint8), np.full((size, size, 3), (20, 70, 220), np.uint8)]
    out += [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n - 2)]
    return out[:n]


def start(scorer, cfg=None, **kw):
    thread = ServerThread(RewardServer(scorer, cfg or RewardsConfig(), "127.0.0.1", **kw))
    thread.start()
    return thread


def raw_stub(address, mb=256):
    return reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(address, options=wire.channel_options(mb)))


def expected(scorer, prompt, imgs):
    return [s.score for s in scorer.score(prompt, imgs)]


@pytest.fixture(scope="module")
def color():
    return build_scorer("color", RewardsConfig())


@pytest.fixture(scope="module")
def color_server(color):
    thread = start(color)
    yield thread
    thread.stop(0)


@pytest.fixture(scope="module")
def client(color_server):
    with RewardClient(RewardsConfig(retries=0), {"color": [color_server.address]}) as c:
        yield c


def assert_still_serves(client, color):
    imgs = images(2)
    batch = client.score([RED_CAR], [imgs])
    np.testing.assert_allclose(batch.scores("color"), expected(color, RED_CAR, imgs), rtol=0, atol=1e-12)


def call_fails(client, prompt, imgs, status, match):
    with pytest.raises(RewardServiceError) as info:
        client.score([prompt], [imgs])
    (attempts,) = info.value.failures.values()
    assert attempts[-1].status == status, attempts
    assert match in attempts[-1].message, attempts
    return attempts


# ------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("transport", ["raw", "png"])
def test_group_scores_equal_the_in_process_scorer(color, color_server, transport):
    groups = [images(4, seed=1), images(3, seed=2)]
    with RewardClient(RewardsConfig(retries=0, transport=transport), {"color": [color_server.address]}) as client:
        batch = client.score([RED_CAR, BLUE_CUP], groups)
    np.testing.assert_allclose(
        batch.scores("color"), expected(color, RED_CAR, groups[0]) + expected(color, BLUE_CUP, groups[1]), atol=1e-12
    )
    g0 = batch.groups[0].replies["color"]
    assert (g0.scorer, g0.version, g0.replica, g0.attempts) == ("color", color.version, color_server.address, 1)
    assert g0.details == [s.details for s in color.score(RED_CAR, groups[0])]
    assert batch.groups[0].request_id.endswith("-0-p7")
    assert batch.group_sizes() == [4, 3]
    lat = batch.latency()["color"]
    assert lat.calls == 2 and lat.retries == 0 and 0 < lat.mean_s <= lat.max_s
    assert set(lat.split) == set(SPLIT) and all(v >= 0 for v in lat.split.values())
    for g in batch.groups:
        r = g.replies["color"]
        # Without retries, the server-side parts and the wire make up the call, which the client timed around it.
        assert r.wire_s > 0 and r.decode_s > 0 and r.score_s > 0 and r.encode_s > 0
        assert r.wire_s + r.queue_s + r.decode_s + r.prepare_s + r.score_s <= r.latency_s


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the server prepares on min(4, cores) threads")
@pytest.mark.parametrize("transport", ["raw", "png"])
def test_images_are_prepared_in_parallel_off_the_model_thread_and_scored_in_order(transport):
    """A PreparedScorer's per-image step runs on the server's decoder threads, a group's first and last images at
    the same time (they wait for each other), and its model step on the one scoring thread, with the prepared
    images in the group's order; a refused image is INVALID_ARGUMENT naming it."""
    values = [200, 10, 120, 30, 90, 60, 250]  # solid images: each image's mean is its value
    group = [np.full((8 + i, 12, 3), v, np.uint8) for i, v in enumerate(values)]
    scorer = PreparingScorerForTests(meet=(float(values[0]), float(values[-1])))
    server = start(scorer)
    try:
        with RewardClient(RewardsConfig(retries=0, transport=transport), {"color": [server.address]}) as c:
            reply = c.score([RED_CAR], [group]).groups[0].replies["color"]
            assert reply.scores == values
            assert reply.prepare_s > 0 and reply.decode_s > 0
            assert reply.wire_s + reply.queue_s + reply.decode_s + reply.prepare_s + reply.score_s <= reply.latency_s
            assert len(scorer.threads["prepare"]) >= 2
            assert all(t.startswith("decode-color") for t in scorer.threads["prepare"]), scorer.threads
            assert [t.split("_")[0] for t in scorer.threads["score"]] == ["score-color"], scorer.threads
            refused = [group[1], group[2], np.full((4, 4, 3), 7, np.uint8)]
            call_fails(c, RED_CAR, refused, "INVALID_ARGUMENT", "rejected the input on image 2: all pixels are 7")
    finally:
        server.stop(0)


def test_time_split_puts_model_time_in_score_and_waiting_in_queue():
    """Two groups on a server whose model blocks the first until released: the first group's blocked time is
    score time, and the second group, parsed and waiting meanwhile, spends it in the queue, not on the wire."""
    hanging = HangingScorerForTests()
    server = start(hanging)
    held_s = 0.5
    try:
        with RewardClient(RewardsConfig(retries=0), {"color": [server.address]}) as c:
            result = {}
            caller = threading.Thread(
                target=lambda: result.setdefault("batch", c.score([RED_CAR] * 2, [images(2), images(2)]))
            )
            caller.start()
            stub = raw_stub(server.address)
            assert hanging.entered.wait(60)
            while stub.Health(reward_pb2.HealthRequest(), timeout=10).in_flight < 2:  # both groups have arrived
                time.sleep(0.01)
            time.sleep(held_s)
            hanging.release.set()
            caller.join(60)
        first, second = sorted((g.replies["color"] for g in result["batch"].groups), key=lambda r: r.score_s)[::-1]
        # Lower bounds only: the first group sat in the model for the whole hold; the second arrived before it
        # and, once decoded, waited for the model's thread (it spent the hold in the queue, not on the wire).
        assert first.score_s >= held_s
        assert second.queue_s + second.decode_s >= held_s
    finally:
        hanging.release.set()
        server.stop(0)


def test_batch_rewards_apply_the_ensemble_per_group(client, color):
    groups = [images(2, seed=3), images(3, seed=4)]
    batch = client.score([RED_CAR, RED_CAR], groups)
    cfg = RewardsConfig(ensemble="weighted")
    cfg.color.weight = 2.0
    got = batch.rewards(cfg)
    assert [len(g) for g in got] == [2, 3]
    for g, imgs in zip(got, groups):
        np.testing.assert_allclose(g, [2.0 * x for x in expected(color, RED_CAR, imgs)], atol=1e-12)


def test_replica_of_another_scorer_is_a_bad_reply(color_server):
    with RewardClient(RewardsConfig(retries=0), {"objects": [color_server.address]}, scorers=["objects"]) as c:
        attempts = call_fails(c, RED_CAR, images(2), "BAD_REPLY", "replica serves scorer 'color', not 'objects'")
        assert len(attempts) == 1


def test_health_and_info(color_server, color):
    stub = raw_stub(color_server.address)
    info = stub.Info(reward_pb2.InfoRequest(), timeout=10)
    assert (info.scorer, info.version, info.replica, info.pid) == (
        "color",
        color.version,
        color_server.address,
        os.getpid(),
    )
    assert info.max_message_bytes == 256 * 2**20 and not info.requires_token
    assert tuple(info.task_types) == TASK_TYPES
    health = stub.Health(reward_pb2.HealthRequest(), timeout=10)
    assert health.status == reward_pb2.HealthResponse.SERVING and health.in_flight == 0


# ------------------------------------------------------------------------------- bad input


def good_request(transport, **kw):
    req = wire.request_to_proto("bad-1", RED_CAR, images(2), transport)
    for k, v in kw.items():
        if k in ("images", "raw_images"):  # the count is then not stated, so that the image itself is what is wrong
            req.ClearField(k)
            getattr(req, k).extend(v)
            req.ClearField("num_images")
        else:
            setattr(req, k, v)
    return req


def raw(height, width, n_bytes):
    return reward_pb2.RawImage(height=height, width=width, rgb=bytes(n_bytes))


@pytest.mark.parametrize(
    "transport, request_kw, message",
    [
        ("png", dict(images=[b"GIF89a not a png at all"]), "request 'bad-1': image 0 (23 bytes): not PNG data"),
        ("png", dict(images=[encode_png(images(1)[0])[:60]]), "request 'bad-1': image 0 (60 bytes): corrupt PNG"),
        ("png", dict(num_images=3), "num_images says 3 but the request carries 2 images"),
        ("png", dict(images=[]), "empty group"),
        (
            "raw",
            dict(raw_images=[raw(16, 16, 768), raw(16, 16, 767)]),
            "request 'bad-1': raw image 1: 767 bytes of pixels, but a 16x16 RGB image needs height x width x 3 = 768",
        ),
        ("raw", dict(raw_images=[raw(4, 8, 4 * 8 * 4)]), "128 bytes of pixels, but a 8x4 RGB image needs"),
        ("raw", dict(raw_images=[raw(0, 16, 0)]), "raw image 0: height 0 and width 16: both must be >= 1"),
        ("raw", dict(raw_images=[raw(100_000, 100_000, 3)]), "raw image 0: 100000x100000 pixels is more than"),
        ("raw", dict(num_images=3), "num_images says 3 but the request carries 2 images"),
        ("raw", dict(images=[encode_png(images(1)[0])]), "carries both PNG images (1) and raw_images (2)"),
    ],
)
def test_bad_images_are_invalid_argument_and_the_server_stays_up(
    color_server, client, color, transport, request_kw, message
):
    req = good_request(transport, **request_kw)
    with pytest.raises(grpc.RpcError) as info:
        raw_stub(color_server.address).Score(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    assert_still_serves(client, color)


@pytest.mark.parametrize(
    "prompt, message",
    [
        (
            PromptRecord("a red car", "landscape", ["car"]),
            "unknown task_type 'landscape'; expected one of object, color, shape",
        ),
        (PromptRecord("a red car", "", ["car"]), "unknown task_type ''"),
        (PromptRecord("a red car", "color", []), "metadata.nouns is missing"),
        (
            PromptRecord("a cup left of a dog", "spatial", ["cup", "dog"]),
            "task_type 'spatial' needs metadata.spatial_info with obj1, obj2 and locality; "
            "missing obj1, obj2, locality",
        ),
        (
            PromptRecord("a cup left of a dog", "spatial", ["cup", "dog"], spatial_info={"obj1": "cup", "obj2": "dog"}),
            "missing locality",
        ),
        (PromptRecord("four coasters", "numeracy", ["coaster"]), "task_type 'numeracy' needs metadata.numeracy_info"),
        (
            PromptRecord("four coasters", "numeracy", ["coaster"], numeracy_info=[{"obj_name": "coaster", "num": 0}]),
            "numeracy_info item 0 needs a non-empty obj_name and num >= 1",
        ),
        (PromptRecord("   ", "color", ["car"]), "empty prompt"),
    ],
)
def test_bad_metadata_is_invalid_argument_and_not_retried(client, color, prompt, message):
    attempts = call_fails(client, prompt, images(2), "INVALID_ARGUMENT", message)
    assert len(attempts) == 1
    assert_still_serves(client, color)


def test_empty_group_through_the_client(client, color):
    call_fails(client, RED_CAR, [], "INVALID_ARGUMENT", "empty group")
    assert_still_serves(client, color)


def test_request_bytes_that_are_not_protobuf_are_invalid_argument(color_server, client, color):
    channel = grpc.insecure_channel(color_server.address)  # no stubs: the bytes go out as they are
    for method in ("Score", "Health"):
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(f"/t2i_r1.reward.v1.RewardService/{method}")(b"\xff\xfe not protobuf", timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        assert f"RewardService/{method} do not parse as its protobuf message" in info.value.details()
    channel.close()
    assert_still_serves(client, color)


def test_request_without_metadata(color_server):
    req = reward_pb2.ScoreRequest(request_id="x", prompt="a cat", images=[encode_png(images(1)[0])])
    with pytest.raises(grpc.RpcError) as info:
        raw_stub(color_server.address).Score(req, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no metadata" in info.value.details()


# ------------------------------------------------------------------------------- message limits


def noise(n, side, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(n)]


def test_messages_over_grpc_default_4mib_pass(client, color):
    imgs = noise(2, 900)  # incompressible: about 2 x 2.4 MB of PNG
    assert sum(len(encode_png(i)) for i in imgs) > 4 * 2**20
    np.testing.assert_allclose(client.score([RED_CAR], [imgs]).scores("color"), expected(color, RED_CAR, imgs))


def test_oversized_message_is_refused_by_the_server(color, client):
    small = start(color, RewardsConfig(max_message_mb=4))
    try:
        with RewardClient(RewardsConfig(retries=2), {"color": [small.address]}) as big_client:
            attempts = call_fails(
                big_client, RED_CAR, noise(2, 900), "RESOURCE_EXHAUSTED", "Received message larger than max"
            )
            assert len(attempts) == 1  # a size error is not retried
            imgs = images(2)
            np.testing.assert_allclose(
                big_client.score([RED_CAR], [imgs]).scores("color"), expected(color, RED_CAR, imgs)
            )
    finally:
        small.stop(0)


def test_oversized_message_is_refused_by_the_client_before_sending(color_server, client, color):
    with RewardClient(RewardsConfig(max_message_mb=4), {"color": [color_server.address]}) as small_client:
        attempts = call_fails(small_client, RED_CAR, noise(2, 900), "RESOURCE_EXHAUSTED", "larger than max")
        assert len(attempts) == 1
    health = raw_stub(color_server.address).Health(reward_pb2.HealthRequest(), timeout=10)
    assert health.status == reward_pb2.HealthResponse.SERVING
    assert_still_serves(client, color)


# ------------------------------------------------------------------------------- faulty scorers


@pytest.mark.parametrize(
    "scorer_cls, status, message",
    [
        (RaisingScorerForTests, "INTERNAL", "scorer 'color' failed: RuntimeError: model exploded on purpose"),
        (NaNScorerForTests, "INTERNAL", "scorer 'color' returned a non-finite score (nan) for image 0"),
    ],
)
def test_faulty_scorer_raises_in_the_client_never_a_zero(scorer_cls, status, message):
    server = start(scorer_cls())
    try:
        with RewardClient(RewardsConfig(retries=1), {"color": [server.address]}) as c:
            attempts = call_fails(c, RED_CAR, images(2), status, message)
            assert len(attempts) == 2  # INTERNAL may be a replica fault: retried once, then reported
        health = raw_stub(server.address).Health(reward_pb2.HealthRequest(), timeout=10)
        assert (health.status, health.failed, health.served) == (reward_pb2.HealthResponse.SERVING, 2, 0)
    finally:
        server.stop(0)


def test_error_message_names_scorer_request_replica_and_status():
    server = start(RaisingScorerForTests())
    try:
        with RewardClient(RewardsConfig(retries=0), {"color": [server.address]}) as c:
            with pytest.raises(RewardServiceError) as info:
                c.score([RED_CAR, RED_CAR], [images(2), images(2)])
        text = str(info.value)
        assert text.startswith("2 of 2 reward calls failed (no reward is made up for them):")
        assert "scorer 'color', request '" in text and f"{server.address}: INTERNAL: request '" in text
    finally:
        server.stop(0)


def test_deadline_applies_to_a_hanging_replica():
    hanging = HangingScorerForTests()
    server = start(hanging)
    try:
        with RewardClient(RewardsConfig(deadline_s=0.3, retries=0), {"color": [server.address]}) as c:
            attempts = call_fails(c, RED_CAR, images(2), "DEADLINE_EXCEEDED", "Deadline Exceeded")
            assert attempts[0].seconds < 10
    finally:
        hanging.release.set()
        server.stop(0)


def test_failed_replica_is_retried_on_another(color_server, color):
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nobody listens there
    groups = [images(2, seed=s) for s in range(4)]
    with RewardClient(RewardsConfig(retries=1, deadline_s=10), {"color": [dead, color_server.address]}) as c:
        batch = c.score([RED_CAR] * 4, groups)
    want = [x for g in groups for x in expected(color, RED_CAR, g)]
    np.testing.assert_allclose(batch.scores("color"), want, atol=1e-12)
    replies = [g.replies["color"] for g in batch.groups]
    # With retries=1 every group succeeded, so each retry went to the other replica; a fresh client's first
    # call goes to the first listed replica (the dead one), so at least one group was retried.
    assert all(r.replica == color_server.address for r in replies)
    assert {r.attempts for r in replies} <= {1, 2} and max(r.attempts for r in replies) == 2
    assert batch.latency()["color"].retries == sum(r.attempts - 1 for r in replies) >= 1


def test_all_replicas_failing_raises_with_every_attempt(color_server):
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]  # nobody listens there
    with RewardClient(RewardsConfig(retries=1, deadline_s=10), {"color": dead}) as c:
        with pytest.raises(RewardServiceError) as info:
            c.score([RED_CAR], [images(2)])
    (attempts,) = info.value.failures.values()
    assert sorted(a.replica for a in attempts) == sorted(dead)  # the retry went to the other replica
    assert all(a.status == "UNAVAILABLE" for a in attempts)


def test_scorer_without_replicas_is_an_error():
    with RewardClient(RewardsConfig(), {"color": []}) as c:
        with pytest.raises(RewardServiceError, match="no replica to call"):
            c.score([RED_CAR], [images(2)])


# ------------------------------------------------------------------------------- shared secret


def test_token_is_required_when_configured(color):
    server = start(color, RewardsConfig(token="s3cret"))
    try:
        for cfg in (RewardsConfig(retries=2), RewardsConfig(retries=2, token="wrong")):
            with RewardClient(cfg, {"color": [server.address]}) as c:
                attempts = call_fails(c, RED_CAR, images(2), "UNAUTHENTICATED", "missing or wrong token")
                assert len(attempts) == 1
        with pytest.raises(grpc.RpcError) as info:
            raw_stub(server.address).Health(reward_pb2.HealthRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with RewardClient(RewardsConfig(token="s3cret"), {"color": [server.address]}) as c:
            imgs = images(3)
            np.testing.assert_allclose(c.score([RED_CAR], [imgs]).scores("color"), expected(color, RED_CAR, imgs))
        info = raw_stub(server.address).Info(
            reward_pb2.InfoRequest(), timeout=10, metadata=((wire.AUTH_HEADER, wire.auth_value("s3cret")),)
        )
        assert info.requires_token
    finally:
        server.stop(0)


# ------------------------------------------------------------------------------- standalone server


def test_standalone_serve_command(color):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rewards.serve",
            "--scorer",
            "color",
            "--port",
            "0",
            "rewards.token=tok",
            "rewards.max_message_mb=8",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "rewards.serve printed nothing in 120 s"
        line = proc.stdout.readline().strip()
        assert line.startswith(f"serving color {color.version} on 127.0.0.1:"), (line, proc.stderr.read())
        address = line.rsplit(" ", 1)[1]
        with RewardClient(RewardsConfig(token="tok", max_message_mb=8), {"color": [address]}) as c:
            imgs = images(4)
            np.testing.assert_allclose(c.score([RED_CAR], [imgs]).scores("color"), expected(color, RED_CAR, imgs))
        info = raw_stub(address).Info(
            reward_pb2.InfoRequest(), timeout=10, metadata=((wire.AUTH_HEADER, wire.auth_value("tok")),)
        )
        assert info.max_message_bytes == 8 * 2**20 and info.pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
