"""Image tokens with classifier-free guidance: our own decode loop over Janus's LLaMA weights.

Why not ``model.generate(generation_mode="image")`` or T2I-R1's loop of eager HF forwards:
- cond and uncond rows run as one batch through a hand-written decoder step (RMSNorm, RoPE, GQA attention
  over a static KV cache, SwiGLU MLP) on the model's own tensors: no cache concatenation (the reference loop
  copies the whole KV cache every token), no mask building, few module calls;
- one static KV cache serves every call (chunks of fewer rows use views of it); it is re-allocated only when a
  call needs more rows or positions than it has, so its size stays bounded by ``max_batch`` and the model's
  positions;
- prompts of different lengths are left-padded with attention masks AND per-row position ids, so a padded
  prompt draws exactly what it draws alone (transformers' image mode numbers positions from the pad);
- CFG is applied to the generation head's last hidden layer: the head ends in a linear map, so
  ``W(g_u + w (g_c - g_u)) + b`` equals ``uncond + w (cond - uncond)`` on the logits and the widest matmul of
  the step (hidden -> 16,384 codes) runs on B rows instead of 2B;
- randomness is counter-based Gumbel-max keyed by each request's seed (policy/sampling.py), so a request's
  image depends on its seed, not on its batch, and no ``torch.multinomial`` (slow on CPU) is needed.

Weights are read from the model at every :meth:`ImageSampler.sample` call (references, never copies), so
in-place weight updates by the rollout worker take effect on the next call. A step is two functions of
static-shaped tensors, :func:`decoder_forward` and :func:`next_tokens`: the unit a CUDA graph can capture.
An ImageSampler holds its cache as state: one sampler per thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Protocol

import torch
import torch.nn.functional as F

from policy.sampling import SamplingParams, cfg_combine, conditional_logprobs, draw_tokens, seed_keys, step_keys
from policy.tokenizer import SpecialIds
from rollout.config import ImageSamplingConfig
from rollout.fused_sampling import fused_next_tokens


@dataclass
class ImageSample:
    """Sampled image tokens of B requests (CPU tensors), and on request their log-probabilities."""

    tokens: torch.Tensor  # LongTensor [B, N]
    logprobs: Optional[torch.Tensor] = None  # [B, N] under the distribution sampled from (CFG, temperature, filters)
    cond_logprobs: Optional[torch.Tensor] = None  # [B, N] log_softmax of the conditional row alone (T2I-R1's loss)


# --------------------------------------------------------------------------------------------------- weights


@dataclass
class LayerWeights:
    input_norm: torch.Tensor
    q: torch.Tensor
    q_bias: Optional[torch.Tensor]
    k: torch.Tensor
    k_bias: Optional[torch.Tensor]
    v: torch.Tensor
    v_bias: Optional[torch.Tensor]
    o: torch.Tensor
    o_bias: Optional[torch.Tensor]
    post_norm: torch.Tensor
    gate: torch.Tensor
    gate_bias: Optional[torch.Tensor]
    up: torch.Tensor
    up_bias: Optional[torch.Tensor]
    down: torch.Tensor
    down_bias: Optional[torch.Tensor]


@dataclass
class DecoderWeights:
    """References (not copies) to the tensors of Janus's LLaMA backbone and generation head."""

    layers: list[LayerWeights]
    final_norm: torch.Tensor
    eps: float
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    mlp_act: torch.nn.Module
    head_proj: torch.Tensor
    head_proj_bias: Optional[torch.Tensor]
    head_act: torch.nn.Module
    head_out: torch.Tensor
    head_out_bias: Optional[torch.Tensor]

    @classmethod
    def read(cls, model) -> DecoderWeights:
        lm = model.model.language_model
        layers = []
        for layer in lm.layers:
            a, m = layer.self_attn, layer.mlp
            layers.append(
                LayerWeights(
                    input_norm=layer.input_layernorm.weight,
                    q=a.q_proj.weight,
                    q_bias=a.q_proj.bias,
                    k=a.k_proj.weight,
                    k_bias=a.k_proj.bias,
                    v=a.v_proj.weight,
                    v_bias=a.v_proj.bias,
                    o=a.o_proj.weight,
                    o_bias=a.o_proj.bias,
                    post_norm=layer.post_attention_layernorm.weight,
                    gate=m.gate_proj.weight,
                    gate_bias=m.gate_proj.bias,
                    up=m.up_proj.weight,
                    up_bias=m.up_proj.bias,
                    down=m.down_proj.weight,
                    down_bias=m.down_proj.bias,
                )
            )
        attn = lm.layers[0].self_attn
        head = model.model.generation_head
        return cls(
            layers=layers,
            final_norm=lm.norm.weight,
            eps=float(lm.norm.variance_epsilon),
            heads=attn.config.num_attention_heads,
            kv_heads=attn.config.num_key_value_heads,
            head_dim=attn.head_dim,
            scaling=float(attn.scaling),
            mlp_act=lm.layers[0].mlp.act_fn,
            head_proj=head.proj_out.weight,
            head_proj_bias=head.proj_out.bias,
            head_act=head.activation_fn,
            head_out=head.vision_head.weight,
            head_out_bias=head.vision_head.bias,
        )


