"""The stand-in for T2I-CompBench's UniDet detector (spatial 2D, numeracy, 3D): transformers'
``GroundingDinoForObjectDetection`` asked about one noun at a time.

UniDet has no transformers port (it is a detectron2 model), so its metrics cannot be reproduced exactly. This
detector returns what the CompBench rules read from UniDet, in the same form: detections labelled with a class
name, boxes in UniDet's ~479-px frame (preprocess.unidet_frame_size; CompBench's pixel thresholds live there),
scores above 0.5, per-class NMS at IoU 0.5 (detectron2's test-time default), clipped to the frame, sorted by
decreasing score, at most 300 per image (the UniDet config's DETECTIONS_PER_IMAGE).

Each (image, noun) pair is one row of a batched forward (images of one size together) with the caption
``"{noun}."``; a box's score is its highest token probability over the caption (GroundingDINO's own box score,
as in its ``predict`` and in transformers' ``post_process_grounded_object_detection``). Nouns are the label of
their detections; which nouns to ask about (the 722-label gate) is the metric's decision
(detection_rules.LabelGate).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, GroundingDinoForObjectDetection, GroundingDinoImageProcessorPil

from evaluation.base import Fidelity
from evaluation.compbench.detection_rules import Detection
from evaluation.compbench.inputs import chunks
from evaluation.compbench.preprocess import to_pil, unidet_frame_size
from evaluation.models import GDINO
from rewards.detection_rules import nms

SCORE_THRESHOLD = 0.5  # experts/model_bank.py:75 (--confidence-threshold)
NMS_IOU = 0.5  # detectron2 MODEL.ROI_HEADS.NMS_THRESH_TEST default
MAX_DETECTIONS = 300  # configs/Base-CRCNN-COCO.yaml TEST.DETECTIONS_PER_IMAGE

FIDELITY = Fidelity.substitute
FIDELITY_NOTE = (
    "GroundingDINO stands in for UniDet (no transformers port): a different detector with a different score "
    "scale and recall, so a correct image can score anywhere from 0.75 to 1.0 and the success rate moves too; "
    "not comparable to published numbers, compare only runs scored by this same evaluator (e.g. spatial@gdino)"
)


class GdinoDetector:
    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        tokenizer,
        image_processor,
        score_threshold: float = SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU,
        max_detections: int = MAX_DETECTIONS,
        batch_size: int = 4,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, path: str | os.PathLike | None, device: str = "cpu", **kw) -> GdinoDetector:
        """From a local copy of IDEA-Research/grounding-dino-base (its processor resizes to 800 px, max 1333)."""
        p = GDINO.require(path)
        model = GroundingDinoForObjectDetection.from_pretrained(p, local_files_only=True).to(device)
        return cls(
            model,
            AutoTokenizer.from_pretrained(p, local_files_only=True),
            GroundingDinoImageProcessorPil.from_pretrained(p, local_files_only=True),
            **kw,
        )

    def detect(self, images: Sequence[np.ndarray], nouns: Sequence[Sequence[str]]) -> list[list[Detection]]:
        """Per image, the detections of its nouns (each asked once), most confident first."""
        out: list[list[Detection]] = []
        for s in chunks(len(images), self.batch_size):
            out += self._detect_batch(images[s], nouns[s])
        return out

    @torch.no_grad()
    def _detect_batch(self, images: Sequence[np.ndarray], nouns: Sequence[Sequence[str]]) -> list[list[Detection]]:
        found: list[list[Detection]] = [[] for _ in images]
        # Images of one size per forward: padding a smaller image changes what the backbone sees at its border.
        # (A policy's images all have one size, so this is one forward per batch in practice.)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            if nouns[i]:
                by_size.setdefault(im.shape[:2], []).append(i)
        for group in by_size.values():
            self._detect_group(images, nouns, group, found)
        for dets in found:
            dets.sort(key=lambda d: -d.score)
            del dets[self.max_detections :]
        return found

    def _detect_group(
        self,
        images: Sequence[np.ndarray],
        nouns: Sequence[Sequence[str]],
        group: list[int],
        found: list[list[Detection]],
    ) -> None:
        pairs = [(i, n) for i in group for n in dict.fromkeys(nouns[i])]
        px = self.image_processor(images=[to_pil(images[i]) for i in group], return_tensors="pt")
        rows = torch.tensor([group.index(i) for i, _ in pairs])
        text = self.tokenizer([f"{n}." for _, n in pairs], padding=True, return_tensors="pt")
        res = self.model(
            pixel_values=px.pixel_values[rows].to(self.device, self.model.dtype),
            pixel_mask=px.pixel_mask[rows].to(self.device),
            **{k: v.to(self.device) for k, v in text.items()},
        )
        scores = res.logits.float().sigmoid().max(-1).values.cpu()  # [P, Q]; padding logits are -inf
        boxes = res.pred_boxes.float().cpu()  # [P, Q, 4] normalised cx, cy, w, h
        w, h = unidet_frame_size(images[group[0]].shape[1], images[group[0]].shape[0])
        for p, (i, noun) in enumerate(pairs):
            cx, cy, bw, bh = boxes[p].unbind(-1)
            xyxy = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
            xyxy = torch.stack(
                [xyxy[:, 0].clamp(0, w), xyxy[:, 1].clamp(0, h), xyxy[:, 2].clamp(0, w), xyxy[:, 3].clamp(0, h)], -1
            )
            # A box left with no area after clipping lies outside the image: not a detection.
            keep = (scores[p] > self.score_threshold) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            b, sc = xyxy[keep], scores[p][keep]
            for k in nms(b, sc, self.nms_iou).tolist():
                found[i].append(Detection(noun, tuple(b[k].tolist()), float(sc[k])))
