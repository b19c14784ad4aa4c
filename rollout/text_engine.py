"""The semantic-level CoT engine: one interface, two implementations (vLLM, transformers; picked by
rollout/factories.py).

Both engines take prompts as token ids (built by rollout.prompts), sample ``n`` completions per prompt and
return, per completion, the sampled ids (up to and including EOS when they stopped on it) and the behaviour
log-prob of every sampled token under the *raw* model distribution (log_softmax of the logits, before
temperature / top-k / top-p). That is the quantity the learner recomputes for the ratio and the KL.

Seeds are per prompt: a prompt's completions depend only on its ids, its seed, the sampling settings and the
weights, never on which other prompts share the call. The two engines use different random streams, so only
greedy decoding gives the same tokens in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from rollout.config import TextSamplingConfig


@dataclass
class Completion:
    token_ids: list[int]  # sampled ids; the last one is EOS when finish_reason == "stop"
    logprobs: list[float]  # raw-distribution log-prob of each sampled id
    finish_reason: str  # "stop" (EOS) | "length" (max_new_tokens reached)


class TextEngine(ABC):
    name: str
    # True when the engine keeps its own copy of the language-model weights (vLLM), which a weight update must
    # reach separately; False when it runs on the caller's Janus model object.
    owns_weights: bool

    @abstractmethod
    def generate(
        self, prompts: list[list[int]], n: int, seeds: list[int], params: TextSamplingConfig, *, greedy: bool = False
    ) -> list[list[Completion]]:
        """``n`` completions for each prompt (token ids, BOS included), sampled with ``seeds[i]`` for prompt i.

        ``greedy=True`` takes the argmax at every step (temperature, top-k and top-p are then ignored).
        """

    @abstractmethod
    def update_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy Janus-named tensors into the weights the engine samples from (an engine that holds only the
        language model ignores the other names)."""

    def close(self) -> None:  # noqa: B027 (an optional hook: an engine without resources keeps this no-op)
        """Release the engine's resources (threads, caches); the object is unusable afterwards."""


def check_generate_args(prompts: list[list[int]], n: int, seeds: list[int]) -> None:
    if len(seeds) != len(prompts):
        raise ValueError(f"one seed per prompt expected: {len(prompts)} prompts, {len(seeds)} seeds")
    if n < 1:
        raise ValueError(f"n (completions per prompt) must be >= 1, got {n}")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("empty prompt: every prompt needs at least one token (BOS)")
