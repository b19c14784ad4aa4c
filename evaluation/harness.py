"""One evaluation, stage by stage: what to draw and how to score it is settled (and every file it needs checked)
before Ray starts; then generation per policy on rollout actors, scoring per evaluator pass, the report.

    ev = prepare(eval_cfg, model_cfg, rollout_cfg)   # raises, naming the config key, before anything runs
    ev.generate(); ev.score(); ev.report()           # each resumable; Ray must be initialised
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from evaluation.base import EvalItem
from evaluation.config import EvalConfig, Stage
from evaluation.generate import GenerationResult, draw, generation_settings, open_folder
from evaluation.metrics import CategoryMetric, metrics_for, passes_needed
from evaluation.passes import check_passes
from evaluation.plan import ImageJob, images_per_prompt, plan
from evaluation.policies import PolicyUnderTest, resolve_policies
from evaluation.ray_session import connect
from evaluation.report import write_report
from evaluation.score import Target, score
from policy.config import ModelConfig
from rollout.config import RolloutConfig

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    cfg: EvalConfig
    rollout: RolloutConfig
    policies: list[PolicyUnderTest]
    jobs: list[ImageJob]
    metrics: dict[tuple[str, str], CategoryMetric] = field(default_factory=dict)

    def metric_of(self, item: EvalItem) -> CategoryMetric:
        return self.metrics[(item.benchmark, item.category)]

    def folder(self, policy: PolicyUnderTest) -> Path:
        return Path(self.cfg.output_dir).expanduser() / policy.label

    def settings(self, identity: dict) -> dict:
        counts = {b: images_per_prompt(b, self.cfg.images_per_prompt) for b in self.cfg.selection()}
        return generation_settings(identity, self.rollout, self.cfg.seed, counts)

    def generate(self) -> dict[str, GenerationResult]:
        """Each policy's missing images, on ``rollout.workers`` fresh rollout actors (none for a complete folder)."""
        import ray

        from rollout.actor import create_rollout_actors

        out = {}
        for policy in self.policies:
            state = open_folder(self.folder(policy), self.jobs, self.settings(policy.identity()))
            if not state.pending:
                out[policy.label] = GenerationResult(drawn=0, kept=len(state.done), redrawn=[])
                continue
            connect(self.cfg.ray_address)
            actors = create_rollout_actors(policy.model, self.rollout)
            try:
                out[policy.label] = draw(state, actors, self.cfg.batch_size, version=policy.version)
            finally:
                for a in actors:
                    try:
                        ray.get(a.close.remote(), timeout=60)  # its vLLM engine, if it has one
                    except Exception as e:  # a dead actor has nothing left to close
                        log.warning("closing a rollout actor failed: %s", e)
                    ray.kill(a)
        return out

    def score(self) -> dict[str, int]:
        return score([Target(self.folder(p), self.jobs) for p in self.policies], self.metric_of, self.cfg)

    def report(self) -> Path:
        return write_report(
            self.cfg,
            self.rollout.prompt.use_cot,
            self.policies,
            [self.folder(p) for p in self.policies],
            self.jobs,
            self.metric_of,
        )


def prepare(
    cfg: EvalConfig, model: ModelConfig, rollout: RolloutConfig, policies: Optional[list[PolicyUnderTest]] = None
) -> Evaluation:
    """Plan the images and check what the configured stages need; raises before anything runs."""
    jobs = plan(
        cfg.selection(),
        {b: cfg.files.path(b) for b in cfg.selection()},
        cfg.images_per_prompt,
        cfg.max_prompts,
        cfg.seed,
        str(cfg.wise_protocol),
    )
    metrics = metrics_for(cfg, jobs)
    if Stage.score in cfg.stages:
        check_passes(cfg, passes_needed(jobs, metrics))
    policies = policies if policies is not None else resolve_policies(list(cfg.policies), model)
    return Evaluation(cfg, copy.deepcopy(rollout), policies, jobs, metrics)
