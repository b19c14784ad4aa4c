"""T2I-R1's GroundingDINO reward rules (docs/ALGORITHM.md §4), as pure functions of detections.

Input: for each phrase the detector was asked about, the boxes it found above the box threshold, in the
detector's native format (normalised centre x, centre y, width, height; y grows downwards) with their phrase
scores. Output: one score in [0, 1] per image and the diagnostics behind it.

* object, color, shape, texture, non, complex: the fraction of ``nouns`` with at least one box.
* spatial (``spatial_info`` = {obj1, obj2, locality}): +0.2 for each of obj1, obj2 detected; if both are, the
  most confident box of each adds ``position_score(locality, box1, box2) / 2`` (so at most 0.9).
* numeracy (``numeracy_info`` = [{obj_name, num}]): each object, weight 1/N, gives 1 if its box count after
  NMS equals ``num``, 0.2 if it has boxes but the wrong count, else 0.

``t2i_r1_compat=False`` (the default) fixes the three bugs of the reference code; ``True`` reproduces them:

1. ``above`` and ``on top of`` match no rule in the reference, so they never get position credit. Fixed: they
   use the same rule as ``on the top of``.
2. The reference's near / next to / on side of threshold is 150 "pixels" on coordinates normalised to [0, 1],
   so those localities always score 1. Fixed: the threshold is ``near_distance`` in normalised coordinates
   (default 0.3, about T2I-CompBench's 150 px on its 512 px images).
3. The reference hands centre-format boxes to an NMS that expects corner format, so numeracy counts are
   wrong. Fixed: boxes are converted to corners first.

Kept from the reference on purpose (they are its rules, not bugs): the near rule gives full credit when the
centres are close on *either* axis; left/right/above/below need the dominant axis of the centre offset to
point the right way, with full credit below ``spatial_iou`` overlap and ``spatial_iou / IoU`` above it.
When obj1 and obj2 are the same noun ("a dog next to a dog"), the fixed rules use that noun's two most
confident boxes after NMS; the reference fails on such rows and scores 0, which compat mode reproduces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from rewards.base import TASK_TYPES, ScorerInputError

OBJECT_TASKS = ("object", "color", "shape", "texture", "non", "complex")

# Locality -> (rule, sign). Rules: "x" / "y" compare centres on that axis; sign +1 means obj1's centre must be
# at a larger coordinate than obj2's (right of / below, since y grows downwards). "near": close centres.
LOCALITIES: dict[str, tuple[str, int]] = {
    "left of": ("x", -1),
    "on the left of": ("x", -1),
    "right of": ("x", +1),
    "on the right of": ("x", +1),
    "below": ("y", +1),
    "on the bottom of": ("y", +1),
    "above": ("y", -1),
    "on the top of": ("y", -1),
    "on top of": ("y", -1),
    "next to": ("near", 0),
    "near": ("near", 0),
    "on side of": ("near", 0),
}
# Bug 1: the reference's determine_position has no branch for these, so they score 0.
COMPAT_UNMATCHED = ("above", "on top of")
# Bug 2: the reference's near threshold, in pixels, compared with normalised coordinates.
COMPAT_NEAR_DISTANCE = 150.0


@dataclass(frozen=True)
class RuleParams:
    nms_iou: float = 0.5
    spatial_iou: float = 0.1
    near_distance: float = 0.3
    t2i_r1_compat: bool = False


@dataclass
class PhraseBoxes:
    """What the detector found for one phrase: boxes [n, 4] (normalised cx, cy, w, h) and scores [n]."""

    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    scores: torch.Tensor = field(default_factory=lambda: torch.zeros(0))

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4 or self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(
                f"boxes must be [n, 4] and scores [n]; got {tuple(self.boxes.shape)}, {tuple(self.scores.shape)}"
            )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


Detections = Mapping[str, PhraseBoxes]


# --------------------------------------------------------------------------------------------------- geometry


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner-format boxes [n, 4] x [m, 4] -> [n, m], computed like torchvision.ops.box_iou: areas are
    not clamped, so boxes that are not in corner format give the same wrong numbers as there (compat bug 3)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (torchvision.ops.nms semantics): indices of the kept boxes, by decreasing
    score; a box is dropped when its IoU with a kept, higher-scoring box is above ``iou_threshold``."""
    order = torch.argsort(scores, descending=True, stable=True)
    iou = pairwise_iou(boxes[order], boxes[order])
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def box_iou(b1: torch.Tensor, b2: torch.Tensor) -> float:
    """IoU of two corner-format boxes; 0 when both are degenerate."""
    ix = max(0.0, float(min(b1[2], b2[2]) - max(b1[0], b2[0])))
    iy = max(0.0, float(min(b1[3], b2[3]) - max(b1[1], b2[1])))
    inter = ix * iy
    union = float((b1[2] - b1[0]) * (b1[3] - b1[1]) + (b2[2] - b2[0]) * (b2[3] - b2[1])) - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------------------------------- rules


