"""Where the actors go: one placement group for the learner ranks and rollout workers, sized from the config.

Bundles ``[learner rank 0 .. K-1, rollout worker 0 .. W-1]``, each with its configured CPU/GPU share, packed
onto as few nodes as possible (PACK): the learner ranks and the rollout workers they broadcast weights to sit
together. Reward replicas get a placement group each (rewards/pool.py), so they can be added and removed
while training runs.
"""

from __future__ import annotations

from cluster.config import Config, learner_setup


def _bundle(cpus: float, gpus: float) -> dict[str, float]:
    b = {"CPU": cpus}
    if gpus:
        b["GPU"] = gpus
    return b


class Placement:
    def __init__(self, cfg: Config, timeout_s: float = 600.0):
        import ray
        from ray.util.placement_group import placement_group

        self.cfg = cfg
        lc, rc = cfg.learner, cfg.rollout
        bundles = [_bundle(lc.num_cpus_per_rank, lc.num_gpus_per_rank) for _ in range(lc.ranks)]
        bundles += [_bundle(rc.num_cpus_per_worker, rc.num_gpus_per_worker) for _ in range(rc.workers)]
        self.pg = placement_group(bundles, strategy="PACK")
        ready, _ = ray.wait([self.pg.ready()], timeout=timeout_s)
        if not ready:
            total = {k: sum(b.get(k, 0) for b in bundles) for k in ("CPU", "GPU")}
            raise RuntimeError(
                f"Ray cannot place {lc.ranks} learner rank(s) and {rc.workers} rollout worker(s) (needs {total}, "
                f"cluster has {ray.cluster_resources()}); lower learner.num_cpus_per_rank / "
                f"rollout.num_cpus_per_worker (fractions are fine) or add nodes"
            )

    def strategy(self, bundle: int):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=bundle)

    def learner_group(self):
        from learner.actor import LearnerGroup

        return LearnerGroup(learner_setup(self.cfg), scheduling=self.strategy, name=lambda r: f"learner-rank-{r}")

    def rollout_actors(self) -> list:
        from rollout.actor import create_rollout_actors

        cfg = self.cfg
        k = cfg.learner.ranks
        # restartable: a worker that dies is brought back by Ray and re-synced by the trainer
        return create_rollout_actors(
            cfg.model,
            cfg.rollout,
            cfg.learner.loss.image_logprob,
            scheduling=lambda i: self.strategy(k + i),
            max_restarts=-1,
            name=lambda i: f"rollout-worker-{i}",
        )

    def remove(self) -> None:
        from ray.util.placement_group import remove_placement_group

        remove_placement_group(self.pg)
