"""The BiCoT-GRPO loop on Ray: prompts -> rollouts -> rewards -> advantages -> learner update -> weight sync.

The driver owns no model. It holds handles to three kinds of actors, each scaled on its own:
rollout workers (rollout/actor.py), reward server replicas (rewards/pool.py, reached over gRPC by
rewards/client.py) and learner ranks (learner/actor.py), plus the weight-sync group that joins learner rank 0 to
every rollout worker (cluster/weight_sync.py, weightsync/broadcast.py).

Modes (trainer.mode):
- ``sync``: T2I-R1's on-policy order; every stage waits for the previous one.
- ``off_policy``: the rollout of step t+1 is launched before step t is scored and trained, so it runs while the
  learner updates; it is made by the weights of step t-1 (one version behind), and the loss weights its tokens by
  the truncated importance ratio of the learner's to the rollout's log-probs (learner/loss.py). A rollout actor
  runs one call at a time, so the weight sync after step t queues behind that rollout and the rollout of step t+2
  behind the sync. A checkpoint keeps the rollout in flight (cluster/pending.py), so a resumed run trains on it
  as the straight run did.

Steps count from 1 everywhere a user sees them: the progress line ("step 3/40"), the log ("checkpoint of step
10"), the metrics' ``step`` column, the output files (``rollouts/step_000003.parquet``) and trainer_state.json;
after step t the rollout workers hold policy version t.

Faults: a reward replica that dies mid-step is retried on another replica by the client and replaced after
the step; a rollout worker that dies is restarted by Ray, the weight-sync group is formed anew with it, it
receives the current weights and its prompts are rolled out again; a dead learner or driver ends the run, and
``resume=true`` continues from the last checkpoint with the same data order (outputs of later steps are
rewritten, never counted twice).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from cluster.config import Config, TrainMode, to_yaml
from cluster.data import PromptSchedule
from cluster.output_writer import StepOutputs
from cluster.outputs import RunOutputs
from cluster.pending import load_pending, pending_name, save_pending
from core.prompt_file import PromptSet, load_prompts
from core.records import PromptRecord, RolloutGroup, RolloutSample
from core.timing import timed
from evaluation.training import TrainingEvaluation
from learner.advantages import batch_advantages
from learner.batch import train_samples

if TYPE_CHECKING:
    from rewards.client import RewardBatch

log = logging.getLogger("cluster")

STATE_FILE = "trainer_state.json"


def _rollout_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % 2**31


@dataclass
class StepResult:
    """What one step produced: the input of its metrics row, its outputs and its console line."""

    step: int  # 1 is the first step
    groups: list[RolloutGroup]
    batch: RewardBatch  # every scorer's scores and latencies
    rewards: list[np.ndarray]  # combined reward per sample, one array per group
    advantages: list[np.ndarray]  # likewise
    stats: dict[str, float]  # the learner's statistics of the update
    times: dict[str, float]  # seconds per stage ("rollout_s", "reward_s", ...; "step_s" the whole step)
    learner_version: int  # policy version the update started from
    version: int  # policy version the rollout workers hold after the step's weight sync
    restarts: int  # rollout-worker restarts so far in this run

    @property
    def samples(self) -> list[RolloutSample]:
        return [s for g in self.groups for s in g.samples]


def metrics_row(r: StepResult) -> dict[str, Any]:
    """The step's row of metrics.parquet (and of the Ray gauges)."""
    flat_rewards = np.concatenate(r.rewards)
    samples = r.samples
    lag = [r.learner_version - s.policy_version for s in samples]
    row: dict[str, Any] = {
        "step": r.step,
        "policy_version": r.version,
        "reward_mean": float(flat_rewards.mean()),
        "reward_std": float(flat_rewards.std()),
        "cot_tokens_mean": float(np.mean([len(s.cot_ids) for s in samples])),
        # collapse signals: how many codebook entries the step's images use, and the reward spread inside a group,
        # which is all GRPO learns from (not named reward_*_mean: that pattern is a scorer's, cluster/plots.py)
        "image_codes_distinct": len({c for s in samples for c in s.image_ids}),
        "group_reward_std_mean": float(np.mean([np.std(g) for g in r.rewards])),
        "images": len(samples),
        "version_lag_mean": float(np.mean(lag)),
        "version_lag_max": int(max(lag)),
        "rollout_worker_restarts": r.restarts,
    }
    for name, v in r.batch.per_scorer().items():
        row[f"reward_{name}_mean"] = float(v.mean())
        row[f"reward_{name}_std"] = float(v.std())
    for name, lat in r.batch.latency().items():
        row[f"reward_{name}_latency_s"] = lat.mean_s
        row[f"reward_{name}_retries"] = lat.retries
        row.update({f"reward_{name}_{part}": v for part, v in lat.split.items()})  # encode_s, wire_s, queue_s, ...
    for name, n in r.batch.replicas.items():
        row[f"reward_{name}_replicas"] = n
    stats = r.stats
    row.update({k: float(v) for k, v in stats.items()})
    levels = [k[: -len("/kl")] for k in stats if k.endswith("/kl")]
    if levels:  # one KL column: the levels' KL weighted by their token counts, as the token-mean loss sees it
        tokens = sum(stats[f"{lv}/tokens"] for lv in levels)
        row["kl"] = sum(stats[f"{lv}/kl"] * stats[f"{lv}/tokens"] for lv in levels) / max(tokens, 1.0)
    row.update(r.times)
    row["images_per_s"] = len(samples) / r.times["step_s"]
    for key in ("cot", "image", "decode"):
        row[f"rollout_{key}_s"] = float(np.mean([s.timings.get(key, 0.0) for s in samples]))
    row.update(rollout_peak_memory(samples))
    return row


