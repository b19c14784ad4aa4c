"""The ``rollout.*`` config section: how prompts are built and how both CoT levels are sampled, and by how many
workers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Optional

from core.config import require
from core.t2i_r1_text import T2I_R1_REASONING_TEMPLATE, T2I_R1_SYSTEM_PROMPT


class TextEngineName(StrEnum):
    vllm = "vllm"
    transformers = "transformers"


@dataclass
class PromptConfig:
    """How prompts are built (docs/ALGORITHM.md §1); defaults are T2I-R1's."""

    system_prompt: str = T2I_R1_SYSTEM_PROMPT
    reasoning_template: str = T2I_R1_REASONING_TEMPLATE  # `{}` is replaced by the raw prompt
    reasoning_template_file: Optional[str] = None  # if set, read the template from this file instead
    # The CoT prompt keeps its last this-many tokens (T2I-R1: 512; the T2I-R1 chat string is ~170 tokens with
    # Janus-Pro's tokenizer and with the tiny one)
    max_prompt_tokens: int = 512
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

    engine: TextEngineName = TextEngineName.vllm  # vllm falls back to transformers, with a warning, if it cannot load
    # T2I-R1 trains with 1024 (the janus-pro presets). The tiny random model's CoT is noise that dilutes the prompt
    # in the image context: 4 tokens keep both levels in the loop and the default learning (LEARNING.md)
    max_new_tokens: int = 4
    temperature: float = 1.0
    top_k: int = 50  # 0 = off
    top_p: float = 1.0
    vllm_kv_cache_gib: float = 1.0  # CPU vLLM: KV-cache size
    vllm_gpu_memory_utilization: float = 0.3  # GPU vLLM: fraction of GPU memory for its weights + KV cache
    # the transformers engine: completions per generate call (whole prompts, at least one); its KV cache grows with
    # it (at Janus-Pro-7B, 32 rows of a 512-token prompt + 1024-token CoT take 22.5 GiB in bf16)
    transformers_max_batch: int = 32

    def validate(self) -> None:
        require(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        require(self.temperature > 0, "temperature", "must be > 0 (use a small value for near-greedy)")
        require(self.top_k >= 0, "top_k", "must be >= 0 (0 = off)")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.vllm_kv_cache_gib > 0, "vllm_kv_cache_gib", "must be > 0")
        require(0 < self.vllm_gpu_memory_utilization <= 1, "vllm_gpu_memory_utilization", "must be in (0, 1]")
        require(self.transformers_max_batch >= 1, "transformers_max_batch", "must be >= 1")


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
    group_size: int = 8  # G: CoTs (and images) per prompt (T2I-R1: 8)
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
