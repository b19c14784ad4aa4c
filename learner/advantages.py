"""Group-relative advantages: each sample's reward compared with the other samples of its prompt's group.

Modes (learner.config.AdvantageConfig.mode):
- ``zscore`` (T2I-R1): ``(r - mean) / (std + eps)`` with the unbiased (n - 1) standard deviation;
- ``center``: ``r - mean`` (no division by the spread);
- ``leave_one_out``: ``r_i - mean_{j != i} r_j`` (RLOO's baseline), which equals ``n / (n - 1) * (r_i - mean)``.

A group whose rewards are all equal carries no signal: its advantages are exactly 0 (not a rounding residue of
``r - mean``, and never NaN). So is a group of one sample, which has nothing to be compared with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from learner.config import AdvantageConfig, AdvantageMode


def group_advantages(rewards: Sequence[float], cfg: AdvantageConfig) -> np.ndarray:
    """Advantages of one group's rewards (float64, same order)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards of one group must be a flat sequence, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"non-finite reward in group {r.tolist()}; the reward ensemble must return finite scores")
    n = r.size
    if n < 2 or np.all(r == r[0]):
        return np.zeros(n)
    centred = r - r.mean()
    if cfg.mode == AdvantageMode.zscore:
        return centred / (r.std(ddof=1) + cfg.eps)
    if cfg.mode == AdvantageMode.center:
        return centred
    if cfg.mode == AdvantageMode.leave_one_out:
        return centred * (n / (n - 1))
    raise ValueError(f"learner.advantage.mode must be zscore, center or leave_one_out, got {cfg.mode!r}")


def batch_advantages(groups: Sequence[Sequence[float]], cfg: AdvantageConfig) -> list[np.ndarray]:
    """Advantages for every group (groups may differ in size)."""
    return [group_advantages(g, cfg) for g in groups]
