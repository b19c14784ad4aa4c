"""The detection side of the T2I-CompBench metrics (spatial 2D, 3D spatial, numeracy), as pure functions of
detections: boxes (x_min, y_min, x_max, y_max) in the ~479-px frame that UniDet's input resize gives
(preprocess.unidet_frame_size), each with a class label and a score, ordered by decreasing score as detectron2
returns them. File:line references are to Karine-Huang/T2I-CompBench@1b70949, UniDet_eval/.

These are CompBench's rules, not T2I-R1's reward rules (rewards/detection_rules.py): the thresholds are in pixels,
only the first instance of a label counts, and the 2D score is floored at 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

from evaluation.compbench.prompt_rules import PromptRuleError

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max


@dataclass(frozen=True)
class Detection:
    label: str
    box: Box
    score: float

    def as_json(self) -> list:
        return [self.label, [round(float(v), 2) for v in self.box], round(float(self.score), 4)]


class LabelGate:
    """UniDet's 722 class names: a noun the detector has no class for is never found. The 2D script tests exact
    list membership (``obj1 in obj``, 2D_spatial_eval.py:233), the 3D and numeracy scripts substrings of the
    label names (3D_spatial_eval.py:301, numeracy_eval.py:176-179)."""

    def __init__(self, labels: Sequence[str]):
        self.labels = list(labels)
        self._exact = set(self.labels)

    def exact(self, noun: Optional[str]) -> bool:
        return noun in self._exact

    def substring(self, noun: Optional[str]) -> bool:
        return noun is not None and any(noun in label for label in self.labels)


def box_iou(box1: Box, box2: Box) -> float:
    """IoU as determine_position computes it (2D_spatial_eval.py:33-39): continuous coordinates, no +1."""
    x_overlap = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]))
    y_overlap = max(0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]))
    intersection = x_overlap * y_overlap
    area1 = (box1[2] - box1[0]) * (box1[3] - box1[1])
    area2 = (box2[2] - box2[0]) * (box2[3] - box2[1])
    return intersection / (area1 + area2 - intersection)


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


# ----------------------------------------------------------------------------------------------- 2D


def determine_position(
    locality: Optional[str], box1: Box, box2: Box, iou_threshold: float = 0.1, distance_threshold: float = 150.0
) -> float:
    """How well obj1 (``box1``) stands ``locality`` obj2 (``box2``) (2D_spatial_eval.py:23-78).

    dx, dy = centre2 - centre1 (y grows downwards). near / next to / on side of: 1 if |dx| or |dy| is below the
    distance threshold, else threshold / max(|dx|, |dy|). on the right of (dx < 0), on the left of (dx > 0), on
    the bottom of (dy < 0), on the top of (dy > 0): the offset's dominant axis must be that one, then 1 if the
    IoU is below the threshold else threshold / IoU. Any other locality ("on top of", None) scores 0.
    """
    c1, c2 = _centre(box1), _centre(box2)
    dx, dy = c2[0] - c1[0], c2[1] - c1[1]
    if locality in ("next to", "on side of", "near"):
        if abs(dx) < distance_threshold or abs(dy) < distance_threshold:
            return 1.0
        return distance_threshold / max(abs(dx), abs(dy))
    axis = {
        "on the right of": (dx, dy, -1),
        "on the left of": (dx, dy, +1),
        "on the bottom of": (dy, dx, -1),
        "on the top of": (dy, dx, +1),
    }.get(locality or "")
    if axis is None:
        return 0.0
    along, across, sign = axis
    if along * sign <= 0 or abs(along) <= abs(across):
        return 0.0
    iou = box_iou(box1, box2)
    return 1.0 if iou < iou_threshold else iou_threshold / iou


SPATIAL_2D_FLOOR = 0.5  # 2D_spatial_eval.py:260: a 2D score below 0.5 counts as 0


def spatial_2d_score(
    obj1: Optional[str], obj2: Optional[str], locality: Optional[str], detections: Sequence[Detection]
) -> tuple[float, dict[str, Any]]:
    """2D_spatial_eval.py:233-261: both objects found (first, i.e. most confident, instance of each label)
    -> 0.25 s1 + 0.25 s2 + determine_position / 2; one found -> 0.25 s; then below 0.5 -> 0."""
    labels = [d.label for d in detections]
    details: dict[str, Any] = {"obj1_found": obj1 in labels, "obj2_found": obj2 in labels}
    if obj1 in labels and obj2 in labels:
        d1, d2 = detections[labels.index(obj1)], detections[labels.index(obj2)]
        position = determine_position(locality, d1.box, d2.box)
        details["position"] = position
        score = 0.25 * d1.score + 0.25 * d2.score + position / 2
    elif obj1 in labels:
        score = 0.25 * detections[labels.index(obj1)].score
    elif obj2 in labels:
        score = 0.25 * detections[labels.index(obj2)].score
    else:
        score = 0.0
    details["raw_score"] = score
    return (0.0 if score < SPATIAL_2D_FLOOR else score), details


# ----------------------------------------------------------------------------------------------- 3D


def region_mean(depth: torch.Tensor, box: Box) -> torch.Tensor:
    """Mean depth of a box region indexed as the script does, ``depth[x_min:x_max, y_min:y_max]``: x indexes rows,
    so the region is the box's transpose (3D_spatial_eval.py:111-112). An empty region gives NaN."""
    return depth[int(box[0]) : int(box[2]), int(box[1]) : int(box[3])].mean()


