"""Reward servers as Ray actors: replicas from the config, scaling while in use, a replica killed mid-call.

The replicas host the registry's colour scorer; HangOnceScorerForTests (below) is a test-only scorer that hangs
on the first call any of its replicas receives, so that the test can kill that replica mid-call.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest

from core.records import PromptRecord
from protos import reward_pb2, reward_pb2_grpc
from rewards.base import Scorer
from rewards.client import RewardClient
from rewards.config import ColorScorerConfig, RewardsConfig
from rewards.pool import FLEET_ACTOR, RewardFleet, ScorerPool, fleet_endpoints, get_fleet, launch_fleet
from rewards.registry import build_scorer

ROOT = Path(__file__).resolve().parents[1]
RED_CAR = PromptRecord("a photo of a red car", "color", ["car"], ["red car"])


class HangOnceScorerForTests(Scorer):
    """The colour scorer, except that the first call made to any replica (whoever creates ``marker`` first)
    blocks for up to 60 s: the replica to kill mid-call."""

    name = "color"

    def __init__(self, marker: str):
        self.marker = marker
        self.inner = build_scorer("color", RewardsConfig())
        self.version = self.inner.version

    def score(self, prompt, images):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return self.inner.score(prompt, images)
        threading.Event().wait(60)
        raise AssertionError("the hanging replica should have been killed")


@pytest.fixture(scope="module")
def ray_by_value(ray_local):
    """Ship this module's test-only scorer to Ray workers by value (they cannot import the tests)."""
    ray_local.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray_local
    ray_local.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def images(n, seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for _ in range(n)]


def expected(prompt, groups):
    color = build_scorer("color", RewardsConfig())
    return [s.score for g in groups for s in color.score(prompt, g)]


def health(address):
    stub = reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(address))
    return stub.Health(reward_pb2.HealthRequest(), timeout=10)


def test_fleet_starts_the_configured_replicas_on_the_node_address(ray_local):
    cfg = RewardsConfig(color=ColorScorerConfig(enabled=True, replicas=2, num_cpus=0.3))
    fleet = RewardFleet(cfg)
    try:
        # The replicas hold their configured CPU share (and nothing else in this session holds any CPU now).
        def in_use():
            return ray_local.cluster_resources()["CPU"] - ray_local.available_resources().get("CPU", 0.0)

        for _ in range(100):  # bounded: Ray publishes resource use within about a second
            if in_use() == pytest.approx(0.6):
                break
            threading.Event().wait(0.1)
        assert in_use() == pytest.approx(0.6)  # 2 replicas x 0.3 CPU
        addresses = fleet.endpoints()["color"]
        assert len(addresses) == 2 and all(a.startswith("127.0.0.1:") for a in addresses)
        pids = set()
        for a in addresses:
            info = reward_pb2_grpc.RewardServiceStub(grpc.insecure_channel(a)).Info(
                reward_pb2.InfoRequest(), timeout=10
            )
            assert info.scorer == "color" and info.replica == a
            pids.add(info.pid)
        assert len(pids) == 2 and os.getpid() not in pids  # two actor processes, not this one
        groups = [images(3, s) for s in range(4)]
        with RewardClient(cfg, fleet.endpoints) as client:
            batch = client.score([RED_CAR] * 4, groups)
        np.testing.assert_allclose(batch.scores("color"), expected(RED_CAR, groups), atol=1e-12)
        assert {g.replies["color"].replica for g in batch.groups} == set(addresses)
    finally:
        fleet.shutdown()


@pytest.mark.slow  # 10-25 s: starts a fleet actor, three replica processes and a CLI process
def test_replica_count_changes_between_calls_without_restarting(ray_local):
    cfg = RewardsConfig()  # colour: 1 replica
    handle = launch_fleet(cfg)
    try:
        client = RewardClient(cfg, fleet_endpoints(handle))
        groups = [images(2, s) for s in range(6)]
        want = expected(RED_CAR, groups)

        first = client.score([RED_CAR] * 6, groups)
        (original,) = {g.replies["color"].replica for g in first.groups}
        np.testing.assert_allclose(first.scores("color"), want, atol=1e-12)

        # Another process scales the running fleet up (the operator's command); the same client keeps going.
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "rewards.pool",
                "--address",
                ray_local.get_runtime_context().gcs_address,
                "scale",
                "color",
                "3",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert cli.returncode == 0, cli.stderr
        up = ray_local.get(get_fleet(FLEET_ACTOR).endpoints.remote())["color"]
        assert len(up) == 3 and up[0] == original
        assert cli.stdout.strip() == f"color: 3 replica(s) {' '.join(up)}"
        batch = client.score([RED_CAR] * 6, groups)
        np.testing.assert_allclose(batch.scores("color"), want, atol=1e-12)
        used = [g.replies["color"].replica for g in batch.groups]
        assert set(used) == set(up)  # the new replicas take traffic

        down = ray_local.get(handle.scale.remote("color", 1))
        assert down == [original]
        batch = client.score([RED_CAR] * 6, groups)
        np.testing.assert_allclose(batch.scores("color"), want, atol=1e-12)
        assert {g.replies["color"].replica for g in batch.groups} == {original}
        assert batch.latency()["color"].retries == 0  # removed replicas were unpublished before they stopped
        for gone in set(up) - {original}:
            with pytest.raises(grpc.RpcError) as info:
                health(gone)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        client.close()
    finally:
        ray_local.get(handle.shutdown.remote())
        ray_local.kill(handle)


