"""The one typed config tree of the project (OmegaConf structured configs) and how it is loaded.

Every subsystem reads its own section (``cfg.model``, ``cfg.rollout``, ``cfg.rewards``, ...). The dataclass
defaults are the embedded default (a tiny random Janus on CPU, embedded rewards); presets in
``cluster/configs/*.yaml`` override them; ``key=value`` arguments override both.

Validation happens once, in :func:`load_config`: unknown keys (with a "did you mean"), wrong types, out-of-range
values and missing model files are all reported as :class:`ConfigError` naming the full key.
This module imports nothing from the project, so every package can depend on it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    OmegaConfBaseException,
    ValidationError,
)

PRESET_DIR = Path(__file__).parent / "configs"


def _required(*_: Any) -> Any:
    # Presets mark values the user must supply as ${required:}; an override replaces the interpolation, and an
    # unreplaced one fails here when the config is resolved. (OmegaConf's own "???" does not survive a merge
    # onto a dataclass default.)
    raise ValueError("${required:}")


OmegaConf.register_resolver("required", _required, replace=True, annotation_validation="off")

# T2I-R1's semantic-CoT prompt (REFERENCE.md section 1). The template is the content of T2I-R1's
# data/prompt/reasoning_prompt.txt, verbatim (trailing space included); a test pins it against that file.
T2I_R1_SYSTEM_PROMPT = (
    "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."
)
T2I_R1_REASONING_TEMPLATE = (
    "You are asked to generate an image based on this prompt: \"{}\"\n"
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation: "
)


class ConfigError(ValueError):
    """A config value is wrong. The message names the full key and says how to fix it."""


class _FieldError(ValueError):
    """Raised by a section's ``validate``; :func:`validate_tree` prefixes the section's path."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def require(condition: bool, key: str, message: str) -> None:
    """Inside a section's ``validate``: fail with ``message`` for field ``key`` unless ``condition``."""
    if not condition:
        raise _FieldError(key, message)


def _one_of(value: str, key: str, choices: tuple[str, ...]) -> None:
    require(value in choices, key, f"must be one of {', '.join(choices)}; got {value!r}")


# --------------------------------------------------------------------------------------------------- model


@dataclass
class TinyModelConfig:
    """Shape of the tiny random Janus (same classes as Janus-Pro, built from a seed, no download)."""

    seed: int = 0
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2  # head dim = hidden_size / num_heads; vLLM's CPU attention needs 32 or more (64 here)
    num_kv_heads: int = 2
    intermediate_size: int = 256
    image_grid: int = 4  # image tokens per image = image_grid ** 2 (Janus-Pro: 24 -> 576)
    codebook_size: int = 256  # Janus-Pro: 16384 (256 lets every colour word of the colour reward be drawn)
    vq_embed_dim: int = 8
    vq_base_channels: int = 64  # 2 channels per GroupNorm(32) group: see policy.model.make_decoder_colour_transparent
    vq_upsamples: int = 2  # decoded image side = image_grid * 2 ** vq_upsamples (Janus-Pro: 4 -> 16x)

    def validate(self) -> None:
        require(self.hidden_size > 0 and self.num_heads > 0, "hidden_size", "must be positive")
        require(self.hidden_size % self.num_heads == 0, "num_heads", "must divide hidden_size")
        require(self.num_heads % self.num_kv_heads == 0, "num_kv_heads", "must divide num_heads")
        require(self.image_grid >= 1, "image_grid", "must be >= 1")
        require(self.codebook_size >= 2, "codebook_size", "must be >= 2")
        require(self.vq_base_channels == 64, "vq_base_channels",
                "must be 64 (two channels per GroupNorm(32) group; see policy.model.make_decoder_colour_transparent)")
        require(self.vq_upsamples >= 0, "vq_upsamples", "must be >= 0")


