"""The reward client: every group to one replica of every enabled scorer, all in parallel, over gRPC.

* Spreading: each call goes to the scorer's replica with the fewest calls in flight from this client (ties
  rotate), so a replica added by scaling takes traffic from its first call on.
* Endpoints are read at the start of every :meth:`RewardClient.score` (a mapping, or a callable such as
  ``RewardFleet.endpoints``), so replica counts can change between calls without restarting anything.
* Deadlines: every attempt gets ``rewards.deadline_s``. Retries: up to ``rewards.retries`` more attempts, each on
  a replica not tried yet for that group while there is one, for failures a retry can fix (replica down,
  deadline, a scorer crash); a bad request (INVALID_ARGUMENT, UNAUTHENTICATED, RESOURCE_EXHAUSTED) is not retried.
* A failure is never a zero reward: :meth:`score` raises :class:`RewardServiceError` naming every scorer and
  group that failed, and each attempt's replica, status and message.
* Per-scorer latency comes back with the scores: the client-side wall time of each group's call (retries
  included) and where the answering call's time went: encode (building the request), wire (the round trip less
  the server's handler time), queue (waiting on the server for its decoder and model), decode, score.
* Requests are built and serialised on worker threads (``wire.request_bytes``), group by group, with the images
  as ``rewards.transport`` says (raw pixels or PNG); each group's calls go out as soon as its request is built,
  so remote servers score early groups while the client encodes later ones.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import grpc
import numpy as np

from core.records import PromptRecord
from protos import reward_pb2
from rewards import wire
from rewards.config import SCORER_NAMES, RewardsConfig
from rewards.ensemble import combine_for

Endpoints = Mapping[str, Sequence[str]]  # scorer name -> replica addresses (host:port)
EndpointSource = Union[Endpoints, Callable[[], Endpoints]]

_SERVICE = reward_pb2.DESCRIPTOR.services_by_name["RewardService"]
SCORE_METHOD = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['Score'].name}"  # gRPC path of RewardService.Score

# Failures another attempt can fix: the replica is gone or stopping, too slow, or crashed on this call.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


def enabled_scorers(cfg: RewardsConfig) -> list[str]:
    return [n for n in SCORER_NAMES if getattr(cfg, n).enabled]


@dataclass
class Attempt:
    replica: str
    status: str  # gRPC status name, or BAD_REPLY when the reply did not match the request
    message: str
    seconds: float


class RewardServiceError(RuntimeError):
    """Some groups could not be scored. ``failures`` maps (scorer, request id) to the attempts made."""

    def __init__(self, failures: dict[tuple[str, str], list[Attempt]], total_calls: int):
        self.failures = failures
        lines = [f"{len(failures)} of {total_calls} reward calls failed (no reward is made up for them):"]
        for (scorer, rid), attempts in failures.items():
            tries = "; ".join(f"{a.replica}: {a.status}: {a.message}" for a in attempts) or "no replica to call"
            lines.append(f"  scorer {scorer!r}, request {rid!r}, {len(attempts)} attempt(s): {tries}")
        super().__init__("\n".join(lines))


@dataclass
class ScorerReply:
    """One scorer's answer for one group."""

    scorer: str
    version: str
    scores: list[float]
    details: list[dict[str, Any]]
    replica: str  # the replica that answered
    latency_s: float  # client-side wall time of this group's call, retries included (encoding not included)
    attempts: int
    # Where the answering attempt's time went (seconds):
    encode_s: float  # building and serialising the group's request on the client (one serves all its scorers)
    wire_s: float  # round trip less the server's handler time: (de)serialising, transport, both event loops
    queue_s: float  # on the server, waiting for its decoder and model threads
    decode_s: float  # on the server, checking the request and decoding its images
    prepare_s: float  # on the server, the scorer's model-free preprocessing (off the model's thread)
    score_s: float  # on the server, the scorer's model and the reply's details


@dataclass
class GroupRewards:
    prompt: PromptRecord
    request_id: str
    replies: dict[str, ScorerReply]  # scorer name -> reply


# ScorerReply's split of a call's time
SPLIT = ("encode_s", "wire_s", "queue_s", "decode_s", "prepare_s", "score_s")


@dataclass
class LatencyStats:
    calls: int
    mean_s: float
    p50_s: float
    max_s: float
    retries: int  # attempts beyond the first, over all calls
    split: dict[str, float]  # mean seconds per call of each part of SPLIT (see ScorerReply)


