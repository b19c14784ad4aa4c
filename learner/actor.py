"""The learner as K Ray actors (one DeepSpeed rank each) and the driver-side handle that runs them together.

    group = LearnerGroup(setup)               # K = setup.learner.ranks actors, one torch.distributed group
    stats = group.train_batch(samples)        # list[TrainSample], the whole global batch
    group.save_checkpoint(dir); group.load_checkpoint(dir); group.export_hf(dir)
    group.shutdown()

Rank 0 hosts the rendezvous store on a socket it binds on its node's address (127.0.0.1 on one machine) with
an OS-chosen port; the other ranks connect to it. Rank 0 is also the sender of the weight-sync group
(weightsync/broadcast.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import torch

from core.memory import peak_memory
from learner.batch import TrainSample
from learner.config import LearnerSetup
from learner.loss import combine_stats


class LearnerRank:
    """One learner rank (the body of a Ray actor; also usable in-process for a single rank)."""

    def __init__(self, setup: LearnerSetup, rank: int, world_size: int):
        # not ``self.setup``: an attribute of that name would hide the setup method in-process
        self.learner_setup, self.rank, self.world_size = setup, rank, world_size
        self.trainer = None
        self._rendezvous = None
        self._sync = None  # (Rendezvous, layout, backend, timeout) then SyncGroup

    def __repr__(self) -> str:  # Ray's log prefix and the dashboard's Repr column
        return f"learner-rank-{self.rank}"

    # ----------------------------------------------------------------------------------------------- setup

    @staticmethod
    def _node_address() -> str:
        try:
            import ray

            if ray.is_initialized():
                return ray.util.get_node_ip_address()
        except ImportError:
            pass
        return "127.0.0.1"

    def create_rendezvous(self) -> tuple[str, int]:
        from weightsync.distributed import Rendezvous

        if self.rank != 0:
            raise RuntimeError("only learner rank 0 hosts the rendezvous")
        self._rendezvous = Rendezvous(self._node_address(), self.world_size)
        return self._rendezvous.host, self._rendezvous.port

    def setup(self, host: str, port: int) -> None:
        from learner.engine import PolicyTrainer
        from weightsync.distributed import connect_store, init_default_group

        store = self._rendezvous.store if self.rank == 0 else connect_store(host, port, self.world_size)
        init_default_group(store, self.rank, self.world_size)
        self.trainer = PolicyTrainer(self.learner_setup)

    def shutdown(self) -> None:
        from weightsync.distributed import shutdown_default_group

        self._sync = None
        shutdown_default_group()

    # ----------------------------------------------------------------------------------------------- training

    def train_batch(self, samples: Sequence[TrainSample]) -> dict[str, float]:
        """The update's statistics, plus this rank's peak memory during it (MiB: ``learner_peak_mib``, and
        ``learner_peak_mib_cuda`` on CUDA; core.memory)."""
        memory: dict[str, float] = {}
        with peak_memory(memory, "learner_peak_mib"):
            stats = self.trainer.train_batch(samples)
        return {**stats, **memory}

    def version(self) -> int:
        return self.trainer.version

    def full_trainable_state(self) -> Optional[dict[str, torch.Tensor]]:
        """Full trainable weights on CPU (rank 0; under ZeRO-3 every rank must call this)."""
        out = {n: t.detach().cpu().clone() for n, t in self.trainer.iter_full_parameters(self.trainer.gather_numel)}
        return out if self.rank == 0 else None

    # ----------------------------------------------------------------------------------------------- checkpoints

    def save_checkpoint(self, directory: str) -> str:
        from learner.checkpoint import save_checkpoint

        return str(save_checkpoint(self.trainer, directory))

    def load_checkpoint(self, directory: str, tag: Optional[str] = None) -> int:
        from learner.checkpoint import load_checkpoint

        return load_checkpoint(self.trainer, directory, tag)

    def export_hf(self, directory: str) -> Optional[str]:
        from learner.checkpoint import export_hf

        out = export_hf(self.trainer, directory)
        return None if out is None else str(out)

    # ----------------------------------------------------------------------------------------------- weight sync

    def open_weight_sync(self, world_size: int, timeout_s: float, backend: Optional[str]) -> tuple[str, int, Any, str]:
        """Rank 0: host a new sync group's store; returns (host, port, layout, backend) for the receivers."""
        from weightsync.broadcast import SyncLayout
        from weightsync.distributed import Rendezvous, default_backend

        if self.rank != 0:
            raise RuntimeError("only learner rank 0 sends weights")
        layout = SyncLayout.build(
            self.trainer.full_parameter_shapes(),
            self.learner_setup.model.dtype,
            self.learner_setup.learner.sync_bucket_mb,
        )
        rendezvous = Rendezvous(self._node_address(), world_size, timeout_s)
        backend = backend or default_backend()
        self._sync = (rendezvous, layout, backend, timeout_s, world_size)
        return rendezvous.host, rendezvous.port, layout, backend

    def connect_weight_sync(self) -> None:
        from weightsync.broadcast import SyncGroup

        rendezvous, layout, backend, timeout_s, world = self._sync
        group = SyncGroup.join(
            rendezvous.host, rendezvous.port, 0, world, backend, self.trainer.device, timeout_s, store=rendezvous.store
        )
        self._sync = (rendezvous, layout, group)

    def sync_weights(self) -> dict[str, float]:
        """Every rank calls this (ZeRO-3 gathers collectively); rank 0 broadcasts the current version."""
        from weightsync.broadcast import send_weights

        version = self.trainer.version
        tensors = self.trainer.iter_full_parameters(self.trainer.gather_numel)
        connected = self._sync is not None and len(self._sync) == 3
        if self.rank != 0 or not connected:
            for _ in tensors:  # take part in the gathers either way, so no rank is left waiting
                pass
            if self.rank == 0:
                raise RuntimeError("weight-sync group not connected (open_weight_sync + connect_weight_sync)")
            return {"version": float(version)}
        _, layout, group = self._sync
        return {"version": float(version), **send_weights(group, layout, version, tensors)}