@dataclass
class ModelConfig:
    # A local HF-format Janus-Pro directory (config.json, *.safetensors, tokenizer files). None: the tiny random
    # model described by `tiny`, built once and cached under `cache_dir`.
    path: Optional[str] = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    cache_dir: str = "~/.cache/t2i_r1_ray"
    dtype: str = "float32"  # float32 | bfloat16 | float16: rollout dtype (the learner has its own)
    # Parameter-name prefixes that train. T2I-R1: only the LLaMA backbone (embeddings, layers, norm, lm_head).
    trainable: list[str] = field(default_factory=lambda: ["model.language_model.", "lm_head."])

    def validate(self) -> None:
        _one_of(self.dtype, "dtype", ("float32", "bfloat16", "float16"))
        require(len(self.trainable) > 0, "trainable", "name at least one parameter prefix")
        if self.path is not None:
            check_model_dir(self.path)


MODEL_FILES_HELP = (
    "Expected an HF-format Janus directory with config.json, model weights (*.safetensors or "
    "pytorch_model*.bin) and tokenizer files (tokenizer.json or tokenizer.model, tokenizer_config.json). "
    "Get one on a machine with network access, e.g. `huggingface-cli download deepseek-community/Janus-Pro-1B "
    "--local-dir /models/Janus-Pro-1B`, copy it here and set model.path to it."
)


def check_model_dir(path: str) -> None:
    """Raise ConfigError unless ``path`` holds a complete HF-format model directory."""
    p = Path(os.path.expanduser(path))
    if not p.is_dir():
        raise ConfigError(f"model.path: directory {str(p)!r} does not exist. {MODEL_FILES_HELP}")
    names = {f.name for f in p.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not any(n.endswith(".safetensors") or (n.startswith("pytorch_model") and n.endswith(".bin")) for n in names):
        missing.append("*.safetensors")
    if not ({"tokenizer.json", "tokenizer.model"} & names):
        missing.append("tokenizer.json")
    if missing:
        raise ConfigError(f"model.path: {str(p)!r} is incomplete, missing {', '.join(missing)}. {MODEL_FILES_HELP}")


# --------------------------------------------------------------------------------------------------- rollout


@dataclass
class PromptConfig:
    """How prompts are built (REFERENCE.md section 1); defaults are T2I-R1's."""

    system_prompt: str = T2I_R1_SYSTEM_PROMPT
    reasoning_template: str = T2I_R1_REASONING_TEMPLATE  # `{}` is replaced by the raw prompt
    reasoning_template_file: Optional[str] = None  # if set, read the template from this file instead
    # The CoT prompt keeps its last this-many tokens (T2I-R1: 512). The tiny byte-level tokenizer spends ~800
    # tokens on the T2I-R1 chat string, so the embedded default keeps 1024.
    max_prompt_tokens: int = 1024
    use_cot: bool = True  # False: draw from the raw prompt alone (the no-CoT baseline)

    def validate(self) -> None:
        require(self.max_prompt_tokens > 0, "max_prompt_tokens", "must be > 0")
        if self.reasoning_template_file is not None:
            f = Path(os.path.expanduser(self.reasoning_template_file))
            require(f.is_file(), "reasoning_template_file", f"file {str(f)!r} does not exist")
        else:
            require("{}" in self.reasoning_template, "reasoning_template", "must contain {} (the raw prompt)")


@dataclass
class TextSamplingConfig:
    """Semantic-level CoT sampling."""

    engine: str = "vllm"  # vllm | transformers (vllm falls back to transformers, with a warning, if it cannot load)
    # T2I-R1 trains with 1024 (the janus-pro presets); the tiny random model's CoT is noise, 8 keeps steps short
    max_new_tokens: int = 8
    temperature: float = 1.0
    top_k: int = 50  # 0 = off
    top_p: float = 1.0
    vllm_kv_cache_gib: float = 1.0  # CPU vLLM: KV-cache size
    vllm_gpu_memory_utilization: float = 0.3  # GPU vLLM: fraction of GPU memory for its weights + KV cache

    def validate(self) -> None:
        _one_of(self.engine, "engine", ("vllm", "transformers"))
        require(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        require(self.temperature > 0, "temperature", "must be > 0 (use a small value for near-greedy)")
        require(self.top_k >= 0, "top_k", "must be >= 0 (0 = off)")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.vllm_kv_cache_gib > 0, "vllm_kv_cache_gib", "must be > 0")
        require(0 < self.vllm_gpu_memory_utilization <= 1, "vllm_gpu_memory_utilization", "must be in (0, 1]")


@dataclass
class ImageSamplingConfig:
    """Token-level CoT sampling (image tokens with classifier-free guidance)."""

    cfg_weight: float = 5.0
    temperature: float = 1.0
    top_k: int = 0  # 0 = off (T2I-R1 samples over all codes)
    top_p: float = 1.0
    max_batch: int = 16  # images per sampler forward (a group larger than this is split)
    # on CUDA: replay one captured decode step (rollout/cuda_graph_sampler.py); ignored on CPU, where the eager
    # loop is faster
    cuda_graphs: bool = True

    def validate(self) -> None:
        require(self.cfg_weight >= 0, "cfg_weight", "must be >= 0 (1 = no guidance, 5 = T2I-R1)")
        require(self.temperature > 0, "temperature", "must be > 0")
        require(self.top_k >= 0, "top_k", "must be >= 0 (0 = off)")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.max_batch >= 1, "max_batch", "must be >= 1")