def rollout_peak_memory(samples: list[RolloutSample]) -> dict[str, float]:
    """``rollout_{stage}_peak_mib`` (and ``..._cuda``): the largest peak of any rollout worker, per stage."""
    peaks: dict[str, float] = {}
    for s in samples:
        for key, mib in s.memory_mib.items():
            name = f"rollout_{key.replace('_cuda', '')}_peak_mib" + ("_cuda" if key.endswith("_cuda") else "")
            peaks[name] = max(peaks.get(name, 0.0), float(mib))
    return peaks


def progress_line(row: dict[str, Any], times: dict[str, float], steps: int) -> str:
    """The console line of a step."""
    return (
        f"step {row['step']}/{steps}  reward {row['reward_mean']:.4f} (std {row['reward_std']:.4f})  "
        f"loss {row.get('loss', float('nan')):.4f}  kl {row.get('kl', float('nan')):.5f}  "
        f"cot {row['cot_tokens_mean']:.0f} tok  {row['images_per_s']:.1f} img/s  step {times['step_s']:.2f}s "
        f"({', '.join(f'{k[:-2]} {v:.2f}' for k, v in times.items() if k != 'step_s')})  "
        f"version {row['policy_version']}"
    )


class Trainer:
    def __init__(self, cfg: Config, data: Optional[PromptSet] = None):
        """``data``: the run's prompts, already loaded and checked (cluster/preflight.py); else read here."""
        self.cfg = cfg
        self.out = RunOutputs(cfg.output_dir)
        self.data = data if data is not None else load_prompts(cfg.data.path, cfg.data.on_malformed)
        self.schedule = PromptSchedule(self.data.records, cfg.trainer.prompts_per_step, cfg.seed, cfg.data.shuffle)
        self.learner = None
        self.rollout: list = []
        self.sync = None
        self.fleet = None
        self.client = None
        self.metrics = None
        self.outputs = None  # StepOutputs, from start() on
        self.version = 0
        self._restarts = 0
        self._pending: Optional[list[RolloutGroup]] = None  # off-policy resume: the checkpoint's rollout in flight
        self._replicas: dict[str, int] = {}  # reward replicas per scorer at the last step's scoring
        # trainer.eval_every: planned and its evaluators checked now, before any actor starts
        self.evaluation = (
            TrainingEvaluation(cfg.eval, cfg.rollout, self.out.root, cfg.trainer.eval_every)
            if cfg.trainer.eval_every
            else None
        )

    # ------------------------------------------------------------------------------------------------ start-up

    def start(self) -> int:
        """Start every actor; on resume load the last checkpoint. Returns the first step to run (1 when new)."""
        import ray

        from cluster.metrics import RayMetrics
        from cluster.placement import Placement
        from cluster.weight_sync import WeightSyncCoordinator
        from rewards.client import RewardClient
        from rewards.pool import fleet_endpoints, launch_fleet

        cfg = self.cfg
        (self.out.root / "config.yaml").write_text(to_yaml(cfg))
        self.placement = Placement(cfg)
        times: dict[str, float] = {}
        with timed(times, "start"):
            fleet_name = f"reward_fleet_{os.getpid()}"
            self.fleet = launch_fleet(cfg.rewards, name=fleet_name)
            self.client = RewardClient(cfg.rewards, fleet_endpoints(self.fleet))
            self.learner = self.placement.learner_group()
            self.rollout = self.placement.rollout_actors()
            self.sync = WeightSyncCoordinator(self.learner, self.rollout, timeout_s=cfg.learner.sync_timeout_s)
            start_step = 1
            if cfg.resume:
                start_step = self._resume()
            self.sync.connect()
            self.version = self.sync.sync()
            self.outputs = StepOutputs(cfg, self.out, start_step)
            if cfg.logging.ray_metrics:
                self.metrics = RayMetrics(self.out.root.name)
        log.info(
            "started in %.1f s: %d rollout worker(s), %d learner rank(s), rewards %s; first step %d",
            times["start"],
            len(self.rollout),
            cfg.learner.ranks,
            {k: len(v) for k, v in ray.get(self.fleet.endpoints.remote()).items()},
            start_step,
        )
        log.info(
            "reward fleet %s: change its replicas while the run goes on with `python -m rewards.pool "
            "--address auto scale <scorer> <replicas>` (add --name %s when several runs share the cluster)",
            fleet_name,
            fleet_name,
        )
        return start_step

    def _resume(self) -> int:
        state_path = self.out.checkpoints / STATE_FILE
        if not state_path.is_file():
            log.warning("resume=true but %s has no checkpoint yet: starting from step 1", self.out.checkpoints)
            self.out.truncate_after(0)
            return 1
        state = json.loads(state_path.read_text())
        version = self.learner.load_checkpoint(str(self.out.checkpoints / "learner"), state["tag"])
        if version != state["version"]:
            raise RuntimeError(
                f"checkpoint {state['tag']} holds version {version}, {STATE_FILE} says {state['version']}"
            )
        self.out.truncate_after(state["step"])
        log.info("resumed from the checkpoint of step %d (policy version %d)", state["step"], version)
        if self.cfg.trainer.mode == TrainMode.off_policy and state.get("pending"):
            self._pending = load_pending(self.out.checkpoints / state["pending"])
            log.info(
                "the first step trains on the checkpoint's rollout in flight (made by version %d)",
                self._pending[0].samples[0].policy_version,
            )
        return state["step"] + 1

    # ------------------------------------------------------------------------------------------------ stages

    def _launch_rollout(self, step: int) -> tuple[list[list[PromptRecord]], list]:
        """Submit the prompts of ``step``, split across the rollout workers; returns the futures."""
        prompts = self.schedule.batch(step)
        w = len(self.rollout)
        shares = [prompts[i::w] for i in range(w)]
        seed = _rollout_seed(self.cfg.seed, step)
        futures = [a.rollout.remote(share, seed) if share else None for a, share in zip(self.rollout, shares)]
        return shares, futures

    def _collect_rollout(self, step: int, shares: list[list[PromptRecord]], futures: list) -> list[RolloutGroup]:
        """Wait for a step's rollouts; a worker that died is restarted, re-synced and its prompts redone."""
        import ray

        seed = _rollout_seed(self.cfg.seed, step)
        groups: list[Optional[list[RolloutGroup]]] = [None] * len(futures)
        for _attempt in range(3):
            failed = []
            for i, f in enumerate(futures):
                if f is None or groups[i] is not None:
                    continue
                try:
                    out = ray.get(f)
                except ray.exceptions.RayActorError as e:
                    log.warning(
                        "rollout worker %d died during step %d (%s); restarting it and redoing its %d prompts",
                        i,
                        step,
                        type(e).__name__,
                        len(shares[i]),
                    )
                    failed.append(i)
                    continue
                # A worker that died between calls is restarted by Ray before it runs the call: it answers with
                # its initial weights. Its rollouts are discarded and redone once it holds the current version.
                stale = sorted({s.policy_version for g in out for s in g.samples} - {self.version})
                if stale:
                    log.warning(
                        "rollout worker %d answered step %d with policy version %s, not %d: it was restarted; "
                        "re-syncing it and redoing its %d prompts",
                        i,
                        step,
                        stale,
                        self.version,
                        len(shares[i]),
                    )
                    failed.append(i)
                    continue
                groups[i] = out
            if not failed:
                break
            self._restarts += len(failed)
            self._reform_sync_group()
            futures = [
                self.rollout[i].rollout.remote(shares[i], seed) if i in failed else None for i in range(len(futures))
            ]
        else:
            raise RuntimeError(f"step {step}: rollout workers {failed} kept dying; giving up")
        by_index = {g.prompt.index: g for share in groups if share for g in share}
        return [by_index[p.index] for p in self.schedule.batch(step)]

    def _reform_sync_group(self) -> None:
        """After a rollout worker restart: a torch.distributed group cannot take a new member, so every member
        leaves and a new group is formed; then the current weights go to every worker."""
        import ray

        # wait for Ray to bring the actor back (its constructor reloads the initial weights)
        deadline = time.monotonic() + 600
        while True:
            try:
                ray.get([a.version.remote() for a in self.rollout], timeout=60)
                break
            except ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # Ray is restarting the actor; a bounded wait until it answers
        self.sync.connect()
        self.version = self.sync.sync()

    def _sync_weights(self) -> None:
        """Broadcast the learner's weights; a sync broken by a rollout worker that died (or was restarted since the
        last sync) is redone once with a new group. Nothing is half-applied: a worker keeps its old version until
        it has received a whole one."""
        from weightsync.broadcast import WeightSyncError

        try:
            self.version = self.sync.sync()
        except WeightSyncError as e:
            self._restarts += 1
            log.warning("weight sync failed (%s); forming the sync group anew and sending the weights again", e)
            self._reform_sync_group()

    def _score(self, groups: list[RolloutGroup]):
        batch = self.client.score([g.prompt for g in groups], [g.images for g in groups])
        return batch, batch.rewards(self.cfg.rewards)

    # ------------------------------------------------------------------------------------------------ loop

    def run(self) -> Path:
        cfg = self.cfg
        start = self.start()
        off_policy = cfg.trainer.mode == TrainMode.off_policy
        groups = self._pending  # None but on an off-policy resume
        for step in range(start, cfg.trainer.steps + 1):
            times: dict[str, float] = {}
            with timed(times, "step_s"):
                if groups is None:  # sync mode, or the first step of off-policy
                    with timed(times, "rollout_s"):
                        groups = self._collect_rollout(step, *self._launch_rollout(step))
                ahead = self._launch_rollout(step + 1) if off_policy and step < cfg.trainer.steps else None
                with timed(times, "reward_s"):
                    batch, rewards = self._score(groups)
                advantages = batch_advantages(rewards, cfg.learner.advantage)
                learner_version = self.version
                with timed(times, "learner_s"):
                    stats = self._train(train_samples(groups, advantages))
                next_groups = None
                if ahead is not None:
                    # the workers must be idle to join the broadcast: collect the overlapped rollout first
                    with timed(times, "rollout_wait_s"):
                        next_groups = self._collect_rollout(step + 1, *ahead)
                with timed(times, "sync_s"):
                    self._sync_weights()
            self._after_step(
                StepResult(
                    step,
                    groups,
                    batch,
                    rewards,
                    advantages,
                    stats,
                    times,
                    learner_version,
                    self.version,
                    self._restarts,
                )
            )
            if self._checkpoint_due(step):
                self.checkpoint(step, next_groups)
            groups = next_groups
        export = self.out.checkpoints / "hf"
        self.learner.export_hf(str(export))
        log.info("exported the trained policy to %s", export)
        self.outputs.close()  # every step's outputs written, the plot final (a failed write raises here)
        return self.out.root

    def _train(self, samples) -> dict[str, float]:
        import ray

        try:
            return self.learner.train_batch(samples)
        except ray.exceptions.RayActorError as e:
            raise RuntimeError(
                f"a learner rank died ({type(e).__name__}); the run stops here. Continue from the last checkpoint "
                f"with the same command plus resume=true"
            ) from e

    def _checkpoint_due(self, step: int) -> bool:
        every = self.cfg.trainer.save_every
        return step == self.cfg.trainer.steps or (every > 0 and step % every == 0)

    def checkpoint(self, step: int, pending: Optional[list[RolloutGroup]] = None) -> None:
        """``pending``: off-policy, the rollout of the next step, already made by the previous version."""
        times: dict[str, float] = {}
        with timed(times, "save"):
            path = Path(self.learner.save_checkpoint(str(self.out.checkpoints / "learner")))
            self.outputs.flush()  # the checkpoint covers step `step` only once that step's outputs are on disk
            state = {"step": step, "version": self.version, "tag": path.name}
            if pending is not None:
                state["pending"] = pending_name(step + 1)
                save_pending(self.out.checkpoints / state["pending"], pending)
            tmp = self.out.checkpoints / f".{STATE_FILE}.tmp"
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.out.checkpoints / STATE_FILE)  # the checkpoint counts only once this lands
        log.info("checkpoint of step %d (version %d) in %.1f s: %s", step, self.version, times["save"], path)

    # ------------------------------------------------------------------------------------------------ outputs

    def _after_step(self, result: StepResult) -> None:
        """Hand the step's metrics row, rollouts and images to the background writer, publish the gauges, log
        replica changes, heal the reward fleet and print the console line."""
        import ray

        cfg = self.cfg
        row = metrics_row(result)
        if self.evaluation is not None and self.evaluation.due(result.step):
            row.update(self.evaluation.run(self.rollout, result.step, result.version))
        self.outputs.submit(
            result.step,
            result.groups,
            np.concatenate(result.rewards),
            result.batch.per_scorer(),
            np.concatenate(result.advantages),
            row,
        )
        if self.metrics is not None:
            self.metrics.publish(row, row["images"])
        replicas = result.batch.replicas
        if self._replicas and replicas != self._replicas:  # scaled while the run goes on (python -m rewards.pool)
            log.info(
                "reward replicas changed for step %d: %s",
                result.step,
                ", ".join(
                    f"{n} {self._replicas.get(n, 0)} -> {k}" for n, k in replicas.items() if k != self._replicas.get(n)
                ),
            )
        self._replicas = dict(replicas)
        # heal the reward fleet: replicas that died this step are replaced before the next one
        healed = {name: dead for name, dead in ray.get(self.fleet.heal.remote()).items() if dead}
        if healed:
            log.warning("reward replicas that died were replaced: %s", healed)
        print(progress_line(row, result.times, cfg.trainer.steps), flush=True)

    # ------------------------------------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Stop every actor; the outputs still queued are written first (also after a failure)."""
        import ray

        try:
            if self.outputs is not None:
                self.outputs.close()
        except Exception as e:  # the actors must still be stopped; the step's error, if any, is already raised
            log.error("%s", e)
        if self.client is not None:
            self.client.close()
        for a in self.rollout:
            try:
                ray.get(a.close.remote(), timeout=60)
            except Exception:
                pass
            ray.kill(a)
        if self.learner is not None:
            try:
                self.learner.shutdown()
            except Exception:
                self.learner.kill()
        if self.fleet is not None:
            try:
                ray.get(self.fleet.shutdown.remote(), timeout=60)
            except Exception:
                pass
            ray.kill(self.fleet)
        if getattr(self, "placement", None) is not None:
            self.placement.remove()