def depth_position(
    locality: Optional[str], box1: Box, box2: Box, depth: torch.Tensor, iou_threshold: float = 0.5
) -> tuple[float, float, float]:
    """3D_spatial_eval.py:108-152. ``depth`` is the 8-bit-rounded relative inverse depth in [0, 1] (larger =
    closer) in the detection frame. in front of: IoU > 0.5 and mean1 > mean2 -> 1; 0 < IoU < 0.5 and
    mean1 > mean2 -> IoU / 0.5; else 0. behind / hidden: the same with mean1 < mean2. Returns the score and the
    two region means."""
    mean1, mean2 = region_mean(depth, box1), region_mean(depth, box2)
    means = (float(mean1), float(mean2))
    if locality == "in front of":
        closer = bool(mean1 - mean2 > 0)
    elif locality in ("behind", "hidden"):
        closer = bool(mean1 - mean2 < 0)
    else:
        return 0.0, *means
    iou = box_iou(box1, box2)
    if iou > iou_threshold:
        return (1.0 if closer else 0.0), *means
    if 0 < iou < iou_threshold:
        return (iou / iou_threshold if closer else 0.0), *means
    return 0.0, *means


def spatial_3d_score(
    obj1: Optional[str],
    obj2: Optional[str],
    locality: Optional[str],
    detections: Sequence[Detection],
    depth: torch.Tensor,
) -> tuple[float, dict[str, Any]]:
    """3D_spatial_eval.py:297-344: objects matched as substrings of the detection labels; no floor.

    When both are present the script scans the detections in order, setting obj1's index at every match and
    stopping once both indices are set, so obj1 may take a later instance than its first (kept as is)."""
    labels = [d.label for d in detections]
    joined = " ".join(labels)
    details: dict[str, Any] = {
        "obj1_found": obj1 is not None and obj1 in joined,
        "obj2_found": obj2 is not None and obj2 in joined,
    }
    if details["obj1_found"] and details["obj2_found"]:
        i1 = i2 = None
        for i, label in enumerate(labels):
            if obj1 in label:
                i1 = i
            if obj2 in label:
                i2 = i
            if i1 is not None and i2 is not None:
                break
        d1, d2 = detections[i1], detections[i2]
        position, mean1, mean2 = depth_position(locality, d1.box, d2.box, depth)
        details.update(position=position, depth_means=[round(mean1, 4), round(mean2, 4)])
        return 0.25 * d1.score + 0.25 * d2.score + position / 2, details
    for found, obj in ((details["obj1_found"], obj1), (details["obj2_found"], obj2)):
        if found:
            return 0.25 * next(d.score for d in detections if obj in d.label), details
    return 0.0, details


# ----------------------------------------------------------------------------------------------- numeracy


def same_object(box1: Box, box2: Box) -> bool:
    """numeracy_eval.py:48-66: IoU > 0.9 or either box > 90 % inside the other, with +1-pixel areas."""
    inter = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]) + 1) * max(
        0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]) + 1
    )
    area1 = (box1[2] - box1[0] + 1) * (box1[3] - box1[1] + 1)
    area2 = (box2[2] - box2[0] + 1) * (box2[3] - box2[1] + 1)
    return inter / (area1 + area2 - inter) > 0.9 or inter / area1 > 0.9 or inter / area2 > 0.9


def dedupe(detections: Sequence[Detection]) -> list[Detection]:
    """numeracy_eval.py:120-130: in order, drop a detection that duplicates (same_object) a kept one of the same
    label."""
    kept: list[Detection] = []
    for d in detections:
        if not any(k.label == d.label and same_object(d.box, k.box) for k in kept):
            kept.append(d)
    return kept


def numeracy_score(
    objects: Sequence[str], counts: Sequence[int], detections: Sequence[Detection]
) -> tuple[float, dict[str, Any]]:
    """numeracy_eval.py:162-185 on the de-duplicated detections. ``objects`` (non-empty) are the parsed names after
    NUMERACY_RENAMES, ``counts`` the parsed counts (possibly fewer, see prompt_rules.numeracy_objects). Each
    object weighs 1/n: +0.5 if its name is a label (a name that is a substring of a label first renames every
    such detection to it), +0.5 more if that label's count equals the asked count."""
    names = [d.label for d in dedupe(detections)]
    weight = 1.0 / len(objects)
    score = 0.0
    per_object = []
    for i, obj in enumerate(objects):
        if obj not in names:
            names = [obj if obj in name else name for name in names]
        found = names.count(obj)
        wanted = counts[i] if i < len(counts) else None
        if found:
            score += 0.5 * weight
            if wanted is None:
                raise PromptRuleError(
                    f"object {obj!r} has no parsed count: the official numeracy score indexes past "
                    "the end of its count list here"
                )
            if found == wanted:
                score += 0.5 * weight
        per_object.append({"object": obj, "wanted": wanted, "found": found})
    return score, {"objects": per_object}