@dataclass
class RolloutConfig:
    group_size: int = 4  # G: CoTs (and images) per prompt
    workers: int = 1
    num_cpus_per_worker: float = 0.5
    num_gpus_per_worker: float = 0.0
    prompt: PromptConfig = field(default_factory=PromptConfig)
    cot: TextSamplingConfig = field(default_factory=TextSamplingConfig)
    image: ImageSamplingConfig = field(default_factory=ImageSamplingConfig)

    def validate(self) -> None:
        require(self.group_size >= 2, "group_size", "must be >= 2 (GRPO normalises rewards within a group)")
        require(self.workers >= 1, "workers", "must be >= 1")
        require(self.num_cpus_per_worker >= 0, "num_cpus_per_worker", "must be >= 0")
        require(self.num_gpus_per_worker >= 0, "num_gpus_per_worker", "must be >= 0")


# --------------------------------------------------------------------------------------------------- rewards


@dataclass
class ScorerConfig:
    """One reward model behind its own gRPC servers."""

    enabled: bool = False
    path: Optional[str] = None  # local weights directory (never a hub id)
    replicas: int = 1
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    weight: float = 1.0  # used by ensemble=weighted
    batch_size: int = 8  # images per model forward inside one group

    def validate(self) -> None:
        require(self.replicas >= 1, "replicas", "must be >= 1")
        require(self.num_cpus >= 0, "num_cpus", "must be >= 0")
        require(self.num_gpus >= 0, "num_gpus", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class ColorScorerConfig(ScorerConfig):
    """The embedded colour rule (rewards/scorers/color.py)."""

    radius: float = 20.0  # CIELAB Delta E around a colour's prototype that counts as fully that colour
    scale: float = 30.0  # Delta E beyond the radius at which a pixel counts as half-close

    def validate(self) -> None:
        super().validate()
        require(self.radius >= 0, "radius", "must be >= 0 (Delta E units)")
        require(self.scale > 0, "scale", "must be > 0 (Delta E units)")


@dataclass
class GdinoScorerConfig(ScorerConfig):
    """GroundingDINO rules (rewards/detection_rules.py); defaults are T2I-R1's."""

    box_threshold: float = 0.3  # a box counts for a noun when its phrase score is above this
    nms_iou: float = 0.5  # numeracy: boxes of one noun are counted after NMS at this IoU
    spatial_iou: float = 0.1  # left/right/above/below: full credit below this IoU, iou_threshold / IoU above
    near_distance: float = 0.3  # near / next to / on side of: centre distance, as a fraction of the image side

    def validate(self) -> None:
        super().validate()
        require(0 <= self.box_threshold < 1, "box_threshold", "must be in [0, 1)")
        require(0 < self.nms_iou <= 1, "nms_iou", "must be in (0, 1]")
        require(0 < self.spatial_iou <= 1, "spatial_iou", "must be in (0, 1]")
        require(self.near_distance > 0, "near_distance", "must be > 0")


@dataclass
class ObjectsScorerConfig(ScorerConfig):
    """The embedded object-presence reward (rewards/scorers/objects.py): weights come from installed packages."""

    min_similarity: float = 0.7  # noun <-> ImageNet class-name cosine (MiniLM) needed to count as that class

    def validate(self) -> None:
        super().validate()
        require(0 < self.min_similarity <= 1, "min_similarity", "must be in (0, 1]")


def _enabled_color() -> ColorScorerConfig:
    return ColorScorerConfig(enabled=True)


@dataclass
class RewardsConfig:
    # T2I-R1's ensemble (need local weight directories):
    hps: ScorerConfig = field(default_factory=ScorerConfig)
    gdino: GdinoScorerConfig = field(default_factory=GdinoScorerConfig)
    git: ScorerConfig = field(default_factory=ScorerConfig)
    orm: ScorerConfig = field(default_factory=ScorerConfig)
    clip: ScorerConfig = field(default_factory=ScorerConfig)
    # Embedded, no downloaded weights: a pixel rule for colour words, and an ImageNet object-presence reward.
    color: ColorScorerConfig = field(default_factory=_enabled_color)
    objects: ObjectsScorerConfig = field(default_factory=ObjectsScorerConfig)
    ensemble: str = "sum"  # sum (T2I-R1) | mean | weighted
    standardize: bool = False  # z-score each scorer over the batch before combining
    t2i_r1_compat: bool = False  # reproduce the reference GroundingDINO bugs (REFERENCE.md section 3)
    deadline_s: float = 120.0
    retries: int = 2
    max_message_mb: int = 256
    token: Optional[str] = None  # shared secret; when set, calls without it are refused
    # How images travel to the reward servers: raw (uint8 pixels; no PNG coding, the fast choice on one machine
    # or a LAN) | png (lossless, several times fewer bytes, for servers across a slow network)
    transport: str = "raw"

    def validate(self) -> None:
        _one_of(self.ensemble, "ensemble", ("sum", "mean", "weighted"))
        require(self.deadline_s > 0, "deadline_s", "must be > 0")
        require(self.retries >= 0, "retries", "must be >= 0")
        require(self.max_message_mb >= 4, "max_message_mb", "must be >= 4")
        _one_of(self.transport, "transport", ("raw", "png"))
        require(any(getattr(self, n).enabled for n in SCORER_NAMES), "enabled",
                "enable at least one scorer, e.g. rewards.color.enabled=true")


def _scorer_names() -> tuple[str, ...]:
    hints = typing.get_type_hints(RewardsConfig)
    return tuple(f.name for f in dataclasses.fields(RewardsConfig)
                 if isinstance(hints[f.name], type) and issubclass(hints[f.name], ScorerConfig))


SCORER_NAMES = _scorer_names()


# --------------------------------------------------------------------------------------------------- learner


@dataclass
class OptimConfig:
    # T2I-R1 uses 1e-6 (the janus-pro presets); the tiny default learns in 40 steps at 5e-5 and collapses to a
    # few image codes at 1e-4 and above (measured, see tests/test_cluster_learning.py)
    lr: float = 5e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0  # 0 = off

    def validate(self) -> None:
        require(self.lr > 0, "lr", "must be > 0")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "must be two values in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        require(self.grad_clip >= 0, "grad_clip", "must be >= 0 (0 = off)")


@dataclass
class LossConfig:
    beta: float = 0.01  # KL coefficient (k3 estimator against the frozen reference); 0 = no reference model
    clip_low: float = 0.2
    clip_high: float = 0.2
    aggregation: str = "token_mean"  # token_mean (T2I-R1: all CoT + image tokens of the micro-batch) | seq_mean
    levels: str = "both"  # both | semantic | token (train only one level: the paper's ablation)
    semantic_weight: float = 1.0
    token_weight: float = 1.0
    image_logprob: str = "conditional"  # conditional (T2I-R1: cond row, no CFG) | guided (the CFG distribution)

    def validate(self) -> None:
        require(self.beta >= 0, "beta", "must be >= 0")
        require(self.clip_low >= 0 and self.clip_high >= 0, "clip_low", "clip ranges must be >= 0")
        _one_of(self.aggregation, "aggregation", ("token_mean", "seq_mean"))
        _one_of(self.levels, "levels", ("both", "semantic", "token"))
        require(self.semantic_weight >= 0 and self.token_weight >= 0, "semantic_weight", "level weights must be >= 0")
        _one_of(self.image_logprob, "image_logprob", ("conditional", "guided"))


@dataclass
class AdvantageConfig:
    mode: str = "zscore"  # zscore (T2I-R1) | center (no std division) | leave_one_out
    eps: float = 1e-4

    def validate(self) -> None:
        _one_of(self.mode, "mode", ("zscore", "center", "leave_one_out"))
        require(self.eps > 0, "eps", "must be > 0")


@dataclass
class LearnerConfig:
    ranks: int = 1
    num_cpus_per_rank: float = 0.5
    num_gpus_per_rank: float = 0.0
    zero_stage: int = 2
    dtype: str = "float32"  # float32 | bfloat16
    gradient_checkpointing: bool = False
    micro_batch_size: int = 4  # samples per forward/backward
    updates_per_batch: int = 1  # optimizer steps on one batch of rollouts (1 = T2I-R1)
    ref_on_cpu: bool = True  # keep the frozen reference model on CPU (small models) instead of sharding it
    sync_bucket_mb: int = 64  # weight broadcast bucket size
    sync_timeout_s: float = 120.0  # a weight-sync member waiting longer than this fails the sync
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)

    def validate(self) -> None:
        require(self.ranks >= 1, "ranks", "must be >= 1")
        require(self.zero_stage in (0, 1, 2, 3), "zero_stage", "must be 0, 1, 2 or 3")
        _one_of(self.dtype, "dtype", ("float32", "bfloat16"))
        require(self.micro_batch_size >= 1, "micro_batch_size", "must be >= 1")
        require(self.updates_per_batch >= 1, "updates_per_batch", "must be >= 1")
        require(self.sync_bucket_mb >= 1, "sync_bucket_mb", "must be >= 1")
        require(self.sync_timeout_s > 0, "sync_timeout_s", "must be > 0")


