"""The driver's side of the weight sync: forms the group of learner rank 0 and the rollout actors, runs syncs,
and reports failures by member. The transport itself is weightsync/broadcast.py, run inside the actors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from weightsync.broadcast import WeightSyncError


class WeightSyncCoordinator:
    """Driver-side: forms the sync group between learner rank 0 and the rollout actors, runs syncs, reports
    failures by member. ``learner`` is a learner.actor.LearnerGroup; ``rollout`` are rollout.actor.RolloutActor
    handles."""

    def __init__(
        self, learner: Any, rollout: Sequence[Any], timeout_s: Optional[float] = None, backend: Optional[str] = None
    ):
        """``timeout_s``: default the learner's ``learner.sync_timeout_s``; ``backend``: default nccl with CUDA,
        else gloo."""
        self.learner, self.rollout = learner, list(rollout)
        self.timeout_s = learner.setup.learner.sync_timeout_s if timeout_s is None else timeout_s
        self.backend = backend
        self.connected = False

    def connect(self) -> None:
        import ray

        world = 1 + len(self.rollout)
        rank0 = self.learner.actors[0]
        # every member must be constructed (a rollout worker may take a while to start its engines) before the
        # group's rendezvous clock starts
        self._gather([a.version.remote() for a in self.rollout], self._worker_names(), "starting the rollout workers")
        host, port, layout, backend = ray.get(rank0.open_weight_sync.remote(world, self.timeout_s, self.backend))
        futures = [rank0.connect_weight_sync.remote()] + [
            a.join_weight_sync.remote(host, port, i + 1, world, layout, backend, self.timeout_s)
            for i, a in enumerate(self.rollout)
        ]
        self._gather(futures, ["learner rank 0"] + self._worker_names(), "forming the weight-sync group")
        self.connected = True

    def sync(self) -> int:
        """Send the learner's current weights to every rollout worker; returns the version now held by all."""
        if not self.connected:
            raise WeightSyncError("weight sync group not formed (call connect(), again after a failure)")
        learner_futures = [a.sync_weights.remote() for a in self.learner.actors]
        worker_futures = [a.receive_weights.remote() for a in self.rollout]
        names = [f"learner rank {i}" for i in range(len(learner_futures))] + self._worker_names()
        results = self._gather(learner_futures + worker_futures, names, "weight sync")
        versions = results[len(learner_futures) :]
        if len(set(versions + [results[0]["version"]])) != 1:
            raise WeightSyncError(f"rollout workers hold versions {versions}, learner sent {results[0]['version']}")
        return int(versions[0]) if versions else int(results[0]["version"])

    def _worker_names(self) -> list[str]:
        return [f"rollout worker {i}" for i in range(len(self.rollout))]

    def _gather(self, futures: list, names: list[str], what: str) -> list:
        """Wait for every member; on failures raise one WeightSyncError naming each failed member."""
        import ray

        results, errors = [None] * len(futures), []
        for i, (name, f) in enumerate(zip(names, futures)):
            try:
                results[i] = ray.get(f)
            except ray.exceptions.RayActorError as e:
                errors.append(f"{name} died ({type(e).__name__}: {str(e).splitlines()[0]})")
            except Exception as e:  # a member's own exception, e.g. WeightSyncError with what it saw
                cause = getattr(e, "cause", None) or e
                text = str(cause).strip()
                errors.append(f"{name}: {text.splitlines()[0] if text else type(cause).__name__}")
        if errors:
            self.connected = False
            raise WeightSyncError(f"{what} failed: " + "; ".join(errors))
        return results
