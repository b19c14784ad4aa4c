"""A gRPC reward server: one scorer, one whole group per Score call, batched through the model by the scorer.

* :class:`RewardServer` is the ``grpc.aio`` server. The model runs on one worker thread, so it sees one group at
  a time (its batch is the group, split by ``rewards.<name>.batch_size``) while the event loop keeps answering
  Health and Info and queueing further calls. Requests are checked, decoded and prepared for the model (the
  scorer's ``prepare_image``: image checks, resizing to the model's input) on a pool of other threads, a
  group's images and several groups at once, so the next group is ready when the model is and a group's
  per-image work does not hold the model.
* :class:`ServerThread` runs a RewardServer on its own event loop in a background thread (Ray actors, tests).
* :class:`RewardServerActor` is the Ray actor class hosting one server on its node's address
  (``rewards/pool.py`` starts and scales them); ``python -m rewards.serve`` hosts one without Ray.

Every failure is answered with a gRPC status and a message naming the request and what was wrong; the server
stays up: INVALID_ARGUMENT (bytes that are not the method's protobuf message; bad images, counts, metadata; the
scorer's ScorerInputError), RESOURCE_EXHAUSTED (over ``rewards.max_message_mb``, enforced by gRPC itself),
UNAUTHENTICATED (``rewards.token`` set and the call lacks it), INTERNAL (the scorer raised, or returned a wrong
count or a non-finite score).

A reply states where the server's time went (``decode_seconds``, ``prepare_seconds``, ``score_seconds``,
``handler_seconds``), from which the client splits each call into encode, wire, queue, decode, prepare and score
time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Union

import grpc

from core.records import PromptRecord
from protos import reward_pb2, reward_pb2_grpc
from rewards import wire
from rewards.allocator import tune_allocator
from rewards.base import Scorer, ScorerInputError
from rewards.config import RewardsConfig

log = logging.getLogger(__name__)


class _Failure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


class _Servicer(reward_pb2_grpc.RewardServiceServicer):
    def __init__(self, scorer: Scorer, max_message_bytes: int, requires_token: bool):
        self.scorer = scorer
        self.max_message_bytes = max_message_bytes
        self.requires_token = requires_token
        self.replica = ""  # host:port, set once bound
        self.stopping = False
        self.in_flight = 0
        self.served = 0
        self.failed = 0
        # One scoring thread: the model takes one group at a time; the event loop stays free for other calls.
        # Images are decoded and prepared for the model on other threads (a group's images, and several groups',
        # at once), so the next group is ready when the model is.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"score-{scorer.name}")
        self._decoder_threads = min(4, os.cpu_count() or 1)
        self._decoder = ThreadPoolExecutor(
            max_workers=self._decoder_threads, thread_name_prefix=f"decode-{scorer.name}"
        )

    def _check(self, request: reward_pb2.ScoreRequest) -> tuple[PromptRecord, int]:
        """The request's record and image count, checked (microseconds: runs on the event loop)."""
        try:
            return wire.record_from_proto(request), wire.checked_image_count(request)
        except wire.BadRequest as e:
            raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None

    def _images(
        self, request: reward_pb2.ScoreRequest, record: PromptRecord, indices: range
    ) -> list[tuple[Any, float, float]]:
        """Images ``indices`` decoded and prepared for the model: (what the scorer prepared, decode s, prepare s)
        for each."""
        out = []
        for i in indices:
            start = time.perf_counter()
            try:
                image = wire.image_from_proto(request, i)
            except wire.BadRequest as e:
                raise _Failure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            decoded = time.perf_counter()
            prepared = self._scorer_call(request.request_id, i, self.scorer.prepare_image, record, image)
            out.append((prepared, decoded - start, time.perf_counter() - decoded))
        return out

    def _scorer_call(self, rid: str, image: Optional[int], method: Callable[[PromptRecord, Any], Any], record, arg):
        """``method(record, arg)``: the scorer's prepare_image on image ``image``, or its score_prepared on the
        group (``image`` None); its failures as gRPC statuses."""
        name, on = self.scorer.name, "" if image is None else f" on image {image}"
        try:
            return method(record, arg)
        except ScorerInputError as e:
            raise _Failure(
                grpc.StatusCode.INVALID_ARGUMENT, f"request {rid!r}: scorer {name!r} rejected the input{on}: {e}"
            ) from None
        except Exception as e:
            log.exception("scorer %s failed on request %s%s", name, rid, on)
            raise _Failure(
                grpc.StatusCode.INTERNAL, f"request {rid!r}: scorer {name!r} failed{on}: {type(e).__name__}: {e}"
            ) from None

    def _score(self, rid: str, record: PromptRecord, prepared: list[Any]) -> tuple[list[reward_pb2.ImageResult], float]:
        start = time.perf_counter()
        name = self.scorer.name
        scores = self._scorer_call(rid, None, self.scorer.score_prepared, record, prepared)
        try:
            wire.check_scores(scores, len(prepared), name)
            results = [
                reward_pb2.ImageResult(score=float(s.score), details=wire.details_to_proto(s.details)) for s in scores
            ]
        except (ValueError, TypeError) as e:
            raise _Failure(grpc.StatusCode.INTERNAL, f"request {rid!r}: {e}") from None
        return results, time.perf_counter() - start

    async def _prepared(
        self, request: reward_pb2.ScoreRequest, record: PromptRecord, n: int
    ) -> tuple[list[Any], float, float]:
        """Every image of the request decoded and prepared on the decoder threads, in as many slices as there are
        threads (a lone group uses them all; many groups in flight pay few hand-offs): (prepared images in order,
        decode s, prepare s). The two times share the stage's wall time in proportion to the threads' time in
        each, and add up to at most that thread time (the rest was waiting: queue time)."""
        loop = asyncio.get_running_loop()
        tasks = min(n, self._decoder_threads)
        bounds = [n * k // tasks for k in range(tasks + 1)]
        start = time.perf_counter()
        slices = await asyncio.gather(
            *(
                loop.run_in_executor(self._decoder, self._images, request, record, range(a, b))
                for a, b in zip(bounds, bounds[1:])
            ),
            return_exceptions=True,  # every slice finishes; the first slice's failure is the answer
        )
        wall = time.perf_counter() - start
        for s in slices:
            if isinstance(s, BaseException):
                raise s
        parts = [p for s in slices for p in s]
        decode, prepare = sum(p[1] for p in parts), sum(p[2] for p in parts)
        busy = decode + prepare
        share = min(wall, busy) / busy if busy > 0 else 0.0
        return [p[0] for p in parts], decode * share, prepare * share

    async def Score(self, request, context):
        arrived = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            record, n_images = self._check(request)
            prepared, decode_s, prepare_s = await self._prepared(request, record, n_images)
            results, score_s = await loop.run_in_executor(self._pool, self._score, request.request_id, record, prepared)
        except _Failure as f:
            self.failed += 1
            await context.abort(f.code, f.args[0])
        finally:
            self.in_flight -= 1
        self.served += 1
        return reward_pb2.ScoreResponse(
            request_id=request.request_id,
            scorer=self.scorer.name,
            version=str(self.scorer.version),
            results=results,
            score_seconds=decode_s + prepare_s + score_s,
            replica=self.replica,
            decode_seconds=decode_s,
            prepare_seconds=prepare_s,
            handler_seconds=time.perf_counter() - arrived,
        )

    async def Health(self, request, context):
        status = reward_pb2.HealthResponse.NOT_SERVING if self.stopping else reward_pb2.HealthResponse.SERVING
        return reward_pb2.HealthResponse(
            status=status, scorer=self.scorer.name, in_flight=self.in_flight, served=self.served, failed=self.failed
        )

    async def Info(self, request, context):
        return reward_pb2.InfoResponse(
            scorer=self.scorer.name,
            version=str(self.scorer.version),
            replica=self.replica,
            max_message_bytes=self.max_message_bytes,
            requires_token=self.requires_token,
            task_types=list(wire.TASK_TYPES),
            pid=os.getpid(),
        )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._decoder.shutdown(wait=False, cancel_futures=True)


class _Unparsable:
    """What the request deserializer hands on when the bytes are not the method's message."""

    def __init__(self, error: Exception):
        self.error = error


class _RejectUnparsable(grpc.aio.ServerInterceptor):
    """Answer INVALID_ARGUMENT, not gRPC's UNKNOWN ("Unexpected DecodeError"), to request bytes that do not parse
    as the method's protobuf message: the deserializer passes the parse error on to the handler, which aborts."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        parse, behaviour, method = handler.request_deserializer, handler.unary_unary, handler_call_details.method

        def deserialize(data: bytes):
            try:
                return parse(data)
            except Exception as e:  # protobuf's DecodeError, or anything else a parser raises
                return _Unparsable(e)

        async def checked(request, context):
            if isinstance(request, _Unparsable):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"the request bytes of {method} do not parse as its protobuf message "
                    f"({type(request.error).__name__}: {request.error}); send the serialised "
                    f"request message of protos/reward.proto",
                )
            return await behaviour(request, context)

        return grpc.unary_unary_rpc_method_handler(
            checked, request_deserializer=deserialize, response_serializer=handler.response_serializer
        )


class _TokenCheck(grpc.aio.ServerInterceptor):
    """Refuse every call whose ``authorization`` metadata is not ``Bearer <rewards.token>``."""

    def __init__(self, token: str):
        self._expected = wire.auth_value(token).encode()

        async def refuse(request, context):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong token: this reward server requires the shared secret "
                "rewards.token (sent as 'authorization: Bearer <token>' metadata)",
            )

        self._refuse = grpc.unary_unary_rpc_method_handler(refuse)

    async def intercept_service(self, continuation, handler_call_details):
        sent = dict(handler_call_details.invocation_metadata or ()).get(wire.AUTH_HEADER, "")
        if isinstance(sent, str):
            sent = sent.encode()
        if hmac.compare_digest(sent, self._expected):
            return await continuation(handler_call_details)
        return self._refuse


class RewardServer:
    """A ``grpc.aio`` server hosting one scorer. Use from a running event loop: ``await start()``."""

    def __init__(self, scorer: Scorer, cfg: RewardsConfig, host: str = "127.0.0.1", port: int = 0):
        self.scorer = scorer
        self.cfg = cfg
        self.host = host
        self.port = port
        self.address = ""
        self._servicer = _Servicer(scorer, cfg.max_message_mb * 2**20, cfg.token is not None)
        self._server: Optional[grpc.aio.Server] = None

    async def start(self) -> str:
        """Bind (port 0: one the OS picks), start serving, return ``host:port``."""
        if self.cfg.tune_allocator:
            tune_allocator()
        # The token is checked first, so that a caller without it learns nothing about the request's format.
        interceptors = [_TokenCheck(self.cfg.token)] if self.cfg.token is not None else []
        interceptors.append(_RejectUnparsable())
        self._server = grpc.aio.server(options=wire.channel_options(self.cfg.max_message_mb), interceptors=interceptors)
        reward_pb2_grpc.add_RewardServiceServicer_to_server(self._servicer, self._server)
        wanted = wire.host_port(self.host, self.port)
        try:
            port = self._server.add_insecure_port(wanted)
        except RuntimeError as e:  # grpc raises when the address cannot be bound
            raise OSError(
                f"reward server for {self.scorer.name!r} could not bind {wanted}: {e} (port in use, or "
                f"not an address of this machine?)"
            ) from None
        self.address = self._servicer.replica = wire.host_port(self.host, port)
        await self._server.start()
        log.info("reward server %s (version %s) serving on %s", self.scorer.name, self.scorer.version, self.address)
        return self.address

    async def stop(self, grace_s: float = 5.0) -> None:
        """Refuse new calls, let calls in flight finish for up to ``grace_s`` seconds, then stop."""
        self._servicer.stopping = True
        if self._server is not None:
            await self._server.stop(grace_s)
        self._servicer.close()

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


class ServerThread:
    """Runs a RewardServer on its own event loop in a daemon thread, for callers that are not async."""

    def __init__(self, server: RewardServer):
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name=f"reward-server-{server.scorer.name}"
        )

    def start(self, timeout_s: float = 60.0) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout_s)

    def stop(self, grace_s: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(grace_s), self._loop).result(grace_s + 30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._loop.close()

    @property
    def address(self) -> str:
        return self.server.address


ScorerSpec = Union[str, Callable[[], Scorer]]


def make_scorer(spec: ScorerSpec, cfg: RewardsConfig) -> Scorer:
    """A registered scorer name (built by rewards.registry from ``cfg``), or a factory for a custom scorer."""
    if isinstance(spec, str):
        from rewards.registry import build_scorer

        return build_scorer(spec, cfg)
    scorer = spec()
    if not isinstance(scorer, Scorer):
        raise TypeError(f"scorer factory {spec!r} returned {type(scorer).__name__}, not a rewards.base.Scorer")
    return scorer


class RewardServerActor:
    """Ray actor class: one reward server on this node's address. Wrap with ``ray.remote`` (rewards/pool.py
    does, with the scorer's CPU/GPU share). Construction loads the model and binds; a failure surfaces on the
    first method call."""

    def __init__(
        self,
        scorer: ScorerSpec,
        cfg: RewardsConfig,
        host: Optional[str] = None,
        port: int = 0,
        label: str = "reward-server",
    ):
        import ray

        self._label = label
        self._thread = ServerThread(
            RewardServer(make_scorer(scorer, cfg), cfg, host or ray.util.get_node_ip_address(), port)
        )
        self._address = self._thread.start()

    def __repr__(self) -> str:  # Ray's log prefix and the dashboard's Repr column
        return self._label

    def address(self) -> str:
        return self._address

    def stop(self, grace_s: float = 5.0) -> None:
        self._thread.stop(grace_s)