@dataclass
class RewardBatch:
    groups: list[GroupRewards]
    wall_s: float = 0.0
    scorers: list[str] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)  # scorer -> replicas this batch could be sent to

    def scores(self, scorer: str) -> np.ndarray:
        """Scores of one scorer for every image of the batch, groups concatenated in order."""
        return np.array([s for g in self.groups for s in g.replies[scorer].scores], dtype=np.float64)

    def per_scorer(self) -> dict[str, np.ndarray]:
        return {name: self.scores(name) for name in self.scorers}

    def group_sizes(self) -> list[int]:
        return [len(next(iter(g.replies.values())).scores) for g in self.groups]

    def rewards(self, cfg: RewardsConfig) -> list[np.ndarray]:
        """The ensemble reward of every image (rewards/ensemble.py, as configured), one array per group."""
        total = combine_for(self.per_scorer(), cfg)
        return np.split(total, np.cumsum(self.group_sizes())[:-1])

    def latency(self) -> dict[str, LatencyStats]:
        out = {}
        for name in self.scorers:
            replies = [g.replies[name] for g in self.groups]
            lat = [r.latency_s for r in replies]
            out[name] = LatencyStats(
                calls=len(replies),
                mean_s=statistics.fmean(lat),
                p50_s=statistics.median(lat),
                max_s=max(lat),
                retries=sum(r.attempts - 1 for r in replies),
                split={k: statistics.fmean(getattr(r, k) for r in replies) for k in SPLIT},
            )
        return out


