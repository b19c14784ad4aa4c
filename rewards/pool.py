"""Reward server replicas on Ray, scaled per scorer, also while training runs.

* :class:`ScorerPool`: the replicas of one scorer, each a :class:`rewards.server.RewardServerActor` in a placement
  group of its own holding the scorer's share (``rewards.<name>.num_cpus`` / ``num_gpus``), so replicas come and
  go one at a time; :meth:`ScorerPool.scale` adds or removes replicas, :meth:`ScorerPool.heal` replaces dead ones.
* :class:`RewardFleet`: a pool per enabled scorer, started with ``rewards.<name>.replicas`` each; its
  :meth:`RewardFleet.endpoints` is what :class:`rewards.client.RewardClient` reads before every call.
* :func:`launch_fleet` runs a RewardFleet as a named Ray actor, so that another process can change replica
  counts of a running training job without restarting it (the command finds the job's fleet by itself; with
  several jobs on one cluster it lists their fleets and asks for ``--name``):

      python -m rewards.pool --address auto scale gdino 4
      python -m rewards.pool --address auto status

Scaling up starts the new replicas, waits until they serve, then publishes them (the next client call uses
them). Scaling down unpublishes replicas first, lets their calls in flight finish (``grace_s``), then stops them;
a call that still reaches a stopping replica fails over to another (the client's retry).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Optional

from rewards.config import SCORER_NAMES, RewardsConfig
from rewards.server import RewardServerActor, ScorerSpec

FLEET_ACTOR = "reward_fleet"
FLEET_NAMESPACE = "t2i_r1"


class ScorerPool:
    """The replicas of one scorer. Thread-safe: ``addresses`` never waits for a scale to finish."""

    def __init__(
        self,
        name: str,
        cfg: RewardsConfig,
        scorer: Optional[ScorerSpec] = None,
        start_timeout_s: float = 600.0,
        grace_s: float = 5.0,
        actor_prefix: Optional[str] = None,
    ):
        """``actor_prefix``: replicas become Ray named actors ``<prefix><scorer>-replica-<k>`` (k counts every
        replica this pool started), unique as long as the prefix is."""
        if name not in SCORER_NAMES:
            raise ValueError(f"unknown scorer {name!r}; expected one of {', '.join(SCORER_NAMES)}")
        self.name = name
        self.cfg = cfg
        self.spec: ScorerSpec = scorer if scorer is not None else name
        self.start_timeout_s = start_timeout_s
        self.grace_s = grace_s
        self._replicas: list[tuple[Any, str, Any]] = []  # (actor handle, host:port, placement group), oldest first
        self._lock = threading.Lock()  # guards _replicas
        self._scaling = threading.Lock()  # one scale at a time
        self.actor_prefix = actor_prefix
        self._started = 0  # replicas started so far: the next replica's number

    @property
    def addresses(self) -> list[str]:
        with self._lock:
            return [address for _, address, _ in self._replicas]

    def scale(self, replicas: int) -> list[str]:
        """Change the replica count to ``replicas`` (>= 1); return the addresses now published."""
        if replicas < 1:
            raise ValueError(
                f"scorer {self.name!r}: replicas must be >= 1, got {replicas} (to stop scoring with "
                f"it, disable it in the config: rewards.{self.name}.enabled=false)"
            )
        with self._scaling:
            with self._lock:
                have = len(self._replicas)
            if replicas > have:
                started = self._start(replicas - have)
                with self._lock:
                    self._replicas.extend(started)
            elif replicas < have:
                with self._lock:
                    removed, self._replicas = self._replicas[replicas:], self._replicas[:replicas]
                self._stop(removed)
        return self.addresses

    def heal(self) -> list[str]:
        """Replace every replica that died (crashed, killed, lost its node) by a new one; returns the dead
        replicas' addresses. The client has already retried their calls on other replicas."""
        import ray

        with self._scaling:
            with self._lock:
                replicas = list(self._replicas)
            dead = []
            for r in replicas:
                try:
                    ray.get(r[0].address.remote(), timeout=30)
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                    dead.append(r)
            if not dead:
                return []
            with self._lock:
                self._replicas = [r for r in self._replicas if r not in dead]
            self._stop(dead)
            started = self._start(len(dead))
            with self._lock:
                self._replicas.extend(started)
        return [address for _, address, _ in dead]

    def shutdown(self) -> None:
        with self._scaling:
            with self._lock:
                removed, self._replicas = self._replicas, []
            self._stop(removed)

    def _start(self, count: int) -> list[tuple[Any, str, Any]]:
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        share = getattr(self.cfg, self.name)
        bundle = {k: v for k, v in (("CPU", share.num_cpus), ("GPU", share.num_gpus)) if v}
        groups = [placement_group([bundle]) if bundle else None for _ in range(count)]
        actor_cls = ray.remote(RewardServerActor)
        labels = [f"reward-{self.name}-replica-{self._started + i}" for i in range(count)]
        self._started += count
        handles = [
            actor_cls.options(
                num_cpus=share.num_cpus,
                num_gpus=share.num_gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(pg) if pg else None,
                name=f"{self.actor_prefix}{label}" if self.actor_prefix else None,
            ).remote(self.spec, self.cfg, label=label)
            for pg, label in zip(groups, labels)
        ]
        try:
            addresses = ray.get([h.address.remote() for h in handles], timeout=self.start_timeout_s)
        except Exception as e:
            for h, pg in zip(handles, groups):
                ray.kill(h)
                if pg is not None:
                    remove_placement_group(pg)
            raise RuntimeError(
                f"could not start {count} replica(s) of reward scorer {self.name!r} (each needs "
                f"{bundle or 'no resources'}; cluster has {ray.available_resources()}): {e}"
            ) from e
        return list(zip(handles, addresses, groups))

    def _stop(self, replicas: list[tuple[Any, str, Any]]) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        if not replicas:
            return
        try:  # drain: calls in flight finish; a replica that is already dead needs no draining
            ray.get([h.stop.remote(self.grace_s) for h, _, _ in replicas], timeout=self.grace_s + 30)
        except ray.exceptions.RayError:
            pass
        for h, _, pg in replicas:
            ray.kill(h)
            if pg is not None:
                remove_placement_group(pg)


