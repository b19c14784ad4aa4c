"""The transformers text engine: ``generate`` on the Janus model object the image sampler also uses.

It needs no second copy of the weights (a weight update of the Janus model is already an update of this
engine) and no extra dependency, which makes it the fallback wherever vLLM cannot run.
"""

from __future__ import annotations

from typing import Iterable

import torch
from transformers import GenerationConfig, JanusForConditionalGeneration
from transformers.generation.utils import GenerationMixin

from policy.tokenizer import SpecialIds
from rollout.config import TextSamplingConfig
from rollout.text_engine import Completion, TextEngine, check_generate_args


class HFTextEngine(TextEngine):
    name = "transformers"
    owns_weights = False

    def __init__(self, model: JanusForConditionalGeneration, ids: SpecialIds):
        self.model = model
        self.ids = ids

    def _generation_config(self, params: TextSamplingConfig, greedy: bool) -> GenerationConfig:
        sampling = {} if greedy else {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p}
        return GenerationConfig(
            do_sample=not greedy,
            max_new_tokens=params.max_new_tokens,
            eos_token_id=self.ids.eos,
            pad_token_id=self.ids.pad,
            bos_token_id=self.ids.bos,
            # generate() fills every unset field from the model's generation config, which for Janus holds the
            # image mode's guidance_scale=5: text would then be sampled with CFG. 1 means no guidance.
            guidance_scale=1.0,
            return_dict_in_generate=True,
            output_logits=True,  # raw logits (before temperature / top-k / top-p): the behaviour log-probs
            **sampling,  # top_k=0 is "off" in transformers too
        )

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, seeds: list[int], params: TextSamplingConfig, *,
                 greedy: bool = False) -> list[list[Completion]]:
        check_generate_args(prompts, n, seeds)
        config = self._generation_config(params, greedy)
        device = next(self.model.parameters()).device
        out = []
        # One call per prompt, its n completions as one batch: no padding (so greedy tokens match an unpadded
        # reference exactly) and per-prompt seeds, as in the vLLM engine.
        for prompt, seed in zip(prompts, seeds):
            x = torch.tensor([prompt] * n, dtype=torch.long, device=device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                # GenerationMixin.generate, not Janus's override: in text mode that override only adds
                # guidance_scale=None next to our config, which transformers flags as deprecated.
                res = GenerationMixin.generate(self.model, x, attention_mask=torch.ones_like(x), generation_config=config)
            new = res.sequences[:, len(prompt):]
            # Step by step: a float32 [n, T, vocab] stack would take GBs for Janus-Pro's 102k vocabulary.
            logp = torch.stack([torch.log_softmax(step.float(), dim=-1).gather(-1, new[:, t:t + 1])[:, 0]
                                for t, step in enumerate(res.logits)], dim=1)
            out.append([self._completion(new[i].tolist(), logp[i].tolist()) for i in range(n)])
        return out

    def _completion(self, ids: list[int], logprobs: list[float]) -> Completion:
        if self.ids.eos in ids:
            end = ids.index(self.ids.eos) + 1  # keep EOS; what follows is padding
            return Completion(ids[:end], logprobs[:end], "stop")
        return Completion(ids, logprobs, "length")

    @torch.no_grad()
    def update_weights(self, named: Iterable[tuple[str, torch.Tensor]]) -> None:
        params = dict(self.model.named_parameters())
        for name, tensor in named:
            if name not in params:
                raise KeyError(f"update_weights: {name!r} is not a parameter of the Janus model")
            params[name].copy_(tensor)
