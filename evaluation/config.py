"""The ``eval.*`` config section: which benchmarks and policies, how images are drawn, what scores them, where
everything is. ``python -m evaluation.run`` loads it with ``model.*`` and ``rollout.*`` (core's loader, the same
presets and ``key=value`` overrides as training); cluster/config.py composes it into the training tree, where
``trainer.eval_every`` runs its ``during_training`` subset.

Defaults are the embedded world (a few prompts per category, scored by the embedded proxies); the janus-pro
presets switch to the official metrics over every prompt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Optional

from core.config import require
from evaluation.catalog import COMPBENCH, GENEVAL, WISE, SelectionError, parse_selection

# ../shared/data beside the repository: where this project's checkout keeps the benchmarks' prompt files.
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


class Scoring(StrEnum):
    # The benchmarks' metrics on their evaluator models (local directories in eval.models.*).
    official = "official"
    # The embedded colour and object rewards of rewards/ as stand-ins: no downloads, never the benchmark's number.
    embedded = "embedded"


class Stage(StrEnum):
    generate = "generate"
    score = "score"
    report = "report"


class WiseProtocol(StrEnum):
    verified = "verified"  # WISE_Verified, Qwen3.5 judge: the benchmark's current protocol
    legacy = "legacy"  # the paper's WiScore rubric, judged by the same Qwen3.5 (GPT-4o is not available offline)


@dataclass
class EvaluatorModels:
    """Local directories of the evaluator models (HF format; nothing is downloaded). Each is needed only by the
    metrics that read it."""

    blip_vqa: Optional[str] = None  # Salesforce/blip-vqa-capfilt-large: CompBench colour/shape/texture/complex
    clip_b32: Optional[str] = None  # openai/clip-vit-base-patch32: CompBench non-spatial, complex
    grounding_dino: Optional[str] = None  # IDEA-Research/grounding-dino-base: CompBench spatial/numeracy/3D/complex
    dpt_hybrid: Optional[str] = None  # Intel/dpt-hybrid-midas: CompBench 3D spatial
    mask2former: Optional[str] = None  # facebook/mask2former-swin-small-coco-instance: GenEval
    clip_l14: Optional[str] = None  # openai/clip-vit-large-patch14: GenEval colours
    wise_judge: Optional[str] = None  # Qwen/Qwen3.5-35B-A3B: WISE


@dataclass
class BenchmarkFiles:
    """Where the benchmarks' prompt files are. None: the default folder under ``data_dir``."""

    data_dir: Optional[str] = None  # None: ../shared/data beside the repository
    t2i_compbench: Optional[str] = None  # {category}_val.txt, complex sub-lists, new_objects.txt, UniDet labels
    geneval: Optional[str] = None  # evaluation_metadata.jsonl, object_names.txt
    wise: Optional[str] = None  # a local clone of PKU-YuanGroup/WISE (no licence: never shipped, no default)

    def root(self) -> Path:
        return Path(os.path.expanduser(self.data_dir)) if self.data_dir else REPO_DATA_DIR

    def path(self, benchmark: str) -> Optional[Path]:
        given = getattr(self, benchmark)
        if given:
            return Path(os.path.expanduser(given))
        return None if benchmark == WISE else self.root() / benchmark


@dataclass
class ScorerResources:
    """The Ray actor of each evaluator model (one model loaded at a time)."""

    num_cpus: float = 0.5  # fits beside the embedded training run's actors on 2 cores (trainer.eval_every)
    num_gpus: float = 0.0  # > 0: the evaluator runs on CUDA
    batch_size: int = 16  # images per evaluator call

    def validate(self) -> None:
        require(self.num_cpus >= 0 and self.num_gpus >= 0, "num_cpus", "resources must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class TrainingEval:
    """What ``trainer.eval_every`` runs on the current weights, through the training run's rollout workers."""

    benchmarks: list[str] = field(default_factory=lambda: [f"{COMPBENCH}/color"])
    max_prompts: int = 4  # per category
    images_per_prompt: int = 1

    def validate(self) -> None:
        _check_selection(self.benchmarks, "benchmarks")
        require(self.max_prompts >= 1, "max_prompts", "must be >= 1")
        require(self.images_per_prompt >= 1, "images_per_prompt", "must be >= 1")


def _check_selection(entries: list[str], key: str) -> None:
    try:
        parse_selection(entries)
    except SelectionError as e:
        require(False, key, str(e))


@dataclass
class EvalConfig:
    # "bench" (every category) or "bench/category": t2i_compbench, geneval, wise
    benchmarks: list[str] = field(default_factory=lambda: [COMPBENCH, GENEVAL])
    # Each evaluated the same way, side by side in the report: "model" (model.path; unset: the initial tiny
    # Janus), a training run's output_dir (its trained policy, checkpoints/hf), or an HF-format Janus directory.
    policies: list[str] = field(default_factory=lambda: ["model"])
    scoring: Scoring = Scoring.embedded
    images_per_prompt: Optional[int] = None  # None: each benchmark's own (CompBench 10, GenEval 4, WISE 1)
    seed: int = 42  # image k of every prompt is drawn with seed + k (CompBench's script: 42, 43, ...)
    max_prompts: Optional[int] = 6  # the first N prompts of each category; None: all of them
    output_dir: str = "outputs/eval"
    batch_size: int = 16  # images per rollout call
    stages: list[Stage] = field(default_factory=lambda: [Stage.generate, Stage.score, Stage.report])
    wise_protocol: WiseProtocol = WiseProtocol.verified
    grid_images: int = 4  # sample images per policy in each category's grid
    ray_address: Optional[str] = None  # None: RAY_ADDRESS if set, else a local Ray on 127.0.0.1
    models: EvaluatorModels = field(default_factory=EvaluatorModels)
    files: BenchmarkFiles = field(default_factory=BenchmarkFiles)
    scorer: ScorerResources = field(default_factory=ScorerResources)
    during_training: TrainingEval = field(default_factory=TrainingEval)

    def selection(self) -> dict[str, list[str]]:
        return parse_selection(self.benchmarks)

    def validate(self) -> None:
        _check_selection(self.benchmarks, "benchmarks")
        require(len(self.policies) >= 1, "policies", "name at least one policy (e.g. model)")
        require(self.images_per_prompt is None or self.images_per_prompt >= 1, "images_per_prompt", "must be >= 1")
        require(self.max_prompts is None or self.max_prompts >= 1, "max_prompts", "must be >= 1 (or null: all)")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.grid_images >= 0, "grid_images", "must be >= 0")
        require(len(self.stages) >= 1, "stages", "name at least one of generate, score, report")
        wise = WISE in self.selection() or WISE in parse_selection(self.during_training.benchmarks)
        require(
            not (wise and self.images_per_prompt not in (None, 1)),
            "images_per_prompt",
            "WISE scores one image per prompt ({prompt_id}.png); leave it unset or 1 when wise is selected",
        )
        require(
            not (wise and self.scoring == Scoring.embedded),
            "scoring",
            "WISE has no embedded proxy: set eval.scoring=official and eval.models.wise_judge (or leave wise out)",
        )