class LearnerGroup:
    """Driver-side handle of the K learner actors."""

    def __init__(
        self,
        setup: LearnerSetup,
        scheduling: Optional[Callable[[int], Any]] = None,
        name: Optional[Callable[[int], str]] = None,
    ):
        """``scheduling(rank)``: the Ray scheduling strategy of each rank (cluster/placement.py passes its
        placement-group bundles); None lets Ray place them. ``name(rank)``: the rank's Ray actor name (unique in the
        job's namespace), shown in the dashboard's Actors view."""
        import ray

        self.setup = setup
        lc = setup.learner
        remote = ray.remote(LearnerRank)
        self.actors = [
            remote.options(
                num_cpus=lc.num_cpus_per_rank,
                num_gpus=lc.num_gpus_per_rank,
                scheduling_strategy=scheduling(r) if scheduling else None,
                name=name(r) if name else None,
            ).remote(setup, r, lc.ranks)
            for r in range(lc.ranks)
        ]
        try:
            host, port = ray.get(self.actors[0].create_rendezvous.remote())
            ray.get([a.setup.remote(host, port) for a in self.actors])
        except Exception:
            self.kill()
            raise

    def _all(self, method: str, *args) -> list:
        import ray

        return ray.get([getattr(a, method).remote(*args) for a in self.actors])

    def train_batch(self, samples: Sequence[TrainSample]) -> dict[str, float]:
        """One global batch on all ranks; statistics are means over micro-batches and ranks (maxima for
        ``*_max``)."""
        import ray

        ref = ray.put(list(samples))
        return combine_stats(self._all("train_batch", ref))

    def version(self) -> int:
        import ray

        return ray.get(self.actors[0].version.remote())

    def full_trainable_state(self) -> dict[str, torch.Tensor]:
        return self._all("full_trainable_state")[0]

    def save_checkpoint(self, directory: str) -> str:
        return self._all("save_checkpoint", directory)[0]

    def load_checkpoint(self, directory: str, tag: Optional[str] = None) -> int:
        versions = self._all("load_checkpoint", directory, tag)
        if len(set(versions)) != 1:
            raise RuntimeError(f"learner ranks resumed at different versions {versions}")
        return versions[0]

    def export_hf(self, directory: str) -> str:
        return self._all("export_hf", directory)[0]

    def shutdown(self) -> None:
        """Barrier + destroy the process group on every rank, then end the actors."""
        try:
            self._all("shutdown")
        finally:
            self.kill()

    def kill(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []
