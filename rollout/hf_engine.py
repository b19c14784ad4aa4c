"""The transformers text engine: ``generate`` on the Janus model object the image sampler also uses.

It needs no second copy of the weights (a weight update of the Janus model is already an update of this
engine) and no extra dependency, which makes it the fallback wherever vLLM cannot run.

All prompts of a call run as one left-padded ``generate`` (``rollout.cot.transformers_max_batch`` completions at
a time), and two logits processors do what transformers cannot do for us:
- seeds per row: transformers samples every row from one global generator, so a row's draw would depend on the
  rows beside it. :class:`SeededDraw` draws each row itself, by the image sampler's counter-based Gumbel-max keyed
  by (the prompt's seed, the completion's index, the step) after temperature / top-k / top-p
  (policy/sampling.py), and hands ``generate`` a one-hot choice that its greedy argmax takes. A prompt's
  completions are thus a function of its own seed, whatever else the call holds;
- behaviour log-probs without the score stack: ``output_logits`` would keep ``rows x T x 102,400`` float32
  logits to the end of the call (at T2I-R1's 8 x 1024 tokens, 3.1 GiB per prompt). :class:`BehaviourLogprobs`
  keeps one step's log-softmax and gathers the sampled token's value from it when the next step shows it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

import torch
from transformers import GenerationConfig, JanusForConditionalGeneration, LogitsProcessor, LogitsProcessorList
from transformers.generation.utils import GenerationMixin

from policy.sampling import filter_logits, sample_from_logits, seed_keys, step_keys
from policy.tokenizer import SpecialIds
from rollout.config import TextSamplingConfig
from rollout.text_engine import Completion, TextEngine, check_generate_args


class BehaviourLogprobs(LogitsProcessor):
    """Records log softmax(raw logits)[sampled token] of every row and step; it must see the raw logits (no
    processor before it changes them: with our generation config transformers adds none ahead of custom ones).

    Holds one ``[rows, V]`` float32 log-softmax and one value per row and step, never the whole score stack.
    """

    def __init__(self, prompt_len: int):
        self.prompt_len = prompt_len
        self.steps: list[torch.Tensor] = []  # [rows] per step whose token has been seen
        self.pending: Optional[torch.Tensor] = None  # [rows, V] log-probs of the step whose token is not known yet

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.pending is not None:
            self.steps.append(self.pending.gather(-1, input_ids[:, -1:])[:, 0])
        self.pending = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def logprobs(self, sequences: torch.Tensor) -> torch.Tensor:
        """``[rows, T]`` log-probs of the generated tokens of ``sequences`` (the prompt's ``prompt_len`` ids, then
        T new ones). Generation may have run steps it then undid (transformers' deferred stop check): those are
        cut off."""
        new = sequences[:, self.prompt_len :]
        t = new.shape[1]
        steps = self.steps[:t]
        if len(steps) < t:  # the last kept step's token is only in ``sequences``
            steps.append(self.pending.gather(-1, new[:, t - 1 : t])[:, 0])
        self.pending = None
        return torch.stack(steps, dim=1) if steps else new.new_zeros((new.shape[0], 0), dtype=torch.float32)


class SeededDraw(LogitsProcessor):
    """Draws row r's next token from its own counter-based noise (key ``row_keys[r]``, then the step), after the
    sampling filters; returns logits whose argmax is the drawn token (0 there, -inf elsewhere)."""

    def __init__(self, row_keys: torch.Tensor, prompt_len: int, params: TextSamplingConfig):
        self.row_keys, self.prompt_len, self.params = row_keys, prompt_len, params

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_len
        tokens = sample_from_logits(filter_logits(scores, self.params), step_keys(self.row_keys, step))
        choice = torch.full_like(scores, float("-inf"))
        return choice.scatter_(-1, tokens[:, None], 0.0)


def row_keys(seeds: list[int], n: int, device) -> torch.Tensor:
    """The noise key of completion j of prompt i, row ``i * n + j``: the prompt's seed key advanced by j."""
    keys = seed_keys(seeds, device).repeat_interleave(n)
    completion = torch.arange(n, dtype=torch.int32, device=device).repeat(len(seeds))
    return step_keys(keys, completion)


class HFTextEngine(TextEngine):
    name = "transformers"
    owns_weights = False

    def __init__(self, model: JanusForConditionalGeneration, ids: SpecialIds):
        self.model = model
        self.ids = ids

    def _generation_config(self, params: TextSamplingConfig) -> GenerationConfig:
        return GenerationConfig(
            do_sample=False,  # greedy over what SeededDraw leaves: its draw (sampling) or the raw logits (greedy)
            max_new_tokens=params.max_new_tokens,
            eos_token_id=self.ids.eos,
            pad_token_id=self.ids.pad,
            bos_token_id=self.ids.bos,
            # generate() fills every unset field from the model's generation config, which for Janus holds the
            # image mode's guidance_scale=5: text would then be sampled with CFG. 1 means no guidance.
            guidance_scale=1.0,
        )

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], n: int, seeds: list[int], params: TextSamplingConfig, *, greedy: bool = False
    ) -> list[list[Completion]]:
        check_generate_args(prompts, n, seeds)
        per_call = max(1, params.transformers_max_batch // n)  # whole prompts, at least one
        out: list[list[Completion]] = []
        for i in range(0, len(prompts), per_call):
            out += self._generate_batch(prompts[i : i + per_call], n, seeds[i : i + per_call], params, greedy)
        return out

    def _generate_batch(
        self, prompts: list[list[int]], n: int, seeds: list[int], params: TextSamplingConfig, greedy: bool
    ) -> list[list[Completion]]:
        """One left-padded ``generate`` over the ``n`` completions of every prompt (rows grouped by prompt)."""
        device = next(self.model.parameters()).device
        longest = max(len(p) for p in prompts)
        x = torch.full((len(prompts) * n, longest), self.ids.pad, dtype=torch.long)
        mask = torch.zeros_like(x)
        for i, p in enumerate(prompts):
            x[i * n : (i + 1) * n, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[i * n : (i + 1) * n, longest - len(p) :] = 1
        record = BehaviourLogprobs(longest)
        processors = LogitsProcessorList([record])
        if not greedy:
            processors.append(SeededDraw(row_keys(seeds, n, device), longest, params))
        # GenerationMixin.generate, not Janus's override: in text mode that override only adds
        # guidance_scale=None next to our config, which transformers flags as deprecated.
        sequences = GenerationMixin.generate(
            self.model,
            x.to(device),
            attention_mask=mask.to(device),
            generation_config=self._generation_config(params),
            logits_processor=processors,
        )
        logp = record.logprobs(sequences).cpu()
        new = sequences[:, longest:].cpu()
        return [
            [self._completion(new[i * n + j].tolist(), logp[i * n + j].tolist()) for j in range(n)]
            for i in range(len(prompts))
        ]

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
