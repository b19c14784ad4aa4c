"""GenEval's decision rules: which detections count, whether an image satisfies its prompt, and the summary.

From the official ``evaluation/evaluate_images.py`` (djghosh13/geneval@af4902f): detections per class sorted by
score, kept above 0.3 (0.9 for the counting tag), at most 16, no NMS (threshold 1.0, l.223-244 and 286-290);
``relative_position`` (l.140-157) and ``evaluate`` (l.160-220); the summary of ``summary_scores.py`` (l.36-45).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from evaluation.geneval.instances import Detection
from evaluation.geneval.prompts import COLORS, TAGS, GenevalPrompt

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
POSITION_THRESHOLD = 0.1


def select_objects(detections: Sequence[Detection], class_names: Sequence[str], tag: str) -> dict[str, list[Detection]]:
    """Per class name: the detections above the tag's threshold, best first, at most MAX_OBJECTS.

    The official NMS threshold is 1.0, which keeps every box, so there is no suppression step.
    """
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    objects: dict[str, list[Detection]] = {}
    for det in sorted(detections, key=lambda d: -d.score):
        if det.score > threshold:
            kept = objects.setdefault(class_names[det.label], [])
            if len(kept) < MAX_OBJECTS:
                kept.append(det)
    return objects


def relative_position(box_a: Sequence[float], box_b: Sequence[float]) -> set[str]:
    """Where A is relative to B ("left of", "right of", "above", "below"), allowing for the objects' sizes.

    The centre offset is shrunk on each axis by POSITION_THRESHOLD times the sum of the two sizes (floored at
    0), then divided by the length of the unshrunk offset; a component beyond 0.5 gives the relation. Image
    y grows downwards, so "above" is a negative dy.
    """
    boxes = np.array([box_a[:4], box_b[:4]], dtype=np.float64).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def color_requests(prompt: GenevalPrompt, objects: Mapping[str, Sequence[Detection]]) -> dict[int, list[Detection]]:
    """The objects whose colour :func:`evaluate` needs, per include clause: the top ``count`` objects of every
    clause that asks for a colour and has enough detections (the official code classifies exactly these)."""
    wanted = {}
    for i, req in enumerate(prompt.include):
        found = list(objects.get(req.cls, []))[: req.count]
        if req.color is not None and len(found) >= req.count:
            wanted[i] = found
    return wanted


@dataclass
class Verdict:
    correct: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "\n".join(self.reasons)


def evaluate(
    prompt: GenevalPrompt, objects: Mapping[str, Sequence[Detection]], colors: Mapping[int, Sequence[str]]
) -> Verdict:
    """Whether the selected ``objects`` satisfy the prompt.

    Include clauses are ANDed, exclude clauses ORed. Each include takes the top ``count`` objects of its class
    (fewer -> wrong); a colour needs at least ``count`` of them classified as that colour (``colors[i]`` holds
    the classified colours of include ``i``'s objects, see :func:`color_requests`); a position needs every
    (object, target object) pair in the relation, against the objects of the target include, which must itself
    have matched. An exclude is violated by ``count`` or more detections of its class.
    """
    verdict = Verdict(correct=True)
    matched_groups: list[list[Detection] | None] = []

    def fail(reason: str) -> None:
        verdict.correct = False
        verdict.reasons.append(reason)

    for i, req in enumerate(prompt.include):
        found = list(objects.get(req.cls, []))[: req.count]
        matched = len(found) >= req.count
        if not matched:
            fail(f"expected {req.cls}>={req.count}, found {len(found)}")
        else:
            if req.color is not None:
                found_colors = list(colors[i])
                if found_colors.count(req.color) < req.count:
                    matched = False
                    fail(
                        f"expected {req.color} {req.cls}>={req.count}, found "
                        f"{found_colors.count(req.color)} {req.color}; and "
                        + ", ".join(f"{found_colors.count(c)} {c}" for c in COLORS if c in found_colors)
                    )
            if req.position is not None and matched:
                relation, target = req.position
                if matched_groups[target] is None:
                    matched = False
                    fail(f"no target for {req.cls} to be {relation}")
                else:
                    matched = _all_in_relation(found, matched_groups[target], relation, req.cls, fail)
        matched_groups.append(found if matched else None)
    for req in prompt.exclude:
        n = len(objects.get(req.cls, []))
        if n >= req.count:
            fail(f"expected {req.cls}<{req.count}, found {n}")
    return verdict


def _all_in_relation(found, targets, relation, cls, fail) -> bool:
    # The official loops stop at the first failing pair and report only that one.
    for obj in found:
        for target in targets:
            true_relations = relative_position(obj.box, target.box)
            if relation not in true_relations:
                fail(f"expected {cls} {relation} target, found {' and '.join(sorted(true_relations))} target")
                return False
    return True


def summarize(tags: Sequence[str], correct: Sequence[float]) -> dict:
    """GenEval's summary: per tag, the mean correctness of its images; overall, the unweighted mean of the tag
    means (over the tags present, as ``summary_scores.py`` groups whatever it is given).

    ``correct`` holds one 0/1 per image (the evaluator's ImageResult scores).
    """
    if len(tags) != len(correct):
        raise ValueError(f"{len(tags)} tags but {len(correct)} results")
    per_tag: dict[str, list[float]] = {}
    for tag, c in zip(tags, correct):
        if tag not in TAGS:
            raise ValueError(f"unknown GenEval tag {tag!r}, expected one of {TAGS}")
        per_tag.setdefault(tag, []).append(float(c))
    means = {tag: float(np.mean(per_tag[tag])) for tag in TAGS if tag in per_tag}
    return {
        "tags": means,
        "images": {tag: len(per_tag[tag]) for tag in means},
        "overall": float(np.mean(list(means.values()))) if means else None,
        "complete": len(means) == len(TAGS),
    }
