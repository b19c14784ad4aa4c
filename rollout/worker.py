"""The rollout worker: prompt records in, rollout groups out (both CoT levels, images, behaviour log-probs).

One step of T2I-R1's generation for a batch of B prompts and a group size G:
    G semantic CoTs per prompt (text engine) -> B*G image prompts "{prompt}. {CoT}" -> image tokens with CFG
    (our ImageSampler) -> VQ decode -> RolloutSample records.

Plain Python; the Ray actor in rollout/actor.py wraps it. The worker holds one Janus model (the image sampler
and the transformers text engine run on it, the vLLM engine keeps its own copy of the language half), and
``update_weights`` keeps all copies equal.

Randomness: every CoT request and every image is seeded from (seed, the prompt's global index
``PromptRecord.index``, group index) alone, so a rollout is a pure function of (weights, prompts, seed, config),
and a prompt draws the same samples whichever worker it lands on and whatever else that worker was given: all
workers of a step take the step's seed. Give each step its own seed. :meth:`draw` seeds each request on its own
instead, so an image depends only on (weights, prompt, its seed, config), never on its batch: the generation
command and the evaluation harness draw through it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import Optional

import torch

from core.memory import peak_memory
from core.records import ImageLogprobMode, PromptRecord, RolloutGroup, RolloutSample
from core.timing import timed
from policy.config import ModelConfig
from policy.model import decode_image_tokens, load_policy, named_trainable_parameters
from rollout.config import RolloutConfig
from rollout.factories import build_image_sampler, build_text_engine
from rollout.prompts import PromptBuilder
from rollout.text_engine import Completion, TextEngine

log = logging.getLogger(__name__)

_COT_STREAM, _IMAGE_STREAM = 1, 2  # keep the two stages' seeds apart


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers: stable across processes, platforms and Python versions (unlike hash())."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(int(p).to_bytes(16, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


class RolloutWorker:
    def __init__(
        self,
        model_cfg: ModelConfig,
        rollout_cfg: RolloutConfig,
        image_logprob_mode: ImageLogprobMode = ImageLogprobMode.conditional,
        worker_index: int = 0,
        device: Optional[str] = None,
    ):
        """``image_logprob_mode``: the distribution the image tokens' behaviour log-probs are recorded under (the
        learner's ``loss.image_logprob``)."""
        self.model_cfg, self.cfg = model_cfg, rollout_cfg
        self.image_logprob_mode = image_logprob_mode
        self.worker_index = worker_index
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.policy = load_policy(model_cfg, device=device)
        self.prompt_builder = PromptBuilder(self.policy.tokenizer, self.policy.ids, rollout_cfg.prompt)
        on_cuda = next(self.policy.model.parameters()).is_cuda
        self.image_sampler = build_image_sampler(
            self.policy.model, self.policy.ids, cuda_graphs=on_cuda and rollout_cfg.image.cuda_graphs
        )
        # Without a CoT (the no-CoT baseline) there is no text stage and no text engine to start.
        self.text_engine: Optional[TextEngine] = (
            build_text_engine(self.policy, rollout_cfg, work_dir=model_cfg.cache_dir)
            if rollout_cfg.prompt.use_cot
            else None
        )
        self._version = 0
        log.info(
            "rollout worker %d: model on %s, text engine %s",
            worker_index,
            device,
            self.text_engine.name if self.text_engine else "none (use_cot=false)",
        )

    @property
    def version(self) -> int:
        """Policy version of the current weights (0 until the first update_weights)."""
        return self._version

    def named_trainable_parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(Janus name, tensor) of the parameters that train, in a fixed order: what a weight sync sends."""
        return named_trainable_parameters(self.policy.model, self.model_cfg.trainable)

    # ------------------------------------------------------------------------------------------- rollout

    def rollout(
        self,
        prompts: list[PromptRecord],
        seed: int | list[int],
        *,
        greedy: bool = False,
        group_size: Optional[int] = None,
    ) -> list[RolloutGroup]:
        """``group_size`` (default ``rollout.group_size``) samples for each prompt. ``seed``: one for the call
        (prompt p's samples are drawn from (seed, p.index)), or one per prompt (prompt i's from (seed[i], 0): the same
        samples as rolling it out alone with that one-element seed list). ``greedy``: argmax at both levels (the
        samples agree)."""
        if not prompts:
            return []
        g = group_size or self.cfg.group_size
        if isinstance(seed, int):
            unnumbered = [p.prompt for p in prompts if p.index < 0]
            if unnumbered:
                raise ValueError(
                    f"rollout: prompt {unnumbered[0]!r} has no global index (PromptRecord.index = -1); seeds are "
                    "derived from it, so that a prompt draws the same samples on any worker. Number the prompts of "
                    "the data set (core.prompt_file.load_prompts does) before splitting them across workers, or "
                    "give one seed per prompt."
                )
            streams = [(seed, p.index) for p in prompts]
        elif len(seed) == len(prompts):
            streams = [(s, 0) for s in seed]
        else:
            raise ValueError(f"{len(prompts)} prompts but {len(seed)} seeds: give one seed, or one per prompt")
        version = self._version
        timings: dict[str, float] = {}
        memory: dict[str, float] = {}
        with timed(timings, "total"):
            with timed(timings, "cot"), peak_memory(memory, "cot"):
                if self.text_engine is not None:
                    cot_prompts = [self.prompt_builder.cot_prompt_ids(p.prompt) for p in prompts]
                    seeds = [derive_seed(base, _COT_STREAM, i) for base, i in streams]
                    completions = self.text_engine.generate(cot_prompts, g, seeds, self.cfg.cot, greedy=greedy)
                else:
                    cot_prompts = [[] for _ in prompts]
                    completions = [[Completion([], [], "stop") for _ in range(g)] for _ in prompts]

            with timed(timings, "image"), peak_memory(memory, "image"):
                cot_texts = [[self.prompt_builder.cot_text(c.token_ids) for c in group] for group in completions]
                image_prompts = [
                    self.prompt_builder.image_prompt_ids(p.prompt, text if self.text_engine is not None else None)
                    for p, texts in zip(prompts, cot_texts)
                    for text in texts
                ]
                image_seeds = [derive_seed(base, _IMAGE_STREAM, i, j) for base, i in streams for j in range(g)]
                sample = self.image_sampler.sample(
                    image_prompts, self.cfg.image, image_seeds, greedy=greedy, return_logprobs=True
                )

            with timed(timings, "decode"), peak_memory(memory, "decode"):
                images = decode_image_tokens(self.policy.model, sample.tokens, batch_size=self.cfg.image.max_batch)

        mode = self.image_logprob_mode
        image_logprobs = sample.cond_logprobs if mode == ImageLogprobMode.conditional else sample.logprobs
        groups = []
        for i, p in enumerate(prompts):
            samples = []
            for j, c in enumerate(completions[i]):
                k = i * g + j
                samples.append(
                    RolloutSample(
                        prompt=p,
                        group_index=j,
                        cot_prompt_ids=list(cot_prompts[i]),
                        cot_ids=list(c.token_ids),
                        cot_text=cot_texts[i][j],
                        image_prompt_ids=image_prompts[k],
                        image_ids=sample.tokens[k].tolist(),
                        image=images[k],
                        cot_logprobs=list(c.logprobs),
                        image_logprobs=image_logprobs[k].tolist(),
                        image_logprob_mode=mode,
                        policy_version=version,
                        timings=dict(timings),
                        memory_mib=dict(memory),
                    )
                )
            groups.append(RolloutGroup(prompt=p, samples=samples))
        return groups

    def draw(self, prompts: list[PromptRecord], seeds: list[int]) -> list[RolloutSample]:
        """One sample per (prompt, seed) pair, batched: sample i is ``rollout([prompts[i]], seeds[i],
        group_size=1)``'s, whatever else is in the batch."""
        return [g.samples[0] for g in self.rollout(prompts, list(seeds), group_size=1)]

    # ------------------------------------------------------------------------------------------- weights

    @torch.no_grad()
    def update_weights(self, named: Iterable[tuple[str, torch.Tensor]], version: int) -> None:
        """Copy Janus-named tensors into the model (in place) and into the text engine's own copy, if it has one;
        the next rollout is stamped with ``version``."""
        named = list(named)
        params = dict(self.policy.model.named_parameters())
        for name, tensor in named:
            p = params.get(name)
            if p is None:
                raise KeyError(
                    f"update_weights: {name!r} is not a parameter of the Janus model "
                    "(expected names like 'model.language_model.layers.0.mlp.up_proj.weight')"
                )
            if p.shape != tensor.shape:
                raise ValueError(f"update_weights: {name!r} has shape {tuple(p.shape)}, got {tuple(tensor.shape)}")
        for name, tensor in named:
            params[name].copy_(tensor)
        if self.text_engine is not None and self.text_engine.owns_weights:
            self.text_engine.update_weights(named)
        self._version = version

    def close(self) -> None:
        if self.text_engine is not None:
            self.text_engine.close()
