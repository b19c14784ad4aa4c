"""Many scorers' rewards -> one reward per sample.

Modes (``rewards.ensemble``):
* ``sum``: plain sum over scorers (T2I-R1 sums HPS, GroundingDINO, GIT and ORM);
* ``mean``: the sum divided by the number of scorers;
* ``weighted``: ``sum_s w_s * r_s`` with ``w_s = rewards.<s>.weight`` (not renormalised).

With ``rewards.standardize`` each scorer is first z-scored over the batch, ``(r - mean) / std`` (population
std, over every sample of the step), so a scorer with a small spread (HPS: about 0.2 to 0.35) counts as much as
one with a large spread; a scorer that gives every sample the same value becomes all zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

import numpy as np

from rewards.config import Ensemble, RewardsConfig


def standardize(values: np.ndarray) -> np.ndarray:
    centred = values - values.mean()
    std = values.std()
    return centred / std if std > 1e-12 else centred


def combine(
    per_scorer: Mapping[str, Sequence[float]],
    mode: Ensemble = Ensemble.sum,
    weights: Optional[Mapping[str, float]] = None,
    standardize_each: bool = False,
) -> np.ndarray:
    """One reward per sample from ``{scorer: one score per sample}`` (all of the same length, all finite)."""
    if mode not in tuple(Ensemble):
        raise ValueError(f"unknown ensemble mode {mode!r}; expected one of {', '.join(Ensemble)}")
    if not per_scorer:
        raise ValueError("no scorer results to combine")
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in per_scorer.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len({a.shape for a in arrays.values()}) != 1:
        shapes = {name: a.shape for name, a in arrays.items()}
        raise ValueError(f"every scorer needs one score per sample (1-D arrays of one length); got {shapes}")
    bad = [name for name, a in arrays.items() if not np.isfinite(a).all()]
    if bad:
        raise ValueError(f"non-finite scores from {', '.join(bad)}: refusing to combine them")
    if standardize_each:
        arrays = {name: standardize(a) for name, a in arrays.items()}
    if mode == Ensemble.weighted:
        if weights is None or set(arrays) - set(weights):
            missing = sorted(set(arrays) - set(weights or {}))
            raise ValueError(f"ensemble 'weighted' needs a weight for every scorer; missing {missing}")
        return sum(weights[name] * a for name, a in arrays.items())
    total = sum(arrays.values())
    return total / len(arrays) if mode == Ensemble.mean else total


def combine_for(per_scorer: Mapping[str, Sequence[float]], cfg: RewardsConfig) -> np.ndarray:
    """:func:`combine` with the mode, weights and standardisation of the rewards config."""
    weights = {name: getattr(cfg, name).weight for name in per_scorer}
    return combine(per_scorer, cfg.ensemble, weights, cfg.standardize)
