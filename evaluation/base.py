"""What every benchmark evaluator is, so that the harness can run any of them the same way.

An evaluator loads one model family from a local directory (never a hub id), scores a batch of images with their
benchmark items, and returns one :class:`ImageResult` per image: the score the official script would give that
image, plus what it saw (questions and answers, detections) so that a user can check a surprising number.

Each evaluator states how close it is to the benchmark's official number (:class:`Fidelity`): ``exact`` (same
weights, same procedure), ``same_weights`` (same weights, a documented difference in procedure, e.g. a re-sampled
position embedding), ``substitute`` (another model stands in, e.g. GroundingDINO for UniDet) or ``proxy`` (an
embedded reward of rewards/ scores the images: it runs with nothing downloaded and tracks one aspect of the prompt,
but it is not the benchmark's metric); the report prints the tag and the reason beside every metric.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np


class Fidelity(StrEnum):
    exact = "exact"
    same_weights = "same-weights"
    substitute = "substitute"
    proxy = "embedded-proxy"


@dataclass(frozen=True)
class EvalItem:
    """One image to score: which benchmark prompt it answers and the metadata the metric needs."""

    benchmark: str  # t2i_compbench | geneval | wise
    category: str  # e.g. color, spatial, complex (CompBench); the tag (GenEval); Culture, Time, ... (WISE)
    prompt: str
    prompt_index: int  # position of the prompt in its benchmark file
    sample_index: int  # which image of the prompt (0 .. images_per_prompt - 1)
    metadata: dict[str, Any] = field(default_factory=dict)  # GenEval's include/exclude, WISE's explanation, ...


@dataclass
class ImageResult:
    score: float
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable: questions, answers, boxes, ...


class Evaluator(ABC):
    """One metric on one model (or a fixed combination, like CompBench's 3-in-1)."""

    name: str  # e.g. "blip_vqa", "clipscore", "unidet@gdino", "geneval_mask2former", "wise_verified"
    fidelity: Fidelity
    fidelity_note: str  # why the tag: what differs from the official evaluator, or "" for exact

    @abstractmethod
    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        """One result per image (uint8 RGB H x W x 3 arrays), in order; batched internally."""