def check_locality(locality: str) -> None:
    if locality not in LOCALITIES:
        raise ScorerInputError(f"spatial_info.locality {locality!r} is not one of: {', '.join(LOCALITIES)}")


def position_score(locality: str, box1: torch.Tensor, box2: torch.Tensor, params: RuleParams) -> float:
    """How well obj1 (``box1``) stands ``locality`` obj2 (``box2``); corner-format, normalised boxes."""
    check_locality(locality)
    if params.t2i_r1_compat and locality in COMPAT_UNMATCHED:
        return 0.0
    rule, sign = LOCALITIES[locality]
    c1 = ((box1[0] + box1[2]) / 2, (box1[1] + box1[3]) / 2)
    c2 = ((box2[0] + box2[2]) / 2, (box2[1] + box2[3]) / 2)
    dx, dy = float(c1[0] - c2[0]), float(c1[1] - c2[1])  # obj1 relative to obj2
    if rule == "near":
        thr = COMPAT_NEAR_DISTANCE if params.t2i_r1_compat else params.near_distance
        if abs(dx) < thr or abs(dy) < thr:
            return 1.0
        return thr / max(abs(dx), abs(dy))
    along, across = (dx, dy) if rule == "x" else (dy, dx)
    if along * sign <= 0 or abs(along) <= abs(across):
        return 0.0
    iou = box_iou(box1, box2)
    return 1.0 if iou < params.spatial_iou else params.spatial_iou / iou


def _found(dets: Detections, noun: str) -> PhraseBoxes:
    return dets.get(noun) or PhraseBoxes()


def object_score(nouns: list[str], dets: Detections) -> tuple[float, dict[str, Any]]:
    found = {n: len(_found(dets, n)) for n in nouns}
    return sum(1 for n in nouns if found[n] > 0) / len(nouns), {"boxes_per_noun": found}


def spatial_score(info: Mapping[str, Any], dets: Detections, params: RuleParams) -> tuple[float, dict[str, Any]]:
    obj1, obj2, locality = info["obj1"], info["obj2"], info["locality"]
    check_locality(locality)
    d1, d2 = _found(dets, obj1), _found(dets, obj2)
    details: dict[str, Any] = {"obj1_found": len(d1) > 0, "obj2_found": len(d2) > 0}
    score = 0.2 * (len(d1) > 0) + 0.2 * (len(d2) > 0)
    if not (len(d1) and len(d2)):
        return score, details
    if obj1 == obj2:
        if params.t2i_r1_compat:
            details["note"] = "obj1 == obj2: the reference fails on this row and scores 0"
            return 0.0, details
        keep = nms(cxcywh_to_xyxy(d1.boxes), d1.scores, params.nms_iou)
        if len(keep) < 2:
            details["note"] = "obj1 == obj2 but only one distinct box"
            return score, details
        b1, b2 = cxcywh_to_xyxy(d1.boxes[keep[:2]])
    else:
        b1 = cxcywh_to_xyxy(d1.boxes[int(torch.argmax(d1.scores))])
        b2 = cxcywh_to_xyxy(d2.boxes[int(torch.argmax(d2.scores))])
    pos = position_score(locality, b1, b2, params)
    details.update(position=pos, box1=[round(float(v), 4) for v in b1], box2=[round(float(v), 4) for v in b2])
    return score + pos / 2, details


