"""The BiCoT-GRPO objective over the concatenated semantic-CoT and image tokens of a micro-batch.

Per token (both levels, a sample's advantage ``A`` shared by all its tokens):

    ratio = exp(logp - logp_behaviour)
    pg    = max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high))     (the clipped surrogate, negated)
    kl    = exp(ref - logp) - (ref - logp) - 1                                 (k3 estimator, >= 0)
    l     = weight_level * (pg + beta * kl)

The ratio is taken against the behaviour log-probs (those the rollout sampled with), so several updates per
batch and off-policy rollouts are corrected; with one on-policy update the ratio is 1 and this is T2I-R1's
``-(A - beta * kl)`` (whose gradient is ``-(A * grad logp - beta * grad kl)``).

Aggregation: ``token_mean`` (T2I-R1) divides the sum over all real tokens of both levels in the micro-batch by
their count, so the image tokens dominate; ``seq_mean`` averages each sample's concatenated sequence first,
then the samples (GRPO's 1/G sum_i 1/|o_i| sum_t). ``levels`` selects which levels count (the paper's ablation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import torch

from learner.batch import LEVELS
from learner.config import Aggregation, Levels, LossConfig


@dataclass
class LevelTerms:
    """One level of a micro-batch, all ``[B, T]`` (values off the mask are ignored)."""

    logp: torch.Tensor  # current policy, with gradients
    old_logp: torch.Tensor  # behaviour policy
    mask: torch.Tensor  # bool, real tokens
    ref_logp: Optional[torch.Tensor] = None  # frozen reference (needed when beta > 0)


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
        ratio = torch.exp(t.logp - t.old_logp.to(dtype))
        unclipped = -adv * ratio
        clipped = -adv * torch.clamp(ratio, 1.0 - cfg.clip_low, 1.0 + cfg.clip_high)
        per_token = torch.maximum(unclipped, clipped)
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
