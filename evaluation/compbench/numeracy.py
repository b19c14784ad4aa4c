"""T2I-CompBench++ numeracy (UniDet_eval/numeracy_eval.py) on the GroundingDINO stand-in for UniDet (detector.py).

The prompt's counted objects come from prompt_rules.numeracy_objects (number word + one or two words of
``new_objects.txt``), renamed to the detector's names (boy -> person, ship -> boat, ...); an object can be found
only when its name is a substring of one of UniDet's 722 labels. Detections are de-duplicated and scored by
detection_rules.numeracy_score.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from evaluation.base import EvalItem, Evaluator, ImageResult
from evaluation.compbench import spacy_parse
from evaluation.compbench.detection_rules import LabelGate, numeracy_score
from evaluation.compbench.detector import FIDELITY, FIDELITY_NOTE, GdinoDetector
from evaluation.compbench.files import load_new_objects, load_unidet_labels
from evaluation.compbench.inputs import check_batch
from evaluation.compbench.prompt_rules import numeracy_detector_name, numeracy_objects


class NumeracyEvaluator(Evaluator):
    name = "numeracy@gdino"
    fidelity = FIDELITY
    fidelity_note = FIDELITY_NOTE

    def __init__(
        self,
        detector: GdinoDetector,
        gate: LabelGate,
        singular: Sequence[str],
        plural: Sequence[str],
        parse: Callable[[str], spacy_parse.ParsedPrompt] = spacy_parse.parse,
    ):
        self.detector = detector
        self.gate = gate
        self.singular = list(singular)
        self.plural = list(plural)
        self.parse = parse

    @classmethod
    def load(
        cls,
        gdino_path: str | os.PathLike | None,
        labels_path: str | os.PathLike,
        new_objects_path: str | os.PathLike,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> NumeracyEvaluator:
        gate = LabelGate(load_unidet_labels(labels_path))
        singular, plural = load_new_objects(new_objects_path)
        spacy_parse.load_spacy()
        return cls(GdinoDetector.load(gdino_path, device, batch_size=batch_size), gate, singular, plural)

    def objects(self, prompt: str) -> tuple[list[str], list[int]]:
        """The counted objects (detector names) and the counts, as the script parses them."""
        objs, counts = numeracy_objects(self.parse(prompt).tokens, self.singular, self.plural)
        return [numeracy_detector_name(o) for o in objs], counts

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        check_batch(images, items)
        parsed = [self.objects(it.prompt) for it in items]
        asked = [[o for o in dict.fromkeys(objs) if self.gate.substring(o)] for objs, _ in parsed]
        results = []
        for (objs, counts), nouns, dets in zip(parsed, asked, self.detector.detect(images, asked)):
            score, details = numeracy_score(objs, counts, dets)
            details.update(asked=nouns, detections=[d.as_json() for d in dets])
            results.append(ImageResult(score, details))
        return results
