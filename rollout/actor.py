"""The rollout worker as a Ray actor: rollouts, plus membership in the learner's weight-sync group.

    actors = create_rollout_actors(model_cfg, rollout_cfg)  # rollout_cfg.workers actors
    groups = ray.get(actors[0].rollout.remote(prompts, seed))
    # weight sync: cluster.weight_sync.WeightSyncCoordinator(learner_group, actors).connect() / .sync()

A new version is received whole into a staging buffer (weightsync.broadcast.WeightReceiver) and only then handed
to ``RolloutWorker.update_weights``, which loads it into both the text engine and the image sampler's model; a
sync that breaks off raises and leaves the worker on the version it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from core.records import ImageLogprobMode, PromptRecord, RolloutGroup, RolloutSample
from policy.config import ModelConfig
from rollout.config import RolloutConfig


class RolloutActor:
    """Body of the Ray actor (``ray.remote(RolloutActor)``) around one :class:`rollout.worker.RolloutWorker`."""

    def __init__(
        self,
        model_cfg: ModelConfig,
        rollout_cfg: RolloutConfig,
        image_logprob_mode: ImageLogprobMode,
        worker_index: int = 0,
    ):
        from rollout.worker import RolloutWorker

        self.worker = RolloutWorker(model_cfg, rollout_cfg, image_logprob_mode, worker_index)
        self.worker_index = worker_index
        self._receiver = None

    def __repr__(self) -> str:  # Ray's log prefix and the dashboard's Repr column
        return f"rollout-worker-{self.worker_index}"

    def rollout(self, prompts: list[PromptRecord], seed: int, greedy: bool = False) -> list[RolloutGroup]:
        return self.worker.rollout(prompts, seed, greedy=greedy)

    def draw(self, prompts: list[PromptRecord], seeds: list[int]) -> list[RolloutSample]:
        return self.worker.draw(prompts, seeds)

    def version(self) -> int:
        return int(self.worker.version)

    def parameter_checksums(self) -> dict[str, str]:
        """sha1 per trainable parameter: equal to the learner's (cast to the rollout dtype) after a sync."""
        from weightsync.broadcast import tensor_checksums

        return tensor_checksums(self.worker.named_trainable_parameters())

    # ----------------------------------------------------------------------------------------------- weight sync

    def join_weight_sync(
        self, host: str, port: int, rank: int, world_size: int, layout: Any, backend: str, timeout_s: float
    ) -> None:
        """Join the sync group as ``rank`` (blocks until every member joined); ``layout`` is the learner's
        weightsync.broadcast.SyncLayout, checked against this worker's parameters first."""
        from weightsync.broadcast import SyncGroup, WeightReceiver

        named = list(self.worker.named_trainable_parameters())
        layout.check(named)
        self._receiver = None
        group = SyncGroup.join(host, port, rank, world_size, backend, named[0][1].device, timeout_s)
        self._receiver = WeightReceiver(group, layout)

    def close(self) -> None:
        self._receiver = None
        self.worker.close()

    def receive_weights(self) -> int:
        """Receive one complete version and apply it; returns the version now held."""
        if self._receiver is None:
            raise RuntimeError(f"rollout worker {self.worker_index} is not in a weight-sync group (join_weight_sync)")
        version, named = self._receiver.receive()  # raises before anything is applied
        self.worker.update_weights(named, version)
        return int(self.worker.version)


def create_rollout_actors(
    model_cfg: ModelConfig,
    rollout_cfg: RolloutConfig,
    image_logprob_mode: ImageLogprobMode = ImageLogprobMode.conditional,
    count: Optional[int] = None,
    scheduling: Optional[Callable[[int], Any]] = None,
    max_restarts: int = 0,
    name: Optional[Callable[[int], str]] = None,
) -> list:
    """``count`` (default ``rollout_cfg.workers``) Ray actors, with the configured CPU/GPU share each.
    ``scheduling(i)``: worker i's Ray scheduling strategy (placement-group bundle); ``max_restarts``: how often
    Ray restarts a worker that died (it comes back with the initial weights and must be re-synced); ``name(i)``:
    worker i's Ray actor name (unique in the job's namespace), shown in the dashboard's Actors view."""
    import ray

    remote = ray.remote(RolloutActor)
    r = rollout_cfg
    return [
        remote.options(
            num_cpus=r.num_cpus_per_worker,
            num_gpus=r.num_gpus_per_worker,
            max_restarts=max_restarts,
            scheduling_strategy=scheduling(i) if scheduling else None,
            name=name(i) if name else None,
        ).remote(model_cfg, rollout_cfg, image_logprob_mode, i)
        for i in range(r.workers if count is None else count)
    ]
