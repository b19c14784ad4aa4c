"""Per-token log-probs, with gradients, of both CoT levels of a micro-batch.

- Semantic level: the CoT tokens under the CoT context, scored by ``lm_head``.
- Token level: the image tokens under the image context (image prompt, then the teacher-forced image-token
  embeddings ``gen_aligner(gen_embed(code))``), scored by the generation head.

Each level is one forward of the LLaMA backbone over ``[context | targets[:-1]]``, except that rows sharing a CoT
context (the G samples of a prompt) run it once and their CoT tokens attend to its cached keys and values
(:func:`semantic_logprobs`; at the tiny default the prompt is 9/10 of the learner's work). The hidden states are sliced
to the target positions (and to real, non-padding targets) *before* a head runs, so the 102,400-way ``lm_head``
never sees image positions or prompts and the generation head never sees text positions; ``lm_head`` runs over
the CoT tokens in chunks (:func:`chunked_head_logprobs`), so ``[CoT tokens, 102400]`` logits never exist at once.
Left padding is handled by the attention mask and by position ids that count only real tokens, so a row's
log-probs do not depend on what it is batched with.

Image log-prob modes (learner.config.LossConfig.image_logprob):
- ``conditional`` (T2I-R1): the conditional row alone, temperature 1, no filtering.
- ``guided``: the distribution the sampler actually drew from (CFG combine with the unconditional row, then
  temperature / top-k / top-p), via policy.sampling.sampling_logprobs; the unconditional row goes through the
  backbone in the same forward, and gradients flow through both rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import JanusForConditionalGeneration

from core.records import ImageLogprobMode
from learner.batch import LevelInputs
from policy.sampling import SamplingParams, sampling_logprobs
from policy.tokenizer import SpecialIds


def _sequence_mask_and_positions(level: LevelInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention mask and position ids of ``[context | targets[:, :-1]]`` (positions count real tokens only)."""
    mask = torch.cat([level.context_mask, level.target_mask[:, :-1].long()], dim=1)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return mask, positions


def _target_hidden(hidden: torch.Tensor, level: LevelInputs) -> torch.Tensor:
    """Hidden states that predict the real targets, ``[N, D]`` (row-major over the target mask).

    Position ``P - 1 + t`` of ``[context | targets[:-1]]`` predicts target ``t``.
    """
    p = level.context_ids.shape[1]
    return hidden[:, p - 1 :][level.target_mask]


