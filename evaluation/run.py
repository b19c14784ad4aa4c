"""`python -m evaluation.run [--config FILE] [key=value ...]`: score policies on T2I-CompBench, GenEval and WISE.

Reads ``model.*``, ``rollout.*`` and ``eval.*`` of the config (a preset, a YAML file, a run's config.yaml; its other
sections are ignored), then runs ``eval.stages`` (generate, score, report; each resumable: rerun the same command
after a kill and it continues) and prints where the report is. With the defaults it evaluates the initial tiny
Janus on a few prompts of every T2I-CompBench and GenEval category, scored by the embedded proxies; ``make eval``
adds the policy trained by ``make run``. With real weights, e.g.:

    python -m evaluation.run --config janus-pro-7b model.path=/models/Janus-Pro-7B \\
        eval.policies=[model,outputs/janus7b] eval.models.blip_vqa=/models/blip-vqa-capfilt-large ...
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from typing import Optional

from core.config import ConfigError, load_config
from evaluation.config import EvalConfig, Stage
from evaluation.generate import GenerationMismatch
from evaluation.geneval.prompts import GenevalMetadataError
from evaluation.harness import prepare
from evaluation.local_files import MissingFilesError
from evaluation.passes import EvaluatorSetupError
from evaluation.plan import PlanError
from evaluation.policies import PolicyError
from evaluation.records_log import RecordsLogError
from evaluation.score import ScoringError
from evaluation.wise.checkout import WiseDataError
from policy.config import ModelConfig
from rollout.config import RolloutConfig

# Everything a user can fix from the message: printed as one line, exit status 2, no traceback.
USER_ERRORS = (
    ConfigError,
    MissingFilesError,
    FileNotFoundError,
    EvaluatorSetupError,
    GenerationMismatch,
    GenevalMetadataError,
    PlanError,
    PolicyError,
    RecordsLogError,
    ScoringError,
    WiseDataError,
)


@dataclass
class EvalRunConfig:
    """The sections of the config an evaluation reads."""

    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m evaluation.run eval.benchmarks=[t2i_compbench/color]"
        " eval.max_prompts=2\n  python -m evaluation.run eval.policies=[model,outputs/"
        "run] rollout.prompt.use_cot=false eval.output_dir=outputs/eval_no_cot",
    )
    ap.add_argument("--config", default=None, help="preset name (tiny, janus-pro-1b, janus-pro-7b) or YAML file")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.max_prompts=10")
    return ap.parse_intermixed_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(EvalRunConfig, args.config, args.overrides, partial=True)
        ev = prepare(cfg.eval, cfg.model, cfg.rollout)
        print(
            f"evaluating {len(ev.policies)} polic{'y' if len(ev.policies) == 1 else 'ies'} "
            f"({', '.join(f'{p.label}: {p.describe()}' for p in ev.policies)}) on {len(ev.jobs)} images each "
            f"({', '.join(f'{b}: {len(c)} categories' for b, c in cfg.eval.selection().items())}), "
            f"scoring {cfg.eval.scoring}; output in {cfg.eval.output_dir}",
            flush=True,
        )
        if Stage.generate in cfg.eval.stages:
            for label, r in ev.generate().items():
                redrawn = f", {len(r.redrawn)} missing or corrupt drawn again" if r.redrawn else ""
                print(f"generate: {label}: {r.drawn} images drawn, {r.kept} already there{redrawn}", flush=True)
        if Stage.score in cfg.eval.stages:
            counts = ev.score()
            print(
                "score: " + (", ".join(f"{p} {n} images" for p, n in counts.items()) or "nothing left to score"),
                flush=True,
            )
        if Stage.report in cfg.eval.stages:
            print(f"report: {ev.report()}", flush=True)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