# --------------------------------------------------------------------------------------------------- trainer


@dataclass
class DataConfig:
    path: Optional[str] = None  # JSON lines in T2I-R1's format, or Parquet; None = the built-in prompt set
    shuffle: bool = True
    on_malformed: str = "error"  # error | skip (skipped rows are counted and logged)

    def validate(self) -> None:
        _one_of(self.on_malformed, "on_malformed", ("error", "skip"))
        if self.path is not None:
            f = Path(os.path.expanduser(self.path))
            require(f.is_file(), "path", f"file {str(f)!r} does not exist (JSON lines or Parquet expected)")


@dataclass
class TrainerConfig:
    steps: int = 40  # the learning rate decays linearly to 0 at the last step
    prompts_per_step: int = 4
    mode: str = "sync"  # sync (on-policy, T2I-R1) | off_policy (rollout of step t+1 overlaps update of step t)
    save_every: int = 10  # checkpoint every k steps (0 = only at the end)

    def validate(self) -> None:
        require(self.steps >= 1, "steps", "must be >= 1")
        require(self.prompts_per_step >= 1, "prompts_per_step", "must be >= 1")
        _one_of(self.mode, "mode", ("sync", "off_policy"))
        require(self.save_every >= 0, "save_every", "must be >= 0")


@dataclass
class ClusterConfig:
    address: Optional[str] = None  # None: start a local Ray cluster; "auto" or host:port: join a running one
    host: str = "127.0.0.1"  # address that Ray, gRPC and torch.distributed bind to
    num_cpus: Optional[int] = None  # local cluster only
    dashboard_port: int = 8265
    object_store_mb: int = 512

    def validate(self) -> None:
        require(1 <= self.dashboard_port <= 65535, "dashboard_port", "must be a TCP port")
        require(self.object_store_mb >= 64, "object_store_mb", "must be >= 64")