def _scatter(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[N]`` values back into a ``[B, T]`` float32 tensor (0 off the mask), differentiably."""
    return torch.zeros(mask.shape, dtype=values.dtype, device=values.device).masked_scatter(mask, values)


def _gather_logprobs(logprobs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[target] in float32 without materialising the full log-softmax."""
    logits = logits.float()
    return _gather_logprobs(logits, targets) - torch.logsumexp(logits, dim=-1)


def chunks_for(tokens: int, chunk_tokens: int) -> int:
    """How many chunks of at most ``chunk_tokens`` rows ``tokens`` rows take (at least one)."""
    return max(1, -(-tokens // chunk_tokens))


def _head_chunk(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _token_logprobs(head(hidden), targets)


def chunked_head_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunks: int) -> torch.Tensor:
    """``log_softmax(head(hidden))[targets]``, float32 ``[N]``, computed in ``chunks`` equal slices of rows.

    With gradients each slice is checkpointed: its forward keeps only its inputs, and the backward recomputes
    its logits, so at most one slice's ``[N / chunks, V]`` logits, their float32 copy and their gradient exist at
    any time, never the whole ``[N, V]``. The head runs exactly ``chunks`` times (some slices may be empty):
    under ZeRO-3 each call gathers its weight collectively, so every rank must make the same number of calls.
    """
    size = -(-hidden.shape[0] // chunks)
    parts = []
    for i in range(chunks):
        h, t = hidden[i * size : (i + 1) * size], targets[i * size : (i + 1) * size]
        if torch.is_grad_enabled():
            parts.append(checkpoint(_head_chunk, head, h, t, use_reentrant=False, preserve_rng_state=False))
        else:
            parts.append(_head_chunk(head, h, t))
    return torch.cat(parts)


def semantic_logprobs(
    model: JanusForConditionalGeneration, level: LevelInputs, chunks: int = 1, share_contexts: bool = True
) -> torch.Tensor:
    """log p(cot_t | cot context, cot_<t) under ``lm_head``: float32 ``[B, T]``, 0 on padding. ``chunks``: the
    number of slices the ``lm_head`` log-probs are computed in (:func:`chunked_head_logprobs`).

    ``share_contexts``: rows with the same context (the G samples of a prompt share its CoT prompt) run it through
    the backbone once; its keys and values, gathered per row, are the cache the rows' own CoT tokens attend to,
    and gradients flow back through the gather into the one context forward. Same log-probs as one forward per
    row (tests/test_logprobs.py), with a group's prompt computed once instead of G times. Needs the KV cache, so
    off under gradient checkpointing (transformers drops the cache there)."""
    shared = _shared_context_hidden(model, level) if share_contexts and not model.is_gradient_checkpointing else None
    if shared is not None:
        h = shared[level.target_mask]
    else:
        ids = torch.cat([level.context_ids, level.targets[:, :-1]], dim=1)
        mask, positions = _sequence_mask_and_positions(level)
        hidden = model.model.language_model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state
        h = _target_hidden(hidden, level)
    values = chunked_head_logprobs(model.lm_head, h, level.targets[level.target_mask], chunks)
    return _scatter(values, level.target_mask)


def _shared_context_hidden(model: JanusForConditionalGeneration, level: LevelInputs) -> Optional[torch.Tensor]:
    """The hidden states ``[B, T, D]`` that predict each row's targets, with every distinct context computed once;
    None when no two rows share a context (nothing to save)."""
    contexts, rows = torch.unique(torch.cat([level.context_ids, level.context_mask], dim=1), dim=0, return_inverse=True)
    if len(contexts) == len(rows):
        return None
    # one row holding each distinct context (rows with the same context and mask have the same positions too)
    first = torch.empty(len(contexts), dtype=torch.long, device=rows.device)
    first.scatter_(0, rows, torch.arange(len(rows), device=rows.device))
    p = level.context_ids.shape[1]
    mask, positions = _sequence_mask_and_positions(level)
    lm = model.model.language_model
    context = lm(
        input_ids=level.context_ids[first],
        attention_mask=level.context_mask[first],
        position_ids=positions[first, :p],
        use_cache=True,
    )
    last = context.last_hidden_state[rows, -1:]  # predicts target 0
    if level.targets.shape[1] == 1:
        return last
    cache = context.past_key_values
    cache.batch_select_indices(rows)  # each row's copy of its context's keys and values (a gather: grads flow)
    rest = lm(
        input_ids=level.targets[:, :-1],
        attention_mask=mask,
        position_ids=positions[:, p:],
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state
    return torch.cat([last, rest], dim=1)


def unconditional_context(level: LevelInputs, ids: SpecialIds) -> torch.Tensor:
    """The CFG unconditional image context: every token except BOS and ``<begin_of_image>`` replaced by the pad
    token (docs/ALGORITHM.md §3), by the same rule as rollout/image_sampler.py, so the guided log-probs are
    those of the rows the sampler drew from."""
    ctx = level.context_ids
    keep = (ctx == ids.bos) | (ctx == ids.boi)
    return torch.where(keep, ctx, torch.full_like(ctx, ids.pad))


def image_logprobs(
    model: JanusForConditionalGeneration,
    level: LevelInputs,
    mode: ImageLogprobMode = ImageLogprobMode.conditional,
    sampling: Optional[SamplingParams] = None,
    ids: Optional[SpecialIds] = None,
) -> torch.Tensor:
    """log p(image_t | image context, image_<t) under the generation head: float32 ``[B, T]``, 0 on padding.

    ``mode="guided"`` needs ``sampling`` (the rollout's image sampling settings) and the special token ``ids``.
    """
    if mode not in tuple(ImageLogprobMode):
        raise ValueError(f"image log-prob mode must be one of {', '.join(ImageLogprobMode)}, got {mode!r}")
    guided = mode == ImageLogprobMode.guided
    if guided and (sampling is None or ids is None):
        raise ValueError("image_logprobs(mode='guided') needs the image sampling config and the special token ids")
    context_ids = level.context_ids
    mask, positions = _sequence_mask_and_positions(level)
    rows = context_ids.shape[0]
    if guided:
        context_ids = torch.cat([context_ids, unconditional_context(level, ids)], dim=0)
        mask, positions = mask.repeat(2, 1), positions.repeat(2, 1)
    text_embeds = model.get_input_embeddings()(context_ids)
    image_embeds = model.prepare_embeddings_for_image_generation(level.targets[:, :-1])
    if guided:
        image_embeds = image_embeds.repeat(2, 1, 1)
    embeds = torch.cat([text_embeds, image_embeds.to(text_embeds.dtype)], dim=1)
    hidden = model.model.language_model(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False
    ).last_hidden_state
    targets = level.targets[level.target_mask]
    if not guided:
        values = _token_logprobs(model.model.generation_head(_target_hidden(hidden, level)), targets)
    else:
        cond = model.model.generation_head(_target_hidden(hidden[:rows], level))
        uncond = model.model.generation_head(_target_hidden(hidden[rows:], level))
        values = _gather_logprobs(sampling_logprobs(cond, uncond, sampling), targets)
    return _scatter(values, level.target_mask)


class PolicyLogProbs(nn.Module):
    """The learner's forward: Janus plus how to score each level. DeepSpeed wraps this module, so its forward
    is the engine's forward (ZeRO-3 gathers parameters in it); ``self.policy`` keeps the Janus parameter names.
    ``chunk_tokens``: CoT tokens per ``lm_head`` chunk (learner.logprob_chunk_tokens). ``share_contexts``: see
    :func:`semantic_logprobs`; off under ZeRO-3, whose ranks must make the same backbone calls (each gathers the
    parameters collectively) while sharing makes one or two calls depending on the micro-batch."""

    def __init__(
        self,
        policy: JanusForConditionalGeneration,
        image_mode: ImageLogprobMode = ImageLogprobMode.conditional,
        sampling: Optional[SamplingParams] = None,
        ids: Optional[SpecialIds] = None,
        chunk_tokens: int = 1024,
        share_contexts: bool = True,
    ):
        super().__init__()
        self.policy = policy
        self.image_mode = image_mode
        self.sampling = sampling
        self.ids = ids
        self.chunk_tokens = chunk_tokens
        self.share_contexts = share_contexts

    def forward(
        self, levels: Mapping[str, LevelInputs], semantic_chunks: Optional[int] = None
    ) -> dict[str, torch.Tensor]:
        """``semantic_chunks``: how many ``lm_head`` chunks the CoT level takes (default: as many as its tokens
        need); under ZeRO-3 every rank must pass the same number (learner/engine.py takes the largest need of the
        global batch's micro-batches)."""
        out = {}
        for name, level in levels.items():
            if name == "semantic":
                chunks = semantic_chunks or chunks_for(level.num_tokens, self.chunk_tokens)
                out[name] = semantic_logprobs(self.policy, level, chunks, self.share_contexts)
            elif name == "token":
                out[name] = image_logprobs(self.policy, level, self.image_mode, self.sampling, self.ids)
            else:
                raise ValueError(f"unknown level {name!r} (expected semantic or token)")
        return out
