"""The embedded world's evaluators: the embedded rewards of rewards/ (real rules and real weights that ship with
the project's packages, nothing downloaded) scoring benchmark images as stand-ins. They are labelled
``embedded-proxy`` and named ``*@embedded``; their numbers are never a benchmark's.

* ``color@embedded`` (rewards/scorers/color.py): how much of the image shows the prompt's colour words;
* ``objects@embedded`` (rewards/scorers/objects.py): ImageNet-classifier presence of the prompt's objects (GenEval:
  its ``include`` classes; T2I-CompBench: the prompt's spaCy nouns), presence only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np

from core.records import PromptRecord
from evaluation.base import EvalItem, Evaluator, Fidelity, ImageResult
from evaluation.compbench import spacy_parse
from evaluation.compbench.inputs import check_batch
from rewards.base import Scorer

COLOR_NOTE = (
    "embedded proxy, not the benchmark's metric: the share of the image showing the prompt's colour words "
    "(a CIELAB pixel rule, rewards/scorers/color.py); the benchmark asks BLIP-VQA (CompBench) or a detector "
    "and CLIP (GenEval) instead"
)
OBJECTS_NOTE = (
    "embedded proxy, not the benchmark's metric: ImageNet-classifier presence of the prompt's objects "
    "(EfficientNet-Lite0 + MiniLM noun matching, rewards/scorers/objects.py); it ignores attributes, "
    "counts and relations, and objects without an ImageNet class"
)


def prompt_nouns(item: EvalItem) -> list[str]:
    """GenEval's ``include`` classes, else the prompt's nouns as spaCy tags them."""
    if "include" in item.metadata:
        return list(dict.fromkeys(r["class"] for r in item.metadata["include"]))
    return list(dict.fromkeys(t.text.lower() for t in spacy_parse.parse(item.prompt).tokens if t.pos == "NOUN"))


class EmbeddedProxy(Evaluator):
    fidelity = Fidelity.proxy

    def __init__(self, scorer: Scorer, name: str, note: str, nouns: Optional[Callable[[EvalItem], list[str]]] = None):
        """``nouns``: the objects of an item, for a scorer that needs them (None: the scorer reads the prompt)."""
        self.scorer = scorer
        self.name = name
        self.fidelity_note = note
        self.nouns = nouns

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        """Images of one prompt go to the scorer together (it scores groups)."""
        check_batch(images, items)
        results: list[ImageResult | None] = [None] * len(images)
        by_prompt: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            by_prompt.setdefault(item.prompt, []).append(i)
        for prompt, idx in by_prompt.items():
            nouns = self.nouns(items[idx[0]]) if self.nouns is not None else []
            if self.nouns is not None and not nouns:
                for i in idx:
                    results[i] = ImageResult(0.0, {"note": "no noun found in the prompt"})
                continue
            scores = self.scorer.score(PromptRecord(prompt=prompt, nouns=nouns), [images[i] for i in idx])
            for i, s in zip(idx, scores):
                results[i] = ImageResult(float(s.score), dict(s.details))
        return results


def color_proxy() -> EmbeddedProxy:
    from rewards.scorers.color import ColorScorer

    return EmbeddedProxy(ColorScorer(), "color@embedded", COLOR_NOTE)


def objects_proxy(batch_size: int) -> EmbeddedProxy:
    from rewards.config import ObjectsScorerConfig
    from rewards.scorers.objects import ObjectPresenceScorer

    spacy_parse.load_spacy()
    scorer = ObjectPresenceScorer.from_config(ObjectsScorerConfig(batch_size=batch_size))
    return EmbeddedProxy(scorer, "objects@embedded", OBJECTS_NOTE, nouns=prompt_nouns)