@dataclass
class LoggingConfig:
    image_every: int = 5  # image grid every k steps (0 = never)
    grid_images: int = 16
    ray_metrics: bool = True

    def validate(self) -> None:
        require(self.image_every >= 0, "image_every", "must be >= 0")
        require(self.grid_images >= 1, "grid_images", "must be >= 1")


@dataclass
class Config:
    seed: int = 0
    output_dir: str = "outputs/run"
    resume: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# --------------------------------------------------------------------------------------------------- loading


def preset_path(name_or_path: str) -> Path:
    """A preset name (``tiny``, ``janus-pro-7b``) or a YAML file path."""
    p = Path(os.path.expanduser(name_or_path))
    if p.is_file():
        return p
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    names = sorted(f.stem for f in PRESET_DIR.glob("*.yaml"))
    raise ConfigError(f"--config {name_or_path!r}: no such file and no such preset (presets: {', '.join(names)})")


def _keys_at(node: Any, path: list[str]) -> list[str]:
    for part in path:
        node = node.get(part) if isinstance(node, DictConfig) else None
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _explain(err: OmegaConfBaseException, base: DictConfig, source: str) -> ConfigError:
    key = err.full_key or ""
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        parts = key.split(".")
        known = _keys_at(base, parts[:-1])
        hint = difflib.get_close_matches(parts[-1], known, n=1)
        where = ".".join(parts[:-1]) or "the top level"
        msg = f"unknown key {key!r} in {source}"
        msg += f"; did you mean {'.'.join(parts[:-1] + [hint[0]])!r}?" if hint else f" (keys at {where}: {', '.join(known)})"
        return ConfigError(msg)
    if isinstance(err, ValidationError):
        return ConfigError(f"{key}: {err.msg.splitlines()[0]} (from {source})")
    if isinstance(err, InterpolationResolutionError) and "${required:}" in str(err):
        return ConfigError(f"{key} is required by the preset but not set; pass {key}=... on the command line")
    return ConfigError(f"{key}: {err} (from {source})")


