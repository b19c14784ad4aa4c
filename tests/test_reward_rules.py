"""Reward rules on hand-made detections and probabilities (no model): GroundingDINO's object / spatial /
numeracy rules in fixed and T2I-R1-compatible modes, and GIT-VQA's yes/no rule. Expected values are worked by
hand from docs/ALGORITHM.md §4."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rewards.base import ScorerInputError
from rewards.detection_rules import (
    LOCALITIES,
    PhraseBoxes,
    RuleParams,
    detection_score,
    detector_phrases,
    nms,
    position_score,
)

FIXED = RuleParams()
COMPAT = RuleParams(t2i_r1_compat=True)


def xyxy(x1, y1, x2, y2):
    return torch.tensor([x1, y1, x2, y2], dtype=torch.float32)


def det(*boxes_scores):
    """PhraseBoxes from ((cx, cy, w, h), score) pairs."""
    if not boxes_scores:
        return PhraseBoxes()
    return PhraseBoxes(
        torch.tensor([b for b, _ in boxes_scores], dtype=torch.float32),
        torch.tensor([s for _, s in boxes_scores], dtype=torch.float32),
    )


# Two 0.2 x 0.2 boxes; obj1's placement relative to obj2 (at the image centre), no overlap.
CENTRE = xyxy(0.4, 0.4, 0.6, 0.6)
PLACED = {
    "right": xyxy(0.7, 0.4, 0.9, 0.6),
    "left": xyxy(0.1, 0.4, 0.3, 0.6),
    "below": xyxy(0.4, 0.7, 0.6, 0.9),  # y grows downwards
    "above": xyxy(0.4, 0.1, 0.6, 0.3),
}
# locality -> (where obj1 must be, the opposite placement)
DIRECTIONAL = {
    "left of": ("left", "right"),
    "on the left of": ("left", "right"),
    "right of": ("right", "left"),
    "on the right of": ("right", "left"),
    "above": ("above", "below"),
    "on the top of": ("above", "below"),
    "on top of": ("above", "below"),
    "below": ("below", "above"),
    "on the bottom of": ("below", "above"),
}
NEAR = ("next to", "near", "on side of")
BROKEN_IN_REFERENCE = ("above", "on top of")


def test_every_training_locality_is_covered(shared_data):
    rows = [json.loads(line) for line in (shared_data / "t2i_r1_train.jsonl").read_text().splitlines() if line]
    localities = {r["spatial_info"]["locality"] for r in rows if r.get("spatial_info")}
    assert localities == set(DIRECTIONAL) | set(NEAR) == set(LOCALITIES)


@pytest.mark.parametrize("locality", sorted(DIRECTIONAL))
def test_directional_localities(locality):
    good, bad = DIRECTIONAL[locality]
    assert position_score(locality, PLACED[good], CENTRE, FIXED) == 1.0
    assert position_score(locality, PLACED[bad], CENTRE, FIXED) == 0.0
    assert position_score(locality, PLACED[bad], CENTRE, COMPAT) == 0.0
    # Reference bug 1: "above" and "on top of" match no rule there, so they never get position credit.
    assert position_score(locality, PLACED[good], CENTRE, COMPAT) == (0.0 if locality in BROKEN_IN_REFERENCE else 1.0)


@pytest.mark.parametrize("locality", NEAR)
def test_near_localities(locality):
    far = xyxy(0.85, 0.85, 0.95, 0.95)  # centre (0.9, 0.9)
    centre_box = xyxy(0.0, 0.0, 0.2, 0.2)  # centre (0.1, 0.1): 0.8 apart on both axes
    # Fixed: threshold 0.3 of the image side; far apart on both axes -> 0.3 / 0.8.
    assert position_score(locality, far, centre_box, FIXED) == pytest.approx(0.3 / 0.8)
    assert position_score(locality, far, centre_box, RuleParams(near_distance=0.4)) == pytest.approx(0.5)
    # Close on one axis is enough (the reference's "or").
    assert position_score(locality, xyxy(0.85, 0.0, 0.95, 0.2), centre_box, FIXED) == 1.0
    # Reference bug 2: 150 "pixels" on normalised coordinates, so always 1.
    assert position_score(locality, far, centre_box, COMPAT) == 1.0


def test_overlap_and_dominant_axis():
    a = xyxy(0.4, 0.4, 0.6, 0.6)
    b = xyxy(0.5, 0.4, 0.7, 0.6)  # shifted right by 0.1: intersection 0.02, union 0.06, IoU 1/3
    assert position_score("right of", b, a, FIXED) == pytest.approx(0.1 / (1 / 3))
    assert position_score("right of", b, a, RuleParams(spatial_iou=0.5)) == 1.0
    # Right by 0.1 but lower by 0.3: the vertical offset dominates.
    c = xyxy(0.5, 0.7, 0.7, 0.9)
    assert position_score("right of", c, a, FIXED) == 0.0
    assert position_score("below", c, a, FIXED) == 1.0
    assert position_score("on the bottom of", c, a, COMPAT) == 1.0


def test_nms_by_hand():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3])
    # Box 1 (best) overlaps box 0 with IoU 90/110 = 0.82 and box 3 likewise: both dropped; box 2 stays.
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.85).tolist() == [1, 0, 2]  # 0 and 3 are identical (IoU 1): 3 still dropped
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def spatial_meta(locality, obj1="dog", obj2="cat"):
    return {
        "task_type": "spatial",
        "nouns": [obj1, obj2],
        "spatial_info": {"obj1": obj1, "obj2": obj2, "locality": locality},
    }


CAT = ((0.5, 0.5, 0.2, 0.2), 0.8)
DOG_LEFT = ((0.2, 0.5, 0.2, 0.2), 0.6)
DOG_RIGHT = ((0.8, 0.5, 0.2, 0.2), 0.4)
DOG_ABOVE = ((0.5, 0.2, 0.2, 0.2), 0.7)


def test_spatial_scores():
    both = {"dog": det(DOG_LEFT), "cat": det(CAT)}
    assert detection_score(spatial_meta("left of"), both, FIXED)[0] == pytest.approx(0.9)
    assert detection_score(spatial_meta("right of"), both, FIXED)[0] == pytest.approx(0.4)
    assert detection_score(spatial_meta("left of"), {"dog": det(DOG_LEFT)}, FIXED)[0] == pytest.approx(0.2)
    assert detection_score(spatial_meta("left of"), {}, FIXED)[0] == 0.0
    # The most confident dog box decides: left (0.6) beats right (0.4).
    two_dogs = {"dog": det(DOG_RIGHT, DOG_LEFT), "cat": det(CAT)}
    assert detection_score(spatial_meta("left of"), two_dogs, FIXED)[0] == pytest.approx(0.9)
    above = {"dog": det(DOG_ABOVE), "cat": det(CAT)}
    for loc in ("above", "on top of", "on the top of"):
        assert detection_score(spatial_meta(loc), above, FIXED)[0] == pytest.approx(0.9)
    assert detection_score(spatial_meta("above"), above, COMPAT)[0] == pytest.approx(0.4)
    assert detection_score(spatial_meta("on top of"), above, COMPAT)[0] == pytest.approx(0.4)
    assert detection_score(spatial_meta("on the top of"), above, COMPAT)[0] == pytest.approx(0.9)


def test_spatial_same_noun():
    meta = spatial_meta("left of", "dog", "dog")
    dogs = {"dog": det(DOG_LEFT, ((0.7, 0.5, 0.2, 0.2), 0.5))}
    # Fixed: the two most confident boxes; the first (0.6) is left of the second.
    assert detection_score(meta, dogs, FIXED)[0] == pytest.approx(0.9)
    assert detection_score(meta, {"dog": det(DOG_LEFT)}, FIXED)[0] == pytest.approx(0.4)
    assert detection_score(meta, dogs, COMPAT)[0] == 0.0  # the reference fails on this row


def test_numeracy_scores():
    meta = {
        "task_type": "numeracy",
        "nouns": ["apple", "pear"],
        "numeracy_info": [{"obj_name": "apple", "num": 3}, {"obj_name": "pear", "num": 1}],
    }
    apples = det(((0.2, 0.2, 0.1, 0.1), 0.9), ((0.5, 0.5, 0.1, 0.1), 0.8), ((0.8, 0.8, 0.1, 0.1), 0.7))
    pear = det(((0.5, 0.2, 0.2, 0.2), 0.9))
    assert detection_score(meta, {"apple": apples, "pear": pear}, FIXED)[0] == pytest.approx(1.0)
    assert detection_score(meta, {"apple": apples}, FIXED)[0] == pytest.approx(0.5)  # pear missing: 0
    two_pears = det(((0.5, 0.2, 0.2, 0.2), 0.9), ((0.2, 0.7, 0.2, 0.2), 0.8))
    assert detection_score(meta, {"apple": apples, "pear": two_pears}, FIXED)[0] == pytest.approx(0.5 + 0.1)
    score, details = detection_score(meta, {"apple": apples, "pear": two_pears}, FIXED)
    assert details["counts"] == {"apple": 3, "pear": 2}


def test_numeracy_nms_format_bug():
    meta = {"task_type": "numeracy", "nouns": ["pear"], "numeracy_info": [{"obj_name": "pear", "num": 1}]}
    # The same pear found twice, shifted by 0.01: corner-format IoU = 0.19*0.2 / (0.08 - 0.038) = 0.905 -> 1 box.
    dup = {"pear": det(((0.5, 0.5, 0.2, 0.2), 0.9), ((0.51, 0.5, 0.2, 0.2), 0.8))}
    assert detection_score(meta, dup, FIXED)[0] == pytest.approx(1.0)
    # Reference bug 3: read as corners, (0.5, 0.5, 0.2, 0.2) has x2 < x1, no intersection, so both boxes stay.
    assert detection_score(meta, dup, COMPAT)[0] == pytest.approx(0.2)
    assert detection_score(meta, dup, COMPAT)[1]["counts"] == {"pear": 2}


@pytest.mark.parametrize("task", ["object", "color", "shape", "texture", "non", "complex"])
def test_object_scores(task):
    meta = {"task_type": task, "nouns": ["cat", "dog", "hat"]}
    dets = {"cat": det(CAT), "dog": det(DOG_LEFT), "hat": det()}
    assert detection_score(meta, dets, FIXED)[0] == pytest.approx(2 / 3)
    assert detection_score(meta, dets, COMPAT)[0] == pytest.approx(2 / 3)
    # A repeated noun counts once per occurrence (weight 1 / len(nouns)), as in the reference.
    assert detection_score({"task_type": task, "nouns": ["cat", "cat", "hat"]}, dets)[0] == pytest.approx(2 / 3)


def test_complex_row_with_spatial_info_uses_object_rule():
    meta = {
        "task_type": "complex",
        "nouns": ["umbrella", "umbrella"],
        "spatial_info": {"obj1": "umbrella", "obj2": "umbrella", "locality": "on top of"},
    }
    assert detection_score(meta, {"umbrella": det(CAT)})[0] == 1.0


def test_detector_phrases():
    assert detector_phrases(spatial_meta("near")) == ["dog", "cat"]
    meta = {
        "task_type": "spatial",
        "nouns": ["dog", "dog", "ball"],
        "spatial_info": {"obj1": "dog", "obj2": "cat", "locality": "near"},
    }
    assert detector_phrases(meta) == ["dog", "ball", "cat"]
    meta = {"task_type": "numeracy", "nouns": ["apple"], "numeracy_info": [{"obj_name": "pear", "num": 2}]}
    assert detector_phrases(meta) == ["apple", "pear"]


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"task_type": "painting", "nouns": ["cat"]}, "unknown task_type 'painting'"),
        ({"task_type": "", "nouns": ["cat"]}, "unknown task_type ''"),
        ({"task_type": "object", "nouns": []}, "'nouns'"),
        ({"task_type": "object"}, "'nouns'"),
        ({"task_type": "spatial", "nouns": ["cat"]}, "'spatial_info'"),
        ({"task_type": "spatial", "nouns": ["cat"], "spatial_info": {"obj1": "cat", "locality": "near"}}, "obj2"),
        (
            {
                "task_type": "spatial",
                "nouns": ["cat"],
                "spatial_info": {"obj1": "cat", "obj2": "dog", "locality": "inside"},
            },
            "locality 'inside'",
        ),
        ({"task_type": "numeracy", "nouns": ["cat"]}, "'numeracy_info'"),
        (
            {"task_type": "numeracy", "nouns": ["cat"], "numeracy_info": [{"obj_name": "cat", "num": "two"}]},
            "integer num",
        ),
    ],
)
def test_bad_metadata(meta, message):
    with pytest.raises(ScorerInputError, match=message):
        detection_score(meta, {})


# --------------------------------------------------------------------------------------------------- GIT-VQA rules

from rewards.vqa_rules import vqa_phrases, vqa_question, vqa_score, yes_ratio_from_logits  # noqa: E402


def test_vqa_phrases():
    assert vqa_phrases({"task_type": "color", "nouns": ["apple"], "attr_nouns": ["red apple"]}) == ["red apple"]
    assert vqa_phrases({"task_type": "non", "nouns": ["man", "dog"]}) == ["man", "dog"]
    assert vqa_phrases({"task_type": "complex", "nouns": ["cat"], "attr_nouns": []}) == ["cat"]
    assert vqa_phrases({"task_type": "spatial", "nouns": ["cat", "dog"]}) is None
    assert vqa_phrases({"task_type": "numeracy", "nouns": ["cat"]}) is None
    assert vqa_question("red apple") == "red apple?"
    with pytest.raises(ScorerInputError, match="unknown task_type 'x'"):
        vqa_phrases({"task_type": "x", "nouns": ["cat"]})
    with pytest.raises(ScorerInputError, match="needs non-empty 'attr_nouns' or 'nouns'"):
        vqa_phrases({"task_type": "color", "nouns": []})


def test_yes_ratio_from_hand_made_probabilities():
    # Next-token distribution over a 5-token vocabulary: yes (id 3) 0.3, no (id 1) 0.1, the rest 0.6.
    probs = torch.tensor([[0.2, 0.1, 0.3, 0.3, 0.1], [0.02, 0.48, 0.25, 0.0, 0.25]])
    ratios = yes_ratio_from_logits(torch.log(probs), yes_id=3, no_id=1)
    torch.testing.assert_close(ratios, torch.tensor([0.3 / 0.4, 0.0]))
    # Shifting all logits changes nothing; huge logits do not overflow.
    torch.testing.assert_close(yes_ratio_from_logits(torch.log(probs) + 500, 3, 1), ratios)
    big = torch.tensor([1000.0, 999.0])
    assert yes_ratio_from_logits(big, 0, 1).item() == pytest.approx(1 / (1 + math.exp(-1)))
    assert vqa_score([0.75, 0.25, 0.5]) == pytest.approx(0.5)