class StaticKVCache:
    """Per-layer key/value buffers ``[rows, kv_heads, capacity, head_dim]``, written in place."""

    def __init__(self, k: list[torch.Tensor], v: list[torch.Tensor]):
        self.k, self.v = k, v

    @classmethod
    def allocate(
        cls, layers: int, rows: int, kv_heads: int, capacity: int, head_dim: int, dtype, device
    ) -> StaticKVCache:
        # zeros, not empty: masked slots still enter attention as 0-weighted values, and 0 * NaN would be NaN
        shape = (rows, kv_heads, capacity, head_dim)
        return cls(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
        )

    @property
    def rows(self) -> int:
        return self.k[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.k, *self.v))

    def first_rows(self, rows: int) -> StaticKVCache:
        """Views of the first ``rows`` rows (rows are the outer dimension: each view is contiguous, at the
        buffer's own address)."""
        return StaticKVCache([k[:rows] for k in self.k], [v[:rows] for v in self.v])


def kv_cache_bytes(layers: int, rows: int, kv_heads: int, capacity: int, head_dim: int, element_size: int) -> int:
    """Bytes of a static KV cache: keys and values of every layer. At Janus-Pro-7B's shapes (30 layers, 32 KV
    heads of 128, bf16) 16 images (32 CFG rows) with a 1024-token CoT (capacity 1792: prompt + CoT + 576 image
    tokens, rounded) take 2 * 30 * 32 * 32 * 1792 * 128 * 2 bytes = 26.25 GiB; at Janus-Pro-1B's (24 layers,
    16 heads) 10.5 GiB."""
    return 2 * layers * rows * kv_heads * capacity * head_dim * element_size


