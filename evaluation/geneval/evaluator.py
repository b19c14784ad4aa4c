"""GenEval as one Evaluator: detect (Mask2Former), select objects per class, classify the colours the prompt
asks about (CLIP), apply the official rules. An image scores 1.0 when correct, else 0.0; the benchmark number is
:func:`evaluation.geneval.rules.summarize` over all images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluation.base import EvalItem, Evaluator, Fidelity, ImageResult
from evaluation.geneval.colors import ColorClassifier, object_crop
from evaluation.geneval.detector import Mask2FormerDetector
from evaluation.geneval.prompts import GenevalPrompt, load_object_names
from evaluation.geneval.rules import color_requests, evaluate, select_objects


class GenevalEvaluator(Evaluator):
    name = "geneval_mask2former"
    fidelity = Fidelity.substitute
    fidelity_note = (
        "detector weights differ: facebook/mask2former-swin-small-coco-instance is FAIR's detectron2 training "
        "(~46 mask AP), the official evaluator loads mmdet's Swin-S checkpoint (46.1 mask / 49.3 box AP); same "
        "architecture, mmdet's pre/post-processing reimplemented, colour CLIP ViT-L/14 is the same weights. "
        "The shift is unquantified; counting (score > 0.9) is the most sensitive tag."
    )

    def __init__(self, detector: Mask2FormerDetector, colors: ColorClassifier, class_names: Sequence[str]):
        if detector.num_classes != len(class_names):
            raise ValueError(
                f"the detector has {detector.num_classes} classes but object_names.txt lists "
                f"{len(class_names)}; GenEval needs the 80-class COCO instance checkpoint"
            )
        self.detector = detector
        self.colors = colors
        self.class_names = list(class_names)

    @classmethod
    def load(cls, detector_path, clip_path, prompts_path, device: str = "cpu", batch_size: int = 4) -> GenevalEvaluator:
        """``prompts_path``: the directory of GenEval's ``evaluation_metadata.jsonl`` and ``object_names.txt``."""
        names = load_object_names(prompts_path)
        return cls(
            Mask2FormerDetector.load(detector_path, device, batch_size),
            ColorClassifier.load(clip_path, device, 4 * batch_size),
            names,
        )

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        if len(images) != len(items):
            raise ValueError(f"{len(images)} images but {len(items)} items")
        prompts = [GenevalPrompt.from_metadata(item.metadata, self.class_names) for item in items]
        detections = self.detector.detect(images)
        objects = [select_objects(d, self.class_names, p.tag) for d, p in zip(detections, prompts)]

        # Every crop of the batch goes through CLIP together; requests[k] = (image, include clause, objects).
        requests = [
            (i, clause, found)
            for i, (p, o) in enumerate(zip(prompts, objects))
            for clause, found in color_requests(p, o).items()
        ]
        crops = [object_crop(images[i], d.mask, d.box) for i, _, found in requests for d in found]
        crop_classes = [prompts[i].include[clause].cls for i, clause, found in requests for _ in found]
        labels = iter(self.colors.classify(crops, crop_classes))
        colors: list[dict[int, list[str]]] = [{} for _ in images]
        for i, clause, found in requests:
            colors[i][clause] = [next(labels) for _ in found]

        results = []
        for prompt, objs, cols in zip(prompts, objects, colors):
            verdict = evaluate(prompt, objs, cols)
            results.append(
                ImageResult(
                    score=float(verdict.correct),
                    details={
                        "tag": prompt.tag,
                        "correct": verdict.correct,
                        "reason": verdict.reason,
                        "detections": {
                            name: [{"score": d.score, "box": list(d.box)} for d in dets] for name, dets in objs.items()
                        },
                        "colors": [
                            {
                                "class": prompt.include[clause].cls,
                                "expected": prompt.include[clause].color,
                                "found": found,
                            }
                            for clause, found in sorted(cols.items())
                        ],
                    },
                )
            )
        return results
