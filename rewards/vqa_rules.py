"""T2I-R1's GIT-VQA reward rules (docs/ALGORITHM.md §4), independent of the model.

* spatial and numeracy rows are skipped: score 0 (T2I-R1 leaves them to GroundingDINO).
* otherwise one question ``"{phrase}?"`` per phrase of ``attr_nouns`` when the row has them, else of ``nouns``;
  each answer scores ``p(yes) / (p(yes) + p(no))`` from the next-token distribution; the image scores the mean.

The ratio only depends on the two logits: p(yes) / (p(yes) + p(no)) = sigmoid(logit_yes - logit_no), which is
how :func:`yes_ratio_from_logits` computes it (no softmax over the vocabulary, no underflow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch

from rewards.base import ScorerInputError
from rewards.detection_rules import TASK_TYPES

SKIPPED_TASKS = ("spatial", "numeracy")


def vqa_phrases(meta: Mapping[str, Any]) -> Optional[list[str]]:
    """The phrases to ask about, or None when the task type is skipped. Raises ScorerInputError on bad metadata."""
    task = meta.get("task_type") or ""
    if task not in TASK_TYPES:
        raise ScorerInputError(f"unknown task_type {task!r}; expected one of {', '.join(TASK_TYPES)}")
    if task in SKIPPED_TASKS:
        return None
    phrases = meta.get("attr_nouns") or meta.get("nouns")
    if not phrases or not all(isinstance(p, str) and p.strip() for p in phrases):
        raise ScorerInputError(
            f"task_type {task!r} needs non-empty 'attr_nouns' or 'nouns'; got "
            f"attr_nouns={meta.get('attr_nouns')!r}, nouns={meta.get('nouns')!r}"
        )
    return list(phrases)


def vqa_question(phrase: str) -> str:
    return f"{phrase}?"


def yes_ratio_from_logits(logits: torch.Tensor, yes_id: int, no_id: int) -> torch.Tensor:
    """[..., V] next-token logits -> [...] p(yes) / (p(yes) + p(no))."""
    return torch.sigmoid(logits[..., yes_id].float() - logits[..., no_id].float())


def vqa_score(ratios: Sequence[float]) -> float:
    """The image's score: the mean over its questions."""
    if not ratios:
        raise ValueError("no questions were asked")
    return float(sum(ratios) / len(ratios))
