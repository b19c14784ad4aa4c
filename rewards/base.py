"""The scorer interface: every reward model, embedded or real, scores one group of images of one prompt.

A scorer sees the raw prompt with its task metadata (never the CoT) and the group's images as uint8 RGB arrays,
and returns one :class:`ImageScore` per image. Servers (``rewards/server.py``) host exactly one scorer each.

A :class:`PreparedScorer` splits its work in two: ``prepare_image``, the per-image work that needs no model
(resizing an image to the model's input), and ``score_prepared``, the model on the group. A server runs
``prepare_image`` on a pool of threads, the images of a group and of several groups at once, beside the model's
work on another group, and ``score_prepared`` on its one model thread; ``score`` is the two in a row, in
process. For any other scorer the server's per-image step only hands the image on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
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


def check_image(image: Any) -> None:
    """A scorer's input image must be a non-empty uint8 H x W x 3 RGB array (what the rollout produces)."""
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or image.shape[0] == 0
        or image.shape[1] == 0
    ):
        desc = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ScorerInputError(f"expected a uint8 H x W x 3 RGB array, got {desc}")


def check_images(images: Sequence[Any]) -> None:
    """A group of at least one image, each passing :func:`check_image`."""
    if len(images) == 0:
        raise ScorerInputError("empty group: a group needs at least one image")
    for i, image in enumerate(images):
        try:
            check_image(image)
        except ScorerInputError as e:
            raise ScorerInputError(f"image {i}: {e}") from None


class Scorer(ABC):
    name: str = ""
    version: str = "0"

    @abstractmethod
    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        """One score per image, in order. Raise ScorerInputError for bad input."""

    def prepare_image(self, prompt: PromptRecord, image: np.ndarray) -> Any:
        """The model-free part of scoring one image, handed to :meth:`score_prepared` with the group's others.
        Default: the image as it is."""
        return image

    def score_prepared(self, prompt: PromptRecord, prepared: list[Any]) -> list[ImageScore]:
        """The scores of a group from what :meth:`prepare_image` returned for each image, in order.
        Default: ``score(prompt, prepared)``."""
        return self.score(prompt, prepared)


class PreparedScorer(Scorer):
    """A scorer whose per-image work is its own step: :meth:`prepare_image` (checks the image and, e.g., resizes
    it to the model's input; must be thread-safe: a server runs it on several threads at once) and
    :meth:`score_prepared` (the model on the whole group). :meth:`score` is the two in a row."""

    @abstractmethod
    def prepare_image(self, prompt: PromptRecord, image: np.ndarray) -> Any: ...

    @abstractmethod
    def score_prepared(self, prompt: PromptRecord, prepared: list[Any]) -> list[ImageScore]: ...

    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        check_images(images)
        return self.score_prepared(prompt, [self.prepare_image(prompt, im) for im in images])
