"""GenEval's object detector: a transformers Mask2Former (Swin-S, COCO instance) with mmdet's pre- and
post-processing (evaluation/geneval/detector_input.py, evaluation/geneval/instances.py).

The official evaluator loads mmdet's ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco`` checkpoint; the hub
checkpoint ``facebook/mask2former-swin-small-coco-instance`` is FAIR's detectron2 training of the same
architecture (about 46 mask AP, vs 46.1 mask AP / 49.3 box AP for mmdet's), so detections differ somewhat.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import Mask2FormerForUniversalSegmentation

from evaluation.geneval.detector_input import detector_input
from evaluation.geneval.instances import Detection, instance_postprocess
from evaluation.models import MASK2FORMER


def detector_dir(path) -> Path:
    return MASK2FORMER.require(path)


class Mask2FormerDetector:
    def __init__(self, model: Mask2FormerForUniversalSegmentation, batch_size: int = 4):
        self.model = model.eval()
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.num_classes = int(model.config.num_labels)

    @classmethod
    def load(cls, path, device: str = "cpu", batch_size: int = 4) -> Mask2FormerDetector:
        root = detector_dir(path)
        model = Mask2FormerForUniversalSegmentation.from_pretrained(root, local_files_only=True, dtype=torch.float32)
        return cls(model.to(device), batch_size)

    @torch.no_grad()
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """The top-100 instances of every image (uint8 RGB arrays), in order.

        Images are batched with others of the same size only (see detector_input).
        """
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            by_size.setdefault(im.shape[:2], []).append(i)
        results: list[list[Detection]] = [[] for _ in images]
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                pixels, geo = detector_input([images[i] for i in chunk])
                out = self.model(pixel_values=pixels.to(self.device))
                for j, i in enumerate(chunk):
                    results[i] = instance_postprocess(
                        out.class_queries_logits[j], out.masks_queries_logits[j], geo.padded, geo.resized, geo.original
                    )
        return results
