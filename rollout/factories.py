"""Which implementation of each rollout interface a worker runs: the text engine (vLLM, or transformers as
asked for or as the fallback) and the image sampler's decode loop (eager, or CUDA-graph replay). The interfaces
(rollout/text_engine.py, rollout/image_sampler.py) do not know their implementations; this module does.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Optional

from policy.model import Policy
from policy.tokenizer import SpecialIds
from rollout.config import RolloutConfig, TextEngineName
from rollout.cuda_graph_sampler import GraphDecoders
from rollout.hf_engine import HFTextEngine
from rollout.image_sampler import ImageSampler
from rollout.text_engine import TextEngine

log = logging.getLogger(__name__)


class EngineFallbackWarning(UserWarning):
    """The configured vLLM engine could not be used; the transformers engine runs instead."""


def build_text_engine(policy: Policy, rollout: RolloutConfig, work_dir: Optional[str | Path] = None) -> TextEngine:
    """The engine ``rollout.cot.engine`` names. vLLM falls back to transformers, with a warning, when it is not
    installed, does not support this platform, or fails to load.

    ``work_dir``: where the vLLM engine may write its temporary Llama export (default: the system temp dir).
    """
    if rollout.cot.engine == TextEngineName.transformers:
        return HFTextEngine(policy.model, policy.ids)
    try:
        from rollout.vllm_engine import VLLMTextEngine  # imported here: vLLM is an optional extra

        return VLLMTextEngine(policy, rollout, work_dir=work_dir)
    except Exception as e:  # ImportError, an unsupported platform, or a load error: all end in the fallback
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        warnings.warn(
            f"rollout.cot.engine=vllm is unavailable ({reason}); using the transformers engine instead. "
            "Install the vLLM extra (`pip install -e .[cpu]` on x86_64 CPUs, `.[gpu]` with CUDA) or set "
            "rollout.cot.engine=transformers to silence this.",
            EngineFallbackWarning,
            stacklevel=2,
        )
        log.warning("vLLM text engine unavailable, falling back to transformers: %s", reason)
        return HFTextEngine(policy.model, policy.ids)


def build_image_sampler(model, ids: SpecialIds, cuda_graphs: bool = False) -> ImageSampler:
    """``cuda_graphs``: decode by replaying a CUDA graph of one step (rollout/cuda_graph_sampler.py) on CUDA;
    without CUDA the same warm-up, capture and replay run with eager stand-ins, slower than the default loop (for
    tests only)."""
    return ImageSampler(model, ids, graphs=GraphDecoders() if cuda_graphs else None)