class RewardFleet:
    """One :class:`ScorerPool` per enabled scorer; ``scorers`` (scorer name -> a factory) hosts custom scorer
    objects under those names instead of the registry's."""

    def __init__(
        self, cfg: RewardsConfig, scorers: Optional[Mapping[str, ScorerSpec]] = None, actor_prefix: Optional[str] = None
    ):
        if scorers is None:
            scorers = {n: n for n in SCORER_NAMES if getattr(cfg, n).enabled}
        self.pools = {name: ScorerPool(name, cfg, spec, actor_prefix=actor_prefix) for name, spec in scorers.items()}
        try:
            for name, pool in self.pools.items():
                pool.scale(getattr(cfg, name).replicas)
        except Exception:
            self.shutdown()
            raise

    def endpoints(self) -> dict[str, list[str]]:
        return {name: pool.addresses for name, pool in self.pools.items()}

    def scale(self, scorer: str, replicas: int) -> list[str]:
        if scorer not in self.pools:
            raise ValueError(f"scorer {scorer!r} is not running; running: {', '.join(self.pools)}")
        return self.pools[scorer].scale(replicas)

    def heal(self) -> dict[str, list[str]]:
        """Replace dead replicas of every scorer; returns the replaced addresses per scorer."""
        return {name: pool.heal() for name, pool in self.pools.items()}

    def shutdown(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()


def launch_fleet(cfg: RewardsConfig, name: str = FLEET_ACTOR, namespace: str = FLEET_NAMESPACE):
    """Start a RewardFleet as a named Ray actor (reachable by :func:`get_fleet` from other processes).
    Its methods run on several threads, so ``endpoints`` answers while a ``scale`` is starting replicas."""
    import ray

    actor = ray.remote(RewardFleet).options(name=name, namespace=namespace, num_cpus=0, max_concurrency=8)
    handle = actor.remote(cfg, actor_prefix=f"{name}/")  # its replicas' names: <fleet>/<scorer>-replica-<k>
    ray.get(handle.endpoints.remote())  # surfaces start-up errors here
    return handle


def get_fleet(name: str = FLEET_ACTOR, namespace: str = FLEET_NAMESPACE):
    import ray

    return ray.get_actor(name, namespace=namespace)


def running_fleets(namespace: str = FLEET_NAMESPACE) -> list[str]:
    """Names of the fleet actors alive on the connected cluster (every training job runs one)."""
    from ray.util import list_named_actors

    return sorted(
        a["name"]
        for a in list_named_actors(all_namespaces=True)
        if a["namespace"] == namespace and a["name"].startswith(FLEET_ACTOR)
    )


def find_fleet(name: Optional[str] = None, namespace: str = FLEET_NAMESPACE):
    """The fleet named ``name``, or else the only one running. Raises LookupError saying what runs instead."""
    running = running_fleets(namespace)
    if name is None and len(running) == 1:
        name = running[0]
    if name is not None and name in running:
        return get_fleet(name, namespace)
    if name is not None:
        raise LookupError(
            f"no reward fleet named {name!r} runs on this cluster; running: {', '.join(running) or 'none'}"
        )
    if not running:
        raise LookupError(
            "no reward fleet runs on this cluster: a training job starts one (is it running, and is "
            "--address the cluster it runs on?)"
        )
    raise LookupError(
        f"{len(running)} reward fleets run on this cluster, one per job: {', '.join(running)}; "
        f"choose one with --name (each job logs its fleet's name when it starts)"
    )


def fleet_endpoints(handle) -> Callable[[], dict[str, list[str]]]:
    """An endpoint source for RewardClient that asks a fleet actor (one small Ray call per batch)."""
    import ray

    return lambda: ray.get(handle.endpoints.remote())


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rewards.pool", description="Inspect or scale the reward servers of a running job."
    )
    p.add_argument("--address", default="auto", help="Ray cluster address (default: auto)")
    p.add_argument("--name", help="the fleet actor's name (needed only when several jobs run; the job logs it)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="print every scorer's replica addresses")
    s = sub.add_parser("scale", help="set a scorer's replica count")
    s.add_argument("scorer")
    s.add_argument("replicas", type=int)
    args = p.parse_args(argv)

    import ray

    ray.init(address=args.address, namespace=FLEET_NAMESPACE, log_to_driver=False)
    try:
        fleet = find_fleet(args.name)
    except LookupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "scale":
        ray.get(fleet.scale.remote(args.scorer, args.replicas))
    for scorer, addresses in ray.get(fleet.endpoints.remote()).items():
        print(f"{scorer}: {len(addresses)} replica(s) {' '.join(addresses)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
