"""``trainer.eval_every=N``: every N steps, the ``eval.during_training`` subset drawn by the training run's own
rollout workers (on the weights they hold after the step's sync) and scored like any evaluation; the category
means come back as ``eval_{benchmark}_{category}`` (and ``eval_{benchmark}_overall`` where the selection covers
the benchmark's aggregate) for the step's metrics row and its Ray gauges.

Images, manifest and per-image scores go to ``{output_dir}/eval/step_{step:06d}/`` in the benchmarks' layouts; a
resumed run that redoes a step reuses what that step already drew and scored.
"""

from __future__ import annotations

import copy
from pathlib import Path

from evaluation.config import EvalConfig
from evaluation.generate import generate, generation_settings
from evaluation.metrics import benchmark_overall, category_mean, metrics_for, passes_needed
from evaluation.passes import check_passes
from evaluation.plan import images_per_prompt, plan
from evaluation.score import Target, score, scored_images
from rollout.config import RolloutConfig


class TrainingEvaluation:
    def __init__(self, cfg: EvalConfig, rollout: RolloutConfig, run_dir: Path, every: int):
        sub = copy.deepcopy(cfg)
        sub.benchmarks = list(cfg.during_training.benchmarks)
        sub.max_prompts = cfg.during_training.max_prompts
        sub.images_per_prompt = cfg.during_training.images_per_prompt
        self.cfg, self.rollout, self.every = sub, rollout, every
        self.root = Path(run_dir) / "eval"
        self.jobs = plan(
            sub.selection(),
            {b: sub.files.path(b) for b in sub.selection()},
            sub.images_per_prompt,
            sub.max_prompts,
            sub.seed,
            str(sub.wise_protocol),
        )
        self.metrics = metrics_for(sub, self.jobs)
        check_passes(sub, passes_needed(self.jobs, self.metrics))  # at start-up, not at the first evaluation

    def due(self, step: int) -> bool:
        """After every ``every``-th step (steps count from 1), like trainer.save_every."""
        return self.every > 0 and step % self.every == 0

    def run(self, actors: list, step: int, version: int) -> dict[str, float]:
        """Draw and score the subset with ``actors`` (which hold policy ``version``); the metrics row's columns."""
        folder = self.root / f"step_{step:06d}"
        counts = {b: images_per_prompt(b, self.cfg.images_per_prompt) for b in self.cfg.selection()}
        identity = {"run": str(self.root.parent), "policy_version": version}
        generate(
            folder,
            self.jobs,
            actors,
            self.cfg.batch_size,
            generation_settings(identity, self.rollout, self.cfg.seed, counts),
        )
        metric_of = lambda item: self.metrics[(item.benchmark, item.category)]
        score([Target(folder, self.jobs)], metric_of, self.cfg)
        images = scored_images(folder, self.jobs, metric_of)
        row: dict[str, float] = {}
        for bench, categories in self.cfg.selection().items():
            for cat in categories:
                mean = category_mean(
                    [
                        s.score
                        for s in images
                        if s.job.item.benchmark == bench and s.job.item.category == cat and s.score is not None
                    ]
                )
                if mean is not None:
                    row[f"eval_{bench}_{cat}"] = mean
            overall = benchmark_overall(
                self.cfg,
                bench,
                [(s.job.item, s.score) for s in images if s.job.item.benchmark == bench and s.score is not None],
            )
            if overall["value"] is not None:
                row[f"eval_{bench}_overall"] = float(overall["value"])
        return row
