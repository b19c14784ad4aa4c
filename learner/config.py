"""The ``learner.*`` config section: ranks and their resources, the optimizer, the BiCoT-GRPO loss and the
advantages."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from core.config import require
from core.records import ImageLogprobMode
from policy.config import ModelConfig
from policy.sampling import SamplingParams

if TYPE_CHECKING:  # config modules stay free of torch at import
    import torch


class LearnerDtype(StrEnum):
    float32 = "float32"
    bfloat16 = "bfloat16"


class Aggregation(StrEnum):
    """How per-token losses of a micro-batch become one number (learner/loss.py)."""

    token_mean = "token_mean"  # T2I-R1: the mean over all CoT + image tokens of the micro-batch
    seq_mean = "seq_mean"  # each sample's mean first, then the mean over samples


class Levels(StrEnum):
    """Which CoT levels the loss trains (one alone is the paper's ablation)."""

    both = "both"
    semantic = "semantic"
    token = "token"


class LrSchedule(StrEnum):
    """The learning rate after ``warmup_steps`` of linear warm-up."""

    linear = "linear"  # T2I-R1: linear decay to 0 at the last optimizer step
    constant = "constant"


class AdvantageMode(StrEnum):
    zscore = "zscore"  # T2I-R1: (r - mean) / (std + eps)
    center = "center"  # r - mean, no division by the spread
    leave_one_out = "leave_one_out"  # RLOO's baseline


@dataclass
class OptimConfig:
    # T2I-R1: lr 1e-6, no warm-up, linear decay (the janus-pro presets). The tiny default's 40 steps: lr 1e-4,
    # 4 warm-up steps (a tenth of the run), then constant. Over seeds 0-9 of `make run` the linear decay left two
    # seeds short of a 1.5 x gain, and the exact-evaluation probe learns more with a constant rate on all ten
    # (LEARNING.md has the tables).
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 4
    schedule: LrSchedule = LrSchedule.constant
    grad_clip: float = 1.0  # 0 = off

    def validate(self) -> None:
        require(self.lr > 0, "lr", "must be > 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "must be two values in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)")


def lr_schedule(optimizer: torch.optim.Optimizer, o: OptimConfig, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learner's learning-rate schedule over ``steps`` optimizer steps."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if o.schedule == LrSchedule.constant:
        return get_constant_schedule_with_warmup(optimizer, o.warmup_steps)
    return get_linear_schedule_with_warmup(optimizer, o.warmup_steps, steps)


@dataclass
class LossConfig:
    beta: float = 0.01  # KL coefficient (k3 estimator against the frozen reference); 0 = no reference model
    clip_low: float = 0.2
    clip_high: float = 0.2
    aggregation: Aggregation = Aggregation.token_mean
    levels: Levels = Levels.both
    semantic_weight: float = 1.0
    token_weight: float = 1.0
    image_logprob: ImageLogprobMode = ImageLogprobMode.conditional
    # Truncated importance sampling (learner/loss.py): each token's clipped surrogate is weighted by
    # min(exp(learner - rollout log-prob), is_cap), correcting the rollout engines' mismatch and the off-policy lag
    is_correction: bool = True
    is_cap: float = 2.0

    def validate(self) -> None:
        require(self.beta >= 0, "beta", "must be >= 0")
        require(self.is_cap >= 1, "is_cap", "must be >= 1 (a cap below 1 would down-weight on-policy tokens too)")
        require(self.clip_low >= 0 and self.clip_high >= 0, "clip_low", "clip ranges must be >= 0")
        require(self.semantic_weight >= 0 and self.token_weight >= 0, "semantic_weight", "level weights must be >= 0")


@dataclass
class AdvantageConfig:
    mode: AdvantageMode = AdvantageMode.zscore
    eps: float = 1e-4

    def validate(self) -> None:
        require(self.eps > 0, "eps", "must be > 0")


@dataclass
class LearnerConfig:
    ranks: int = 1
    num_cpus_per_rank: float = 0.5
    num_gpus_per_rank: float = 0.0
    zero_stage: int = 2
    # ZeRO-3 keeps parameters of up to this many elements whole on every rank (DeepSpeed's default); 0 partitions
    # every parameter, as ZeRO-3 does with the large ones of a 7B model (the tests use it on the tiny model)
    zero3_persistence_threshold: int = 100_000
    dtype: LearnerDtype = LearnerDtype.float32
    gradient_checkpointing: bool = False
    micro_batch_size: int = 8  # samples per forward/backward (a whole group: its CoT prompt runs once)
    updates_per_batch: int = 1  # optimizer steps on one batch of rollouts (1 = T2I-R1)
    ref_on_cpu: bool = True  # keep the frozen reference model on CPU (small models) instead of sharding it
    sync_bucket_mb: int = 64  # weight broadcast bucket size
    sync_timeout_s: float = 120.0  # a weight-sync member waiting longer than this fails the sync
    # CoT tokens per lm_head chunk: log-probs over the 102,400-word vocabulary are computed this many tokens at a
    # time (with recomputation in the backward), so [CoT tokens, vocabulary] logits never exist at once
    logprob_chunk_tokens: int = 1024
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)

    def validate(self) -> None:
        require(self.ranks >= 1, "ranks", "must be >= 1")
        require(self.zero_stage in (0, 1, 2, 3), "zero_stage", "must be 0, 1, 2 or 3")
        require(self.zero3_persistence_threshold >= 0, "zero3_persistence_threshold", "must be >= 0")
        require(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        require(self.updates_per_batch >= 1, "updates_per_batch", "must be >= 1")
        require(self.sync_bucket_mb >= 1, "sync_bucket_mb", "must be >= 1")
        require(self.sync_timeout_s > 0, "sync_timeout_s", "must be > 0")
        require(self.logprob_chunk_tokens >= 1, "logprob_chunk_tokens", "must be >= 1")


@dataclass
class LearnerSetup:
    """Everything a learner rank reads from the run's config (the application composes it: cluster/config.py's
    ``learner_setup``)."""

    model: ModelConfig
    learner: LearnerConfig
    # the rollout's image-token distribution, which loss.image_logprob=guided re-computes
    image_sampling: SamplingParams
    global_batch: int  # samples per step (trainer.prompts_per_step x rollout.group_size)
    steps: int  # training steps of the run (trainer.steps): the learning rate decays to 0 at the last

    @property
    def optimizer_steps(self) -> int:
        return self.steps * self.learner.updates_per_batch