def numeracy_score(info: list[Mapping[str, Any]], dets: Detections, params: RuleParams) -> tuple[float, dict[str, Any]]:
    weight = 1.0 / len(info)
    score, counts = 0.0, {}
    for item in info:
        d = _found(dets, item["obj_name"])
        if not len(d):
            counts[item["obj_name"]] = 0
            continue
        # Bug 3 in compat mode: the reference's NMS sees (cx, cy, w, h) as if it were (x1, y1, x2, y2).
        boxes = d.boxes if params.t2i_r1_compat else cxcywh_to_xyxy(d.boxes)
        n = len(nms(boxes, d.scores, params.nms_iou))
        counts[item["obj_name"]] = n
        score += weight * (1.0 if n == int(item["num"]) else 0.2)
    return score, {"counts": counts}


# --------------------------------------------------------------------------------------------------- metadata


def _require(meta: Mapping[str, Any], key: str, task: str) -> Any:
    value = meta.get(key)
    if not value:
        raise ScorerInputError(f"task_type {task!r} needs metadata field {key!r}, which is missing or empty")
    return value


def check_metadata(meta: Mapping[str, Any]) -> str:
    """Validate the detector's metadata (T2I-R1's training-file fields); returns the task type."""
    task = meta.get("task_type") or ""
    if task not in TASK_TYPES:
        raise ScorerInputError(f"unknown task_type {task!r}; expected one of {', '.join(TASK_TYPES)}")
    nouns = _require(meta, "nouns", task)
    if not all(isinstance(n, str) and n.strip() for n in nouns):
        raise ScorerInputError(f"nouns must be non-empty strings; got {nouns!r}")
    if task == "spatial":
        info = _require(meta, "spatial_info", task)
        missing = [k for k in ("obj1", "obj2", "locality") if not info.get(k)]
        if missing:
            raise ScorerInputError(f"spatial_info is missing {', '.join(missing)}: {info!r}")
        check_locality(info["locality"])
    elif task == "numeracy":
        for item in _require(meta, "numeracy_info", task):
            if not item.get("obj_name") or not isinstance(item.get("num"), int) or item["num"] < 0:
                raise ScorerInputError(f"numeracy_info entries need obj_name and an integer num >= 0; got {item!r}")
    return task


def detector_phrases(meta: Mapping[str, Any]) -> list[str]:
    """The phrases to ask the detector about: the nouns, then any spatial / numeracy object not among them,
    each once, in order (T2I-R1 asks about ``nouns``, which always contain those objects in its data)."""
    task = check_metadata(meta)
    phrases = list(meta["nouns"])
    if task == "spatial":
        phrases += [meta["spatial_info"]["obj1"], meta["spatial_info"]["obj2"]]
    elif task == "numeracy":
        phrases += [item["obj_name"] for item in meta["numeracy_info"]]
    return list(dict.fromkeys(phrases))


def detection_score(
    meta: Mapping[str, Any], dets: Detections, params: Optional[RuleParams] = None
) -> tuple[float, dict[str, Any]]:
    """The GroundingDINO reward of one image from its detections (keyed by phrase)."""
    params = params or RuleParams()
    task = check_metadata(meta)
    if task == "spatial":
        return spatial_score(meta["spatial_info"], dets, params)
    if task == "numeracy":
        return numeracy_score(meta["numeracy_info"], dets, params)
    return object_score(list(meta["nouns"]), dets)