def validate_tree(node: Any, path: str = "") -> None:
    """Run every section's ``validate`` (depth first), reporting errors with the full key."""
    for f in dataclasses.fields(node):
        child = getattr(node, f.name)
        if dataclasses.is_dataclass(child):
            validate_tree(child, f"{path}{f.name}.")
    if hasattr(node, "validate"):
        try:
            node.validate()
        except _FieldError as e:
            raise ConfigError(f"{path}{e.key}: {e}") from None


def load_config(config: Optional[str] = None, overrides: Optional[list[str]] = None) -> Config:
    """Defaults <- preset/YAML file <- ``key=value`` overrides; validated. Raises ConfigError."""
    base = OmegaConf.structured(Config)
    merged = base
    if config is not None:
        path = preset_path(config)
        try:
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        except OmegaConfBaseException as e:
            raise _explain(e, base, str(path)) from None
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value; got {bad[0]!r}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        except OmegaConfBaseException as e:
            raise _explain(e, base, "the command line") from None
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _explain(e, base, "the config") from None
    validate_tree(cfg)
    return cfg


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> Config:
    """Inverse of :func:`to_yaml` (used to hand the resolved config to Ray actors and on resume)."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(text)))


def load_cli_config(config: Optional[str], overrides: list[str]) -> Config:
    """load_config for a command-line entry point: sets up logging; a bad config ends the process with the
    error on stderr and exit status 2."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return load_config(config, overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