# --------------------------------------------------------------------------------------------------- the step


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LLaMA's RMSNorm: normalised in float32, cast back, then scaled (transformers' order of operations)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)  # one fused kernel, same arithmetic in float32
    return weight * F.rms_norm(x.float(), weight.shape, eps=eps).to(x.dtype)


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """``sin`` with its first half negated: with it, LLaMA's ``rotate_half(x) * sin`` is ``roll(x, d/2) * signed``
    (exact: only signs change), one op instead of four."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in LLaMA's half-split layout; x ``[R, H, T, d]``, cos/sin_signed ``[R, 1, T, d]``."""
    return torch.addcmul(x * cos, torch.roll(x, x.shape[-1] // 2, dims=-1), sin_signed)


def decoder_forward(
    w: DecoderWeights,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin_signed: torch.Tensor,
    cache_k: Sequence[torch.Tensor],
    cache_v: Sequence[torch.Tensor],
    write_at: torch.Tensor,
    visible: Optional[torch.Tensor],
) -> torch.Tensor:
    """T new positions of every row through the LLaMA layers and the final norm.

    x ``[R, T, D]`` input embeddings; cos/sin_signed ``[R, 1, T, d]`` (see :func:`signed_sin`);
    ``cache_k/v[l]`` ``[R, KVH, S, d]`` (views of the static cache: on CPU the filled prefix, under a CUDA graph
    the whole buffer); ``write_at`` ``[T]`` the cache slots the new keys/values go to; ``visible``
    ``[R, 1, T, S]`` boolean attention mask (True = attend; in CPU SDPA a boolean mask costs half of an additive
    float one), or None when every slot is visible. Returns hidden states ``[R, T, D]``.
    """
    rows, t, _ = x.shape
    gqa = w.heads != w.kv_heads
    for lw, ck, cv in zip(w.layers, cache_k, cache_v):
        h = rms_norm(x, lw.input_norm, w.eps)
        q = F.linear(h, lw.q, lw.q_bias).view(rows, t, w.heads, w.head_dim).transpose(1, 2)
        k = F.linear(h, lw.k, lw.k_bias).view(rows, t, w.kv_heads, w.head_dim).transpose(1, 2)
        v = F.linear(h, lw.v, lw.v_bias).view(rows, t, w.kv_heads, w.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin_signed)
        ck.index_copy_(2, write_at, apply_rope(k, cos, sin_signed))
        cv.index_copy_(2, write_at, v)
        a = F.scaled_dot_product_attention(q, ck, cv, attn_mask=visible, scale=w.scaling, enable_gqa=gqa)
        x = x + F.linear(a.transpose(1, 2).reshape(rows, t, -1), lw.o, lw.o_bias)
        h = rms_norm(x, lw.post_norm, w.eps)
        gated = w.mlp_act(F.linear(h, lw.gate, lw.gate_bias)) * F.linear(h, lw.up, lw.up_bias)
        x = x + F.linear(gated, lw.down, lw.down_bias)
    return rms_norm(x, w.final_norm, w.eps)


def guided_and_cond_logits(
    w: DecoderWeights, hidden: torch.Tensor, cfg_weight: float, with_cond: bool
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Generation-head logits (float32) from last hidden states ``[2B, D]`` (cond rows, then uncond rows).

    CFG is combined before the head's final linear map (exact, see the module docstring); the conditional
    logits are computed only when asked for (the same matmul, on 2B rows instead of B).
    """
    g = w.head_act(F.linear(hidden, w.head_proj, w.head_proj_bias))
    b = g.shape[0] // 2
    guided = cfg_combine(g[:b].float(), g[b:].float(), cfg_weight).to(g.dtype)
    if not with_cond:
        return _codebook_logits(w, guided), None
    logits = _codebook_logits(w, torch.cat([guided, g[:b]]))
    return logits[:b], logits[b:]


def _codebook_logits(w: DecoderWeights, g: torch.Tensor) -> torch.Tensor:
    """``g @ W.T + b`` for the head's widest matmul (hidden -> 16,384 codes), computed as ``(W @ g.T).T``: with a
    handful of rows, MKL then streams the 16k-row weight once, about 40% faster on CPU than ``F.linear``.
    Returns a float32 (transposed) view ``[rows, V]``."""
    out = torch.mm(w.head_out, g.t())
    if w.head_out_bias is not None:
        out += w.head_out_bias[:, None]
    return out.float().t()


def next_tokens(
    w: DecoderWeights,
    hidden: torch.Tensor,
    params: SamplingParams,
    step_key: torch.Tensor,
    greedy: bool,
    with_logprobs: bool,
    fused: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """One image token per request from last hidden states ``[2B, D]``: ``(tokens [B], logprobs [B] | None,
    cond_logprobs [B] | None)``. Sampling uses the requests' counter-based noise of this step. ``fused``: draw
    with rollout/fused_sampling.py (its Triton kernel on CUDA; the same torch functions elsewhere)."""
    guided, cond = guided_and_cond_logits(w, hidden, params.cfg_weight, with_logprobs)
    if fused:
        tokens, lp = fused_next_tokens(guided, None, params, step_key, greedy=greedy, with_logprobs=with_logprobs)
    else:
        tokens, lp = draw_tokens(guided, params, step_key, greedy, with_logprobs)
    if not with_logprobs:
        return tokens, None, None
    return tokens, lp, conditional_logprobs(cond).gather(-1, tokens[:, None])[:, 0]


# --------------------------------------------------------------------------------------------------- sampler


class ReplayDecoder(Protocol):
    """Decodes all image tokens after the prefill (rollout.cuda_graph_sampler.GraphDecoder)."""

    def decode(
        self,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        image_cos: torch.Tensor,
        image_sin: torch.Tensor,
        real: torch.Tensor,
        first_slot: int,
    ) -> ImageSample: ...


class ReplayDecoders(Protocol):
    """A ReplayDecoder per batch shape and sampling setting (rollout.cuda_graph_sampler.GraphDecoders)."""

    def get(
        self,
        model,
        w: DecoderWeights,
        cache: StaticKVCache,
        b: int,
        n: int,
        params: SamplingParams,
        greedy: bool,
        with_logprobs: bool,
    ) -> ReplayDecoder: ...

    def clear(self) -> None:
        """Drop every decoder (and its captured graph), e.g. before the cache they read is freed."""


class ImageSampler:
    """Draws Janus image tokens for a batch of image prompts (each ending in ``<begin_of_image>``)."""

    CACHE_ROUND = 256  # cache capacity grows in these steps, so prompts of similar length share one buffer

    def __init__(self, model, ids: SpecialIds, graphs: Optional[ReplayDecoders] = None):
        """``graphs``: decode by replaying captured decode steps (rollout.cuda_graph_sampler.GraphDecoders; built
        by rollout.factories.build_image_sampler) instead of the eager loop."""
        self.model = model
        self.ids = ids
        self.num_tokens = int(model.config.vision_config.num_image_tokens)
        self.max_positions = int(model.config.text_config.max_position_embeddings)
        # One static KV cache for every call: chunks use views of its first rows. It only grows (to the most rows
        # and positions a chunk has needed: at most 2 * max_batch rows and the model's positions), so its size is
        # bounded by kv_cache_bytes at those, and a re-allocation frees the old buffer first.
        self._kv: Optional[StaticKVCache] = None
        self._graphs = graphs

    # ------------------------------------------------------------------------------------------- public

    def sample(
        self,
        prompts: list[list[int]],
        params: ImageSamplingConfig,
        seeds: list[int],
        *,
        greedy: bool = False,
        return_logprobs: bool = False,
    ) -> ImageSample:
        """Image tokens ``[B, N]`` for ``prompts`` (token ids, BOS first, ``<begin_of_image>`` last).

        ``seeds[i]`` alone determines request i's draw (whatever else is in the batch). ``greedy``: argmax of
        the CFG logits (temperature and filters do not apply; ``logprobs`` are still those of the sampling
        distribution ``params`` describes). Requests run in chunks of ``params.max_batch``.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
        for i, p in enumerate(prompts):
            if len(p) == 0 or p[-1] != self.ids.boi:
                raise ValueError(
                    f"prompt {i} must end with <begin_of_image> (id {self.ids.boi}); got "
                    f"{'an empty prompt' if not p else f'last id {p[-1]}'}. Build it with the image prompt builder."
                )
            if len(p) + self.num_tokens > self.max_positions:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens; with {self.num_tokens} image tokens that exceeds the model's "
                    f"{self.max_positions} positions. Shorten the CoT (rollout.prompt / rollout.cot.max_new_tokens)."
                )
        chunk = params.max_batch
        parts = [
            self._sample_chunk(prompts[i : i + chunk], params, seeds[i : i + chunk], greedy, return_logprobs)
            for i in range(0, len(prompts), chunk)
        ]
        if not parts:
            empty = torch.zeros((0, self.num_tokens))
            return ImageSample(empty.long(), empty if return_logprobs else None, empty if return_logprobs else None)
        return ImageSample(
            tokens=torch.cat([p.tokens for p in parts]),
            logprobs=torch.cat([p.logprobs for p in parts]) if return_logprobs else None,
            cond_logprobs=torch.cat([p.cond_logprobs for p in parts]) if return_logprobs else None,
        )

    # ------------------------------------------------------------------------------------------- internals

    @property
    def kv_cache(self) -> Optional[StaticKVCache]:
        """The static KV cache (None before the first call)."""
        return self._kv

    def _cache(self, w: DecoderWeights, rows: int, needed: int, dtype, device) -> StaticKVCache:
        """The first ``rows`` rows of the one KV cache, with room for ``needed`` positions; a cache that is too small
        (or of another dtype or device) is replaced by one that also covers what the old one did."""
        kv = self._kv
        same_kind = kv is not None and kv.k[0].dtype == dtype and kv.k[0].device == torch.device(device)
        if not (same_kind and kv.rows >= rows and kv.capacity >= needed):
            new_rows, capacity = (max(rows, kv.rows), max(needed, kv.capacity)) if same_kind else (rows, needed)
            capacity = -(-capacity // self.CACHE_ROUND) * self.CACHE_ROUND
            # Free the old buffers before allocating: first the decoders whose graphs read them, then the cache.
            if self._graphs is not None:
                self._graphs.clear()
            self._kv = kv = None
            self._kv = kv = StaticKVCache.allocate(
                len(w.layers), new_rows, w.kv_heads, capacity, w.head_dim, dtype, device
            )
        return kv.first_rows(rows)

    def _prompt_batch(self, prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[2B, P]`` ids (cond rows, then uncond rows) and the pad count of each of the B prompts.

        The unconditional row is the same sequence with every position except BOS and <begin_of_image> replaced
        by the pad token (T2I-R1, transformers' image mode).
        """
        longest = max(len(p) for p in prompts)
        pads = torch.tensor([longest - len(p) for p in prompts], device=device)
        cond = torch.full((len(prompts), longest), self.ids.pad, dtype=torch.long)
        for i, p in enumerate(prompts):
            cond[i, longest - len(p) :] = torch.tensor(p, dtype=torch.long)
        keep = (cond == self.ids.bos) | (cond == self.ids.boi)
        uncond = torch.where(keep, cond, torch.full_like(cond, self.ids.pad))
        return torch.cat([cond, uncond]).to(device), pads

    @torch.inference_mode()
    def _sample_chunk(self, prompts, params, seeds, greedy: bool, with_logprobs: bool) -> ImageSample:
        model = self.model
        w = DecoderWeights.read(model)
        device, dtype = w.final_norm.device, w.final_norm.dtype
        b, n = len(prompts), self.num_tokens
        rows = 2 * b
        ids, pads = self._prompt_batch(prompts, device)
        plen = ids.shape[1]
        row_pads = torch.cat([pads, pads])
        cache = self._cache(w, rows, plen + n, dtype, device)

        # Positions count from each row's first real token; pad slots get 0 (they are masked out anyway).
        slots = torch.arange(cache.capacity, device=device)
        prompt_pos = (slots[None, :plen] - row_pads[:, None]).clamp(min=0)  # [R, P]
        image_pos = (plen - row_pads)[:, None] + torch.arange(n, device=device)[None, :]  # [R, N]
        lm = model.model.language_model
        cos_table, sin_table = lm.rotary_emb(torch.empty(0, dtype=dtype, device=device), slots[None, :])  # [1, S, d]
        cos_table, sin_table = cos_table[0], signed_sin(sin_table[0])

        # A key slot is visible if it holds a real token; a pad query sees only itself (its output is unused,
        # but a fully masked row would give NaN).
        real = slots[None, :] >= row_pads[:, None]  # [R, S]
        q_idx = torch.arange(plen, device=device)
        prefill_visible = (slots[None, None, :plen] <= q_idx[None, :, None]) & real[:, None, :plen]
        prefill_visible |= slots[None, None, :plen] == q_idx[None, :, None]
        prefill_visible = prefill_visible[:, None]  # [R, 1, P, P]
        # Image tokens see every real slot before them; without padding that is all of them, and no mask at all
        # saves a fifth of CPU attention time.
        decode_visible = real[:, None, None, :] if bool(pads.any()) else None  # [R, 1, 1, S]

        steps = torch.arange(n, dtype=torch.int32, device=device)
        keys = step_keys(seed_keys(seeds, device)[None, :], steps[:, None])  # [N, B]: every request's step keys
        tokens = torch.empty((b, n), dtype=torch.long, device=device)
        logprobs = torch.empty((b, n), dtype=torch.float32, device=device) if with_logprobs else None
        cond_logprobs = torch.empty((b, n), dtype=torch.float32, device=device) if with_logprobs else None

        x = model.get_input_embeddings()(ids)
        hidden = decoder_forward(
            w,
            x,
            cos_table[prompt_pos][:, None],
            sin_table[prompt_pos][:, None],
            [k[:, :, :plen] for k in cache.k],
            [v[:, :, :plen] for v in cache.v],
            q_idx,
            prefill_visible,
        )[:, -1]
        image_cos, image_sin = cos_table[image_pos][:, None], sin_table[image_pos][:, None]  # [R, 1, N, d]
        if self._graphs is not None:
            decoder = self._graphs.get(model, w, cache, b, n, params, greedy, with_logprobs)
            return decoder.decode(hidden, keys, image_cos, image_sin, real, plen)
        for i in range(n):
            nxt, lp, clp = next_tokens(w, hidden, params, keys[i], greedy, with_logprobs)
            tokens[:, i] = nxt
            if with_logprobs:
                logprobs[:, i], cond_logprobs[:, i] = lp, clp
            if i == n - 1:
                break
            e = model.prepare_embeddings_for_image_generation(nxt)  # gen_aligner(gen_embed(code)), [B, D]
            kv = plen + i + 1
            hidden = decoder_forward(
                w,
                torch.cat([e, e])[:, None],
                image_cos[:, :, i : i + 1],
                image_sin[:, :, i : i + 1],
                [k[:, :, :kv] for k in cache.k],
                [v[:, :, :kv] for v in cache.v],
                slots[kv - 1 : kv],
                None if decode_visible is None else decode_visible[..., :kv],
            )[:, 0]
        return ImageSample(
            tokens=tokens.cpu(),
            logprobs=logprobs.cpu() if with_logprobs else None,
            cond_logprobs=cond_logprobs.cpu() if with_logprobs else None,
        )
