"""T2I-CompBench spatial (2D, UniDet_eval/2D_spatial_eval.py) and 3D spatial (UniDet_eval/3D_spatial_eval.py) on
the GroundingDINO stand-in for UniDet (detector.py) and, for 3D, DPT depth (depth.py).

2D: obj1, obj2 = the prompt's first and last NOUN (or, for complex prompts, the objects around its spatial
preposition), the locality by substring; only nouns that are exactly one of UniDet's 722 labels can be found
(100 of the 300 val prompts have one that is not, and always score 0, as in the original). 3D: the same simple
parse with the in front of / behind / hidden localities, nouns matched as substrings of the labels, and the depth
rule on top.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Optional

import numpy as np

from evaluation.base import EvalItem, Evaluator, ImageResult
from evaluation.compbench import spacy_parse
from evaluation.compbench.depth import DptDepth
from evaluation.compbench.detection_rules import LabelGate, spatial_2d_score, spatial_3d_score
from evaluation.compbench.detector import FIDELITY, FIDELITY_NOTE, GdinoDetector
from evaluation.compbench.files import load_unidet_labels
from evaluation.compbench.inputs import check_batch
from evaluation.compbench.prompt_rules import (
    LOCALITIES_2D,
    LOCALITIES_3D,
    as_detector_name,
    complex_spatial_objects,
    find_locality,
    first_last_nouns,
)

Parse = Callable[[str], spacy_parse.ParsedPrompt]


class Spatial2DEvaluator(Evaluator):
    fidelity = FIDELITY
    fidelity_note = FIDELITY_NOTE

    def __init__(
        self, detector: GdinoDetector, gate: LabelGate, complex_parse: bool = False, parse: Parse = spacy_parse.parse
    ):
        self.detector = detector
        self.gate = gate
        self.complex_parse = complex_parse
        self.parse = parse
        self.name = "spatial_complex@gdino" if complex_parse else "spatial@gdino"

    @classmethod
    def load(
        cls,
        gdino_path: str | os.PathLike | None,
        labels_path: str | os.PathLike,
        complex_parse: bool = False,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> Spatial2DEvaluator:
        gate = LabelGate(load_unidet_labels(labels_path))
        spacy_parse.load_spacy()
        return cls(GdinoDetector.load(gdino_path, device, batch_size=batch_size), gate, complex_parse)

    def objects(self, prompt: str) -> tuple[Optional[str], Optional[str], Optional[str]]:
        """(obj1, obj2, locality) as the script reads them, girl/boy/man/woman already mapped to person."""
        tokens = self.parse(prompt).tokens
        if self.complex_parse:
            found = complex_spatial_objects(tokens)
            obj1, obj2 = found if len(found) == 2 else (None, None)
        else:
            obj1, obj2 = first_last_nouns(tokens)
        return as_detector_name(obj1), as_detector_name(obj2), find_locality(prompt, LOCALITIES_2D)

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        check_batch(images, items)
        parsed = [self.objects(it.prompt) for it in items]
        asked = [[o for o in dict.fromkeys((obj1, obj2)) if self.gate.exact(o)] for obj1, obj2, _ in parsed]
        results = []
        for (obj1, obj2, locality), nouns, dets in zip(parsed, asked, self.detector.detect(images, asked)):
            score, details = spatial_2d_score(obj1, obj2, locality, dets)
            details.update(obj1=obj1, obj2=obj2, locality=locality, asked=nouns, detections=[d.as_json() for d in dets])
            results.append(ImageResult(score, details))
        return results


class Spatial3DEvaluator(Evaluator):
    name = "spatial3d@gdino"
    fidelity = FIDELITY
    fidelity_note = FIDELITY_NOTE + "; depth from the same DPT-Hybrid weights, in fp32 (the original: fp16 autocast)"

    def __init__(self, detector: GdinoDetector, depth: DptDepth, gate: LabelGate, parse: Parse = spacy_parse.parse):
        self.detector = detector
        self.depth = depth
        self.gate = gate
        self.parse = parse

    @classmethod
    def load(
        cls,
        gdino_path: str | os.PathLike | None,
        dpt_path: str | os.PathLike | None,
        labels_path: str | os.PathLike,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> Spatial3DEvaluator:
        gate = LabelGate(load_unidet_labels(labels_path))
        spacy_parse.load_spacy()
        return cls(
            GdinoDetector.load(gdino_path, device, batch_size=batch_size),
            DptDepth.load(dpt_path, device, batch_size=batch_size),
            gate,
        )

    def objects(self, prompt: str) -> tuple[str, str, Optional[str]]:
        obj1, obj2 = first_last_nouns(self.parse(prompt).tokens)
        return as_detector_name(obj1), as_detector_name(obj2), find_locality(prompt, LOCALITIES_3D)

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        check_batch(images, items)
        parsed = [self.objects(it.prompt) for it in items]
        asked = [[o for o in dict.fromkeys((obj1, obj2)) if self.gate.substring(o)] for obj1, obj2, _ in parsed]
        detections = self.detector.detect(images, asked)
        depths = self.depth.frame_depth(images)
        results = []
        for (obj1, obj2, locality), nouns, dets, depth in zip(parsed, asked, detections, depths):
            score, details = spatial_3d_score(obj1, obj2, locality, dets, depth)
            details.update(obj1=obj1, obj2=obj2, locality=locality, asked=nouns, detections=[d.as_json() for d in dets])
            results.append(ImageResult(score, details))
        return results
