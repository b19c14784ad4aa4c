"""The BiCoT-GRPO objective over the concatenated semantic-CoT and image tokens of a micro-batch.

Three policies enter, per token (both levels, a sample's advantage ``A`` shared by all its tokens):

- ``logp``: the policy being updated (with gradients);
- ``old`` (the proximal policy): the learner's own log-probs of the batch before its first update. With one update
  per batch they are the detached ``logp`` of the very forward that computes the loss, so the ratio is exactly 1;
  with several, one no-grad forward before the first update (learner/engine.py);
- ``behaviour``: the log-probs the rollout engines recorded while sampling (vLLM / the transformers text engine for
  the CoT, our sampler for the image tokens), possibly by an older version (off-policy) and always by other kernels.

    ratio = exp(logp - old)
    w     = min(exp(old - behaviour), C)     (truncated importance weight, detached; 1 where none was recorded)
    pg    = w * max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))
    kl    = exp(ref - logp) - (ref - logp) - 1                                 (k3 estimator, >= 0)
    l     = weight_level * (pg + beta * kl)

This is decoupled PPO (AReaL; verl's truncated importance sampling): the clip trusts a region around the learner's
own policy, and ``w`` corrects for having sampled from ``behaviour``, both the engines' numerical mismatch (sync
mode) and the one-version lag (off-policy mode), with one mechanism. ``w`` multiplies the clipped surrogate token by
token as a constant (no gradient flows through it), and not the KL term, which is an expectation under the current
policy taken on the same tokens. ``C`` is ``loss.is_cap``; ``loss.is_correction=false`` sets ``w = 1``.

With one update per batch the ratio is 1 and ``pg = -w * A * ratio``, whose gradient is ``-w * A * grad logp``:
T2I-R1's objective ``-(A - beta * kl)`` (gradient ``-(A * grad logp - beta * grad kl)``) when the engines agree
with the learner (``w = 1``), importance-weighted where they do not.

Aggregation: ``token_mean`` (T2I-R1) divides the sum over all real tokens of both levels in the micro-batch by
their count, so the image tokens dominate; ``seq_mean`` averages each sample's concatenated sequence first,
then the samples (GRPO's 1/G sum_i 1/|o_i| sum_t). ``levels`` selects which levels count (the paper's ablation).

Statistics per level (means over the level's real tokens unless said): ``ratio_mean``, ``clip_frac`` (tokens whose
clipped branch won), ``logp_gap_mean`` / ``logp_gap_max`` (``|old - behaviour|`` over tokens with behaviour
log-probs), ``is_weight_mean`` (of ``w`` as applied, 1 on tokens without behaviour log-probs), ``is_truncated_frac``
(tokens whose ``exp(old - behaviour)`` exceeded ``C``), ``no_behaviour_frac`` (samples of the micro-batch with
tokens at this level but no behaviour log-probs), ``logp_mean``, ``kl`` and ``tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from learner.batch import LEVELS
from learner.config import Aggregation, Levels, LossConfig


@dataclass
class LevelTerms:
    """One level of a micro-batch, all ``[B, T]`` (values off the mask are ignored)."""

    logp: torch.Tensor  # current policy, with gradients
    old_logp: torch.Tensor  # proximal policy: the learner's own log-probs before the batch's first update
    mask: torch.Tensor  # bool, real tokens
    ref_logp: Optional[torch.Tensor] = None  # frozen reference (needed when beta > 0)
    # the rollout engines' log-probs; NaN on the rows of samples that have none (None: no row has any)
    behaviour_logp: Optional[torch.Tensor] = None


def active_levels(cfg: LossConfig) -> tuple[str, ...]:
    """The levels whose tokens enter the loss (the others need no forward at all)."""
    if cfg.levels == Levels.both:
        return tuple(l for l in LEVELS if level_weight(cfg, l) > 0)
    return (str(cfg.levels),)


def level_weight(cfg: LossConfig, level: str) -> float:
    return cfg.semantic_weight if level == "semantic" else cfg.token_weight


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 estimator of KL(policy || reference) per token: exp(r) - r - 1 with r = ref - logp."""
    r = ref_logp - logp
    return torch.exp(r) - r - 1


def truncated_is_weight(old_logp: torch.Tensor, behaviour_logp: Optional[torch.Tensor], cap: float) -> torch.Tensor:
    """``min(exp(old - behaviour), cap)`` per token, 1 where ``behaviour`` is NaN (not recorded); detached."""
    old_logp = old_logp.detach()
    if behaviour_logp is None:
        return torch.ones_like(old_logp)
    behaviour = behaviour_logp.to(old_logp.dtype)
    weight = torch.exp(old_logp - behaviour).clamp(max=cap)
    return torch.where(torch.isnan(behaviour), torch.ones_like(weight), weight)


