"""The ``model.*`` config section: which Janus (a local HF directory, or the tiny random one) and what trains."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Optional

from core.config import ConfigError, require


class ModelDtype(StrEnum):
    """Parameter dtype of a loaded policy (keys of policy.model.DTYPES)."""

    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


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
    # text vocabulary: 0 = the tiny tokenizer's, rounded up to 64; Janus-Pro's 102,400 pads the embedding
    # and lm_head with rows no token maps to (as Janus-Pro's own vocabulary is padded beyond its tokenizer)
    vocab_size: int = 0

    def validate(self) -> None:
        require(self.hidden_size > 0 and self.num_heads > 0, "hidden_size", "must be positive")
        require(self.hidden_size % self.num_heads == 0, "num_heads", "must divide hidden_size")
        require(self.num_heads % self.num_kv_heads == 0, "num_kv_heads", "must divide num_heads")
        require(self.image_grid >= 1, "image_grid", "must be >= 1")
        require(self.codebook_size >= 2, "codebook_size", "must be >= 2")
        require(
            self.vq_base_channels == 64,
            "vq_base_channels",
            "must be 64 (two channels per GroupNorm(32) group; see policy.model.make_decoder_colour_transparent)",
        )
        require(self.vq_upsamples >= 0, "vq_upsamples", "must be >= 0")
        require(self.vocab_size >= 0, "vocab_size", "must be >= 0 (0 = the tiny tokenizer's)")


@dataclass
class ModelConfig:
    # A local HF-format Janus-Pro directory (config.json, *.safetensors, tokenizer files). None: the tiny random
    # model described by `tiny`, built once and cached under `cache_dir`.
    path: Optional[str] = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    cache_dir: str = "~/.cache/t2i_r1_ray"
    dtype: ModelDtype = ModelDtype.float32  # the rollout workers' dtype (the learner has its own)
    # Parameter-name prefixes that train. T2I-R1: only the LLaMA backbone (embeddings, layers, norm, lm_head).
    trainable: list[str] = field(default_factory=lambda: ["model.language_model.", "lm_head."])

    def validate(self) -> None:
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


# Where `python -m cluster.run` writes the trained policy in HF format, relative to its output_dir.
RUN_EXPORT = Path("checkpoints") / "hf"


def find_model_dir(path: str) -> Path:
    """The HF-format Janus directory that ``path`` names: the directory itself, or the export of a training run
    (``path`` a run's output_dir, or its ``checkpoints/``). Raises ConfigError naming what was looked for."""
    p = Path(os.path.expanduser(path))
    for candidate in (p, p / RUN_EXPORT, p / RUN_EXPORT.name):
        if (candidate / "config.json").is_file():
            check_model_dir(str(candidate))
            return candidate
    raise ConfigError(
        f"{str(p)!r} is neither an HF-format Janus directory (config.json, weights, tokenizer) nor a "
        f"training run's output_dir with the trained policy in {RUN_EXPORT}/ (written at the end of "
        f"`python -m cluster.run`). {MODEL_FILES_HELP}"
    )
