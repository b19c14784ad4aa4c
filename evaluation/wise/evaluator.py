"""WISE as Evaluators: the judge reads the rubric chat (from the user's WISE checkout) about each image and its
prompt record, and its answer is parsed into the image's score.

* :class:`WiseVerifiedEvaluator` (``wise_verified@qwen3.5``): 0/1 per image; the benchmark number is
  ``scoring.summarize(VERIFIED, ...)`` (0.40 Culture + 0.12 x each other category).
* :class:`WiseLegacyEvaluator` (``wiscore_legacy@qwen3.5``): the legacy 0-2 rubric on the same judge, WiScore
  per image; a different judge than the paper's GPT-4o, so never comparable to published legacy numbers.

An answer that does not parse scores NaN (see scoring.py); the details keep the raw answer either way.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from evaluation.base import EvalItem, Evaluator, Fidelity, ImageResult
from evaluation.wise.checkout import load_rubric
from evaluation.wise.judge import MAX_NEW_TOKENS, QwenJudge
from evaluation.wise.rubric import Rubric
from evaluation.wise.scoring import parse_legacy, parse_verified, wiscore
from evaluation.wise.variants import LEGACY, VERIFIED, WiseVariant


class WiseEvaluator(Evaluator):
    variant: WiseVariant

    def __init__(self, judge: QwenJudge, rubric: Rubric):
        self.judge = judge
        self.rubric = rubric

    @classmethod
    def load(
        cls, judge_path, wise_path, device: str = "cpu", batch_size: int = 8, max_new_tokens: int = MAX_NEW_TOKENS
    ) -> WiseEvaluator:
        """``wise_path``: the user's WISE checkout (its rubric file is checked before the judge is loaded)."""
        rubric = load_rubric(wise_path, cls.variant)
        return cls(QwenJudge.load(judge_path, device, batch_size, max_new_tokens), rubric)

    @abstractmethod
    def read_answer(self, answer: str) -> tuple[float, Any]:
        """(image score, parsed value) of one judge answer; NaN and None when it does not parse."""

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        if len(images) != len(items):
            raise ValueError(f"{len(images)} images but {len(items)} items")
        answers = self.judge.answers([self.rubric.render(item.metadata) for item in items], images)
        results = []
        for item, answer in zip(items, answers):
            score, parsed = self.read_answer(answer)
            pid = item.metadata["prompt_id"]
            results.append(
                ImageResult(
                    score=score,
                    details={
                        "prompt_id": pid,
                        "category": self.variant.category(pid),
                        "answer": answer,
                        "parsed": parsed,
                    },
                )
            )
        return results


class WiseVerifiedEvaluator(WiseEvaluator):
    variant = VERIFIED
    name = VERIFIED.metric
    fidelity = Fidelity.same_weights
    fidelity_note = (
        "same judge weights (Qwen3.5-35B-A3B), rubric, prompts and decoding (greedy, 500 tokens, thinking off) as "
        "WISE_Verified; run by transformers instead of a vLLM server (bf16 kernels can flip a greedy token), image "
        "resized by PIL instead of torchvision (the identity at 384 px), no retries of an unparsable answer "
        "(greedy decoding would repeat it)."
    )

    def read_answer(self, answer: str) -> tuple[float, Any]:
        parsed = parse_verified(answer)
        return (math.nan if parsed is None else parsed), parsed


class WiseLegacyEvaluator(WiseEvaluator):
    variant = LEGACY
    name = LEGACY.metric
    fidelity = Fidelity.substitute
    fidelity_note = (
        "the legacy WiScore rubric judged by Qwen3.5-35B-A3B instead of GPT-4o-2024-05-13 (not available offline); "
        "judge drift is large, so this is a different metric: compare runs with each other, never with the "
        "published legacy numbers."
    )

    def read_answer(self, answer: str) -> tuple[float, Any]:
        parsed = parse_legacy(answer)
        return (math.nan if parsed is None else wiscore(**parsed)), parsed