class RewardClient:
    """Calls the reward servers from any thread; owns an event loop thread and one channel per replica."""

    def __init__(self, cfg: RewardsConfig, endpoints: EndpointSource, scorers: Optional[Sequence[str]] = None):
        self.cfg = cfg
        self.scorers = list(scorers) if scorers is not None else enabled_scorers(cfg)
        if not self.scorers:
            raise ValueError("no scorer to call: enable one in the config (rewards.<name>.enabled=true)")
        self._endpoints = endpoints
        self._metadata = ((wire.AUTH_HEADER, wire.auth_value(cfg.token)),) if cfg.token is not None else ()
        self._channels: dict[str, tuple[grpc.aio.Channel, grpc.aio.UnaryUnaryMultiCallable]] = {}
        self._in_flight: dict[str, int] = {}
        self._turn = itertools.count()
        self._encoder = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="encode")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="reward-client")
        self._thread.start()

    # ------------------------------------------------------------------------------------ public

    def endpoints(self) -> dict[str, list[str]]:
        """The current replicas of every scorer this client calls; raises if one has none."""
        source = self._endpoints() if callable(self._endpoints) else self._endpoints
        out = {name: list(source.get(name, ())) for name in self.scorers}
        empty = [n for n, addrs in out.items() if not addrs]
        if empty:
            raise RewardServiceError({(n, "*"): [] for n in empty}, len(self.scorers))
        return out

    def score(self, prompts: Sequence[PromptRecord], images: Sequence[Sequence[np.ndarray]]) -> RewardBatch:
        """Score every group (``images[i]`` are the G images of ``prompts[i]``) with every scorer."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts but {len(images)} image groups")
        endpoints = self.endpoints()
        batch_id = uuid.uuid4().hex[:8]
        ids = [f"{batch_id}-{i}-p{p.index}" for i, p in enumerate(prompts)]
        start = time.perf_counter()
        replies = asyncio.run_coroutine_threadsafe(
            self._score_all(ids, prompts, images, endpoints), self._loop
        ).result()
        groups = [GroupRewards(p, rid, rep) for p, rid, rep in zip(prompts, ids, replies)]
        return RewardBatch(
            groups,
            time.perf_counter() - start,
            list(self.scorers),
            {name: len(addresses) for name, addresses in endpoints.items()},
        )

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close_channels(set(self._channels)), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop.close()
            self._encoder.shutdown(wait=False)

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ internals

    async def _score_all(
        self,
        ids: list[str],
        prompts: Sequence[PromptRecord],
        images: Sequence[Sequence[np.ndarray]],
        endpoints: dict[str, list[str]],
    ) -> list[dict[str, ScorerReply]]:
        await self._close_channels(set(self._channels) - {a for addrs in endpoints.values() for a in addrs})
        loop = asyncio.get_running_loop()

        async def group(rid: str, prompt: PromptRecord, imgs: Sequence[np.ndarray]):
            # Encoding on worker threads: a group's calls start as soon as its own request is built, so the
            # servers score early groups while later ones are still being encoded.
            request, encode_s = await loop.run_in_executor(self._encoder, self._encode, rid, prompt, imgs)
            return await asyncio.gather(
                *(self._call(name, endpoints[name], rid, len(imgs), request, encode_s) for name in self.scorers)
            )

        results = await asyncio.gather(*(group(*args) for args in zip(ids, prompts, images)))
        failures = {
            (name, rid): r
            for rid, per_scorer in zip(ids, results)
            for name, r in zip(self.scorers, per_scorer)
            if isinstance(r, list)
        }
        if failures:
            raise RewardServiceError(failures, len(ids) * len(self.scorers))
        return [dict(zip(self.scorers, per_scorer)) for per_scorer in results]

    def _encode(self, rid: str, prompt: PromptRecord, imgs: Sequence[np.ndarray]) -> tuple[bytes, float]:
        start = time.perf_counter()
        return wire.request_bytes(rid, prompt, imgs, self.cfg.transport), time.perf_counter() - start

    def _score_method(self, address: str) -> grpc.aio.UnaryUnaryMultiCallable:
        """The replica's Score method, taking the request already serialised (see ``wire.request_bytes``)."""
        if address not in self._channels:
            channel = grpc.aio.insecure_channel(address, options=wire.channel_options(self.cfg.max_message_mb))
            score = channel.unary_unary(SCORE_METHOD, response_deserializer=reward_pb2.ScoreResponse.FromString)
            self._channels[address] = (channel, score)
            self._in_flight.setdefault(address, 0)
        return self._channels[address][1]

    async def _close_channels(self, addresses: set[str]) -> None:
        for address in addresses:
            channel, _ = self._channels.pop(address)
            self._in_flight.pop(address, None)
            await channel.close()

    def _pick(self, replicas: list[str], tried: list[str]) -> str:
        """Fewest calls in flight among replicas not tried yet for this group (all of them once each is)."""
        fresh = [a for a in replicas if a not in tried] or replicas
        offset = next(self._turn)
        rotated = [fresh[(offset + k) % len(fresh)] for k in range(len(fresh))]
        return min(rotated, key=lambda a: self._in_flight.get(a, 0))

    async def _call(
        self, scorer: str, replicas: list[str], rid: str, n_images: int, request: bytes, encode_s: float
    ) -> Union[ScorerReply, list[Attempt]]:
        """The scorer's reply for one group, or the list of failed attempts."""
        attempts: list[Attempt] = []
        tried: list[str] = []
        start = time.perf_counter()
        for _ in range(self.cfg.retries + 1):
            address = self._pick(replicas, tried)
            tried.append(address)
            score = self._score_method(address)
            self._in_flight[address] += 1
            t0 = time.perf_counter()
            try:
                reply = await score(request, timeout=self.cfg.deadline_s, metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                attempts.append(Attempt(address, e.code().name, e.details() or "", time.perf_counter() - t0))
                if e.code() in RETRYABLE:
                    continue
                return attempts
            finally:
                if address in self._in_flight:
                    self._in_flight[address] -= 1
            round_trip = time.perf_counter() - t0
            problem = self._check_reply(scorer, rid, n_images, reply)
            if problem:
                attempts.append(Attempt(address, "BAD_REPLY", problem, round_trip))
                continue
            return ScorerReply(
                scorer=scorer,
                version=reply.version,
                scores=[r.score for r in reply.results],
                details=[wire.details_from_proto(r.details) for r in reply.results],
                replica=address,
                latency_s=time.perf_counter() - start,
                attempts=len(attempts) + 1,
                encode_s=encode_s,
                wire_s=round_trip - reply.handler_seconds,
                queue_s=reply.handler_seconds - reply.score_seconds,
                decode_s=reply.decode_seconds,
                prepare_s=reply.prepare_seconds,
                score_s=reply.score_seconds - reply.decode_seconds - reply.prepare_seconds,
            )
        return attempts

    @staticmethod
    def _check_reply(scorer: str, rid: str, n_images: int, reply: reward_pb2.ScoreResponse) -> str:
        if reply.scorer != scorer:
            return f"replica serves scorer {reply.scorer!r}, not {scorer!r} (endpoints mixed up?)"
        if reply.request_id != rid:
            return f"reply is for request {reply.request_id!r}"
        if len(reply.results) != n_images:
            return f"{len(reply.results)} scores for {n_images} images"
        bad = [i for i, r in enumerate(reply.results) if not math.isfinite(r.score)]
        if bad:
            return f"non-finite score for image(s) {bad}"
        return ""
