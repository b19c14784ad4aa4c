"""The scorer interface: every reward model, embedded or real, scores one group of images of one prompt.

A scorer sees the raw prompt with its task metadata (never the CoT) and the group's images as uint8 RGB arrays,
and returns one :class:`ImageScore` per image. Servers (``rewards/server.py``) host exactly one scorer each.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.records import PromptRecord

# Task types of T2I-R1's training file; the detector and VQA rules branch on them, the reward server accepts
# only these.
TASK_TYPES = ("object", "color", "shape", "texture", "non", "complex", "spatial", "numeracy")


class ScorerInputError(ValueError):
    """The request cannot be scored as given (unknown task type, missing metadata, bad image)."""


@dataclass
class ImageScore:
    score: float
    # Per-image diagnostics: detected boxes, yes/no probabilities, questions asked... JSON-serialisable values.
    details: dict[str, Any] = field(default_factory=dict)


class Scorer(ABC):
    name: str = ""
    version: str = "0"

    @abstractmethod
    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        """One score per image, in order. Raise ScorerInputError for bad input."""