def grpo_loss(
    levels: Mapping[str, LevelTerms], advantages: torch.Tensor, cfg: LossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The micro-batch loss (a scalar to minimise) and its statistics.

    ``levels`` must hold every level of :func:`active_levels`; ``advantages`` is ``[B]``.
    """
    names = active_levels(cfg)
    missing = [n for n in names if n not in levels]
    if missing:
        raise ValueError(f"grpo_loss: levels {missing} are active (loss.levels={cfg.levels!r}) but were not given")
    if cfg.beta > 0 and any(levels[n].ref_logp is None for n in names):
        raise ValueError("grpo_loss: loss.beta > 0 needs reference log-probs for every active level")

    dtype = levels[names[0]].logp.dtype
    adv = advantages.to(dtype)[:, None]
    total = None  # weighted per-token loss summed per sample, [B]
    count = None  # real tokens per sample, [B]
    stats: dict[str, float] = {}
    for name in names:
        t = levels[name]
        mask = t.mask.to(dtype)
        old = t.old_logp.detach().to(dtype)
        ratio = torch.exp(t.logp - old)
        unclipped = -adv * ratio
        clipped = -adv * torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
        raw_weight = truncated_is_weight(old, t.behaviour_logp, float("inf"))
        weight = raw_weight.clamp(max=cfg.is_cap) if cfg.is_correction else torch.ones_like(raw_weight)
        per_token = weight * torch.maximum(unclipped, clipped)
        if cfg.beta > 0:
            kl = k3_kl(t.logp, t.ref_logp.to(dtype))
            per_token = per_token + cfg.beta * kl
        per_sample = level_weight(cfg, name) * (per_token * mask).sum(dim=1)
        total = per_sample if total is None else total + per_sample
        n = mask.sum(dim=1)
        count = n if count is None else count + n

        with torch.no_grad():
            tokens = max(float(mask.sum()), 1.0)
            stats[f"{name}/tokens"] = float(mask.sum())
            stats[f"{name}/ratio_mean"] = float((ratio * mask).sum()) / tokens
            stats[f"{name}/clip_frac"] = float(((clipped > unclipped).float() * mask).sum()) / tokens
            stats[f"{name}/logp_mean"] = float((t.logp * mask).sum()) / tokens
            stats.update(_behaviour_stats(name, old, t.behaviour_logp, t.mask, raw_weight, weight, cfg.is_cap))
            if cfg.beta > 0:
                stats[f"{name}/kl"] = float((kl * mask).sum()) / tokens

    if cfg.aggregation == Aggregation.token_mean:
        loss = total.sum() / count.sum().clamp(min=1.0)
    elif cfg.aggregation == Aggregation.seq_mean:
        has_tokens = count > 0
        per_seq = total[has_tokens] / count[has_tokens]
        # a micro-batch without any token still yields a (zero) loss attached to the graph
        loss = per_seq.mean() if per_seq.numel() else total.sum() * 0.0
    else:
        raise ValueError(f"loss.aggregation must be token_mean or seq_mean, got {cfg.aggregation!r}")
    stats["loss"] = float(loss.detach())
    return loss, stats


def _behaviour_stats(
    name: str,
    old: torch.Tensor,
    behaviour: Optional[torch.Tensor],
    mask: torch.Tensor,
    raw_weight: torch.Tensor,
    weight: torch.Tensor,
    cap: float,
) -> dict[str, float]:
    """How far the rollout engines' log-probs are from the learner's, and what the importance weights did."""
    real = mask.bool()
    tokens = max(int(real.sum()), 1)
    if behaviour is None:
        recorded, gap = torch.zeros_like(real), old.new_zeros(0)
    else:
        recorded = real & ~torch.isnan(behaviour)
        gap = (old - behaviour.to(old.dtype)).abs()[recorded]
    without = real.any(dim=1) & ~recorded.any(dim=1)  # samples with tokens at this level but no behaviour log-probs
    return {
        f"{name}/logp_gap_mean": float(gap.mean()) if gap.numel() else 0.0,
        f"{name}/logp_gap_max": float(gap.max()) if gap.numel() else 0.0,
        f"{name}/is_weight_mean": float(weight[real].sum()) / tokens,
        f"{name}/is_truncated_frac": float((raw_weight[recorded] > cap).sum()) / tokens,
        f"{name}/no_behaviour_frac": float(without.sum()) / max(real.shape[0], 1),
    }


def combine_stats(parts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The statistics of several micro-batches (or ranks) as one: ``*_max`` keys by their maximum, the others by
    their mean."""
    out = {}
    for k in parts[0]:
        values = [p[k] for p in parts]
        out[k] = max(values) if k.endswith("_max") else sum(values) / len(values)
    return out