def test_scale_rejects_zero_and_unknown(ray_local):
    pool = ScorerPool("color", RewardsConfig())
    with pytest.raises(ValueError, match="replicas must be >= 1, got 0"):
        pool.scale(0)
    with pytest.raises(ValueError, match="unknown scorer 'paint'"):
        ScorerPool("paint", RewardsConfig())


def test_replica_killed_mid_call_is_retried_on_another(ray_by_value, tmp_path):
    ray = ray_by_value
    cfg = RewardsConfig(retries=1, deadline_s=60)
    pool = ScorerPool("color", cfg, functools.partial(HangOnceScorerForTests, str(tmp_path / "hung")))
    try:
        addresses = pool.scale(2)
        group = images(3, 0)
        with RewardClient(cfg, {"color": addresses}) as client, ThreadPoolExecutor(1) as ex:
            call = ex.submit(client.score, [RED_CAR], [group])
            hung = None
            for _ in range(600):  # bounded: up to 60 s for the call to reach a replica
                busy = [a for a in addresses if health(a).in_flight == 1]
                if busy and (tmp_path / "hung").exists():
                    hung = busy[0]
                    break
                threading.Event().wait(0.1)
            assert hung is not None, "the call never reached a replica"
            ray.kill(next(h for h, a, _ in pool._replicas if a == hung))
            batch = call.result(timeout=120)
        reply = batch.groups[0].replies["color"]
        (survivor,) = set(addresses) - {hung}
        assert reply.replica == survivor and reply.attempts == 2
        np.testing.assert_allclose(reply.scores, expected(RED_CAR, [group]), atol=1e-12)
        # heal: the dead replica is replaced by a new one that serves; the survivor is untouched
        assert pool.heal() == [hung]
        now = pool.addresses
        assert len(now) == 2 and survivor in now and hung not in now
        (fresh,) = set(now) - {survivor}
        assert health(fresh).scorer == "color"
        with RewardClient(cfg, {"color": [fresh]}) as client:
            np.testing.assert_allclose(client.score([RED_CAR], [group]).scores("color"), expected(RED_CAR, [group]))
        assert pool.heal() == []
    finally:
        pool.shutdown()


def test_the_pool_command_finds_the_running_fleet_or_asks_which(ray_local):
    """Each training job runs its fleet under a name of its own: the command uses the only one, lists several."""
    from rewards.pool import FLEET_NAMESPACE, find_fleet

    with pytest.raises(LookupError, match="no reward fleet runs on this cluster"):
        find_fleet()

    def fleet(name: str):  # a fleet actor as a job starts it, hosting no scorer (so no replica processes)
        return (
            ray_local.remote(RewardFleet)
            .options(name=name, namespace=FLEET_NAMESPACE, num_cpus=0)
            .remote(RewardsConfig(), {})
        )

    handles = [fleet("reward_fleet_101")]
    try:
        ray_local.get(handles[0].endpoints.remote())
        assert ray_local.get(find_fleet().endpoints.remote()) == {}  # the only one: no name needed
        handles.append(fleet("reward_fleet_202"))
        ray_local.get(handles[1].endpoints.remote())
        with pytest.raises(
            LookupError, match="2 reward fleets .*reward_fleet_101, reward_fleet_202; choose one with --name"
        ):
            find_fleet()
        assert ray_local.get(find_fleet("reward_fleet_202").endpoints.remote()) == {}
        with pytest.raises(LookupError, match="no reward fleet named 'reward_fleet_9'"):
            find_fleet("reward_fleet_9")
        cli = subprocess.run(
            [sys.executable, "-m", "rewards.pool", "--address", ray_local.get_runtime_context().gcs_address, "status"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert cli.returncode == 2 and "reward_fleet_101, reward_fleet_202" in cli.stderr, cli.stderr
    finally:
        for h in handles:
            ray_local.kill(h)
