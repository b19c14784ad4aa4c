"""Build a scorer by name from the rewards config. The one place that maps config sections to scorer classes.

Imports are lazy: a reward server hosting the colour rule never imports transformers' detection models.
"""

from __future__ import annotations

from typing import Callable

from rewards.base import Scorer
from rewards.config import SCORER_NAMES, RewardsConfig


def _hps(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.hps import HPSScorer
    return HPSScorer.from_config(cfg.hps)


def _gdino(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.gdino import GdinoScorer
    return GdinoScorer.from_config(cfg.gdino, t2i_r1_compat=cfg.t2i_r1_compat)


def _git(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.git import GitVQAScorer
    return GitVQAScorer.from_config(cfg.git)


def _orm(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.orm import ORMScorer
    return ORMScorer.from_config(cfg.orm)


def _clip(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.clip import CLIPScorer
    return CLIPScorer.from_config(cfg.clip)


def _color(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.color import ColorScorer
    return ColorScorer(radius=cfg.color.radius, scale=cfg.color.scale)


def _objects(cfg: RewardsConfig) -> Scorer:
    from rewards.scorers.objects import ObjectPresenceScorer
    return ObjectPresenceScorer.from_config(cfg.objects)


BUILDERS: dict[str, Callable[[RewardsConfig], Scorer]] = {
    "hps": _hps, "gdino": _gdino, "git": _git, "orm": _orm, "clip": _clip, "color": _color, "objects": _objects,
}


def build_scorer(name: str, cfg: RewardsConfig) -> Scorer:
    """The scorer for ``cfg.<name>`` (loaded from its local weights directory where it has one).

    Raises ValueError for an unknown name, rewards.scorers.common.ModelDirError when the weights directory is
    missing or incomplete.
    """
    if name not in BUILDERS:
        raise ValueError(f"unknown scorer {name!r}; known scorers: {', '.join(SCORER_NAMES)}")
    return BUILDERS[name](cfg)
