"""The ``rewards.*`` config section: one sub-section per scorer (its weights, replicas and resources), how the
scores are combined, and the client's deadlines."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

from core.config import require


class Ensemble(StrEnum):
    """How the scorers' rewards of a sample are combined."""

    sum = "sum"  # T2I-R1
    mean = "mean"
    weighted = "weighted"  # by rewards.<name>.weight


class Transport(StrEnum):
    """How images travel to the reward servers."""

    raw = "raw"  # uint8 pixels: no PNG coding, the fast choice on one machine or a LAN
    png = "png"  # lossless PNG: several times fewer bytes, tens of ms of CPU per 384-px image (slow networks)


@dataclass
class ScorerConfig:
    """One reward model behind its own gRPC servers."""

    enabled: bool = False
    path: Optional[str] = None  # local weights directory (never a hub id)
    replicas: int = 1
    num_cpus: float = 0.25
    num_gpus: float = 0.0
    weight: float = 1.0  # used by ensemble=weighted
    batch_size: int = 8  # images per model forward inside one group

    def validate(self) -> None:
        require(self.replicas >= 1, "replicas", "must be >= 1")
        require(self.num_cpus >= 0, "num_cpus", "must be >= 0")
        require(self.num_gpus >= 0, "num_gpus", "must be >= 0")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")


@dataclass
class ColorScorerConfig(ScorerConfig):
    """The embedded colour rule (rewards/scorers/color.py)."""

    radius: float = 20.0  # CIELAB Delta E around a colour's prototype that counts as fully that colour
    scale: float = 30.0  # Delta E beyond the radius at which a pixel counts as half-close

    def validate(self) -> None:
        super().validate()
        require(self.radius >= 0, "radius", "must be >= 0 (Delta E units)")
        require(self.scale > 0, "scale", "must be > 0 (Delta E units)")


@dataclass
class GdinoScorerConfig(ScorerConfig):
    """GroundingDINO rules (rewards/detection_rules.py); defaults are T2I-R1's."""

    box_threshold: float = 0.3  # a box counts for a noun when its phrase score is above this
    nms_iou: float = 0.5  # numeracy: boxes of one noun are counted after NMS at this IoU
    spatial_iou: float = 0.1  # left/right/above/below: full credit below this IoU, iou_threshold / IoU above
    near_distance: float = 0.3  # near / next to / on side of: centre distance, as a fraction of the image side

    def validate(self) -> None:
        super().validate()
        require(0 <= self.box_threshold < 1, "box_threshold", "must be in [0, 1)")
        require(0 < self.nms_iou <= 1, "nms_iou", "must be in (0, 1]")
        require(0 < self.spatial_iou <= 1, "spatial_iou", "must be in (0, 1]")
        require(self.near_distance > 0, "near_distance", "must be > 0")


@dataclass
class ObjectsScorerConfig(ScorerConfig):
    """The embedded object-presence reward (rewards/scorers/objects.py): weights come from installed packages."""

    min_similarity: float = 0.7  # noun <-> ImageNet class-name cosine (MiniLM) needed to count as that class

    def validate(self) -> None:
        super().validate()
        require(0 < self.min_similarity <= 1, "min_similarity", "must be in (0, 1]")


@dataclass
class OrmScorerConfig(ScorerConfig):
    """The ORM (rewards/scorers/orm.py)."""

    # the first answer token's distribution is read at this temperature: p(yes) / (p(yes) + p(no)) at T is
    # sigmoid((l_yes - l_no) / T) (T2I-R1 samples its answer at 0.3)
    temperature: float = 0.3

    def validate(self) -> None:
        super().validate()
        require(self.temperature > 0, "temperature", "must be > 0")


def _enabled_color() -> ColorScorerConfig:
    return ColorScorerConfig(enabled=True)


@dataclass
class RewardsConfig:
    # T2I-R1's ensemble (need local weight directories):
    hps: ScorerConfig = field(default_factory=ScorerConfig)
    gdino: GdinoScorerConfig = field(default_factory=GdinoScorerConfig)
    git: ScorerConfig = field(default_factory=ScorerConfig)
    orm: OrmScorerConfig = field(default_factory=OrmScorerConfig)
    clip: ScorerConfig = field(default_factory=ScorerConfig)
    # Embedded, no downloaded weights: a pixel rule for colour words, and an ImageNet object-presence reward.
    color: ColorScorerConfig = field(default_factory=_enabled_color)
    objects: ObjectsScorerConfig = field(default_factory=ObjectsScorerConfig)
    ensemble: Ensemble = Ensemble.sum
    standardize: bool = False  # z-score each scorer over the batch before combining
    t2i_r1_compat: bool = False  # reproduce the reference GroundingDINO bugs (docs/ALGORITHM.md §4)
    deadline_s: float = 120.0
    retries: int = 2
    max_message_mb: int = 256
    token: Optional[str] = None  # shared secret; when set, calls without it are refused
    transport: Transport = Transport.raw
    # reward servers set glibc's thresholds at start so that multi-MB requests reuse heap memory instead of fresh
    # mmaps (rewards/allocator.py); the client is left alone (in a process of its own it measured no page faults)
    tune_allocator: bool = True

    def validate(self) -> None:
        require(self.deadline_s > 0, "deadline_s", "must be > 0")
        require(self.retries >= 0, "retries", "must be >= 0")
        require(self.max_message_mb >= 4, "max_message_mb", "must be >= 4")
        require(
            any(getattr(self, n).enabled for n in SCORER_NAMES),
            "enabled",
            "enable at least one scorer, e.g. rewards.color.enabled=true",
        )


def _scorer_names() -> tuple[str, ...]:
    hints = typing.get_type_hints(RewardsConfig)
    return tuple(
        f.name
        for f in dataclasses.fields(RewardsConfig)
        if isinstance(hints[f.name], type) and issubclass(hints[f.name], ScorerConfig)
    )


SCORER_NAMES = _scorer_names()
