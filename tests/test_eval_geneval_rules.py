"""GenEval's rules worked by hand: object selection, relative_position, evaluate for every tag and clause kind,
the summary; the metadata loader on the real prompt file and on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation.base import EvalItem
from evaluation.geneval.instances import Detection
from evaluation.geneval.prompts import (
    TAGS,
    GenevalMetadataError,
    GenevalPrompt,
    eval_items,
    load_metadata,
    load_object_names,
)
from evaluation.geneval.rules import evaluate, relative_position, select_objects, summarize
from evaluation.local_files import MissingFilesError

NAMES = ["person", "bench", "clock", "car", "dog", "teddy bear", "apple", "wine glass"]


def det(box, score=0.95, label=0):
    return Detection(label=label, score=score, box=tuple(float(v) for v in box), mask=np.zeros((1, 1), bool))


def prompt(meta) -> GenevalPrompt:
    return GenevalPrompt.from_metadata(meta, NAMES)


# ------------------------------------------------------------------------------------------ relative_position


@pytest.mark.parametrize(
    "box_a, box_b, expected",
    [
        # centres (5,5) vs (25,5): offset (-20,0), x shrunk by 0.1*(10+10)=2 -> -18, /20 = -0.9
        ((0, 0, 10, 10), (20, 0, 30, 10), {"left of"}),
        ((20, 0, 30, 10), (0, 0, 10, 10), {"right of"}),
        # offset (0,50), y shrunk by 2 -> 48, /50 = 0.96 (y grows downwards)
        ((0, 50, 10, 60), (0, 0, 10, 10), {"below"}),
        ((0, 0, 10, 10), (0, 50, 10, 60), {"above"}),
        # offset (-100,-100) -> (-98,-98)/141.42 = -0.693 on both axes
        ((0, 0, 10, 10), (100, 100, 110, 110), {"left of", "above"}),
        # offset (-6,-6) -> (-4,-4)/8.485 = -0.471: not beyond 0.5 on either axis
        ((0, 0, 10, 10), (6, 6, 16, 16), set()),
        # offset (-1,-1) is inside the shrink margin of 2: no relation
        ((0, 0, 10, 10), (1, 1, 11, 11), set()),
        # wide B: offset (-30,-10), shrink x by 0.1*(10+50)=6, y by 2 -> (-24,-8)/31.62 = (-0.759,-0.253)
        ((0, 0, 10, 10), (10, 10, 60, 20), {"left of"}),
    ],
)
def test_relative_position_by_hand(box_a, box_b, expected):
    assert relative_position(box_a, box_b) == expected


# ------------------------------------------------------------------------------------------ select_objects


def test_select_objects_thresholds_order_and_cap():
    dets = [
        det((0, 0, 1, 1), 0.30, label=1),
        det((0, 0, 1, 1), 0.31, label=1),
        det((0, 0, 1, 1), 0.95, label=1),
        det((0, 0, 1, 1), 0.5, label=2),
        det((0, 0, 1, 1), 0.91, label=2),
        det((0, 0, 1, 1), 0.1, label=3),
    ]
    objs = select_objects(dets, NAMES, "two_object")
    # strictly above 0.3, best first; classes without detections are absent
    assert {k: [d.score for d in v] for k, v in objs.items()} == {"bench": [0.95, 0.31], "clock": [0.91, 0.5]}
    objs = select_objects(dets, NAMES, "counting")  # counting keeps only > 0.9
    assert {k: [d.score for d in v] for k, v in objs.items()} == {"bench": [0.95], "clock": [0.91]}
    many = [det((0, 0, 1, 1), 0.4 + i / 100, label=4) for i in range(20)]
    kept = select_objects(many, NAMES, "single_object")["dog"]
    assert len(kept) == 16 and kept[0].score == pytest.approx(0.59) and kept[-1].score == pytest.approx(0.44)


# ------------------------------------------------------------------------------------------ evaluate, per tag


def test_single_object():
    p = prompt({"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"})
    assert evaluate(p, {"bench": [det((0, 0, 5, 5))]}, {}).correct
    v = evaluate(p, {"dog": [det((0, 0, 5, 5))]}, {})
    assert not v.correct and v.reason == "expected bench>=1, found 0"


def test_two_object_needs_both():
    p = prompt(
        {
            "tag": "two_object",
            "include": [{"class": "car", "count": 1}, {"class": "dog", "count": 1}],
            "prompt": "a photo of a car and a dog",
        }
    )
    both = {"car": [det((0, 0, 5, 5))], "dog": [det((6, 0, 9, 5))]}
    assert evaluate(p, both, {}).correct
    v = evaluate(p, {"car": both["car"]}, {})
    assert not v.correct and v.reasons == ["expected dog>=1, found 0"]


def test_counting_include_and_exclude():
    p = prompt(
        {
            "tag": "counting",
            "include": [{"class": "clock", "count": 2}],
            "exclude": [{"class": "clock", "count": 3}],
            "prompt": "a photo of two clocks",
        }
    )
    clocks = [det((10 * i, 0, 10 * i + 5, 5)) for i in range(3)]
    assert evaluate(p, {"clock": clocks[:2]}, {}).correct
    v = evaluate(p, {"clock": clocks[:1]}, {})
    assert not v.correct and v.reasons == ["expected clock>=2, found 1"]
    v = evaluate(p, {"clock": clocks}, {})  # three: the include holds, the exclude does not
    assert not v.correct and v.reasons == ["expected clock<3, found 3"]


def test_colors_counts_the_asked_colour():
    p = prompt(
        {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "pink"}], "prompt": "a photo of a pink car"}
    )
    cars = {"car": [det((0, 0, 5, 5))]}
    assert evaluate(p, cars, {0: ["pink"]}).correct
    v = evaluate(p, cars, {0: ["red"]})
    assert not v.correct and v.reason == "expected pink car>=1, found 0 pink; and 1 red"
    # too few objects: wrong before any colour is looked at (no colours passed)
    assert evaluate(p, {}, {}).reasons == ["expected car>=1, found 0"]


def test_colour_with_count_two_needs_two_of_the_colour():
    p = prompt(
        {
            "tag": "colors",
            "include": [{"class": "apple", "count": 2, "color": "green"}],
            "prompt": "a photo of two green apples",
        }
    )
    apples = {"apple": [det((0, 0, 5, 5)), det((6, 0, 9, 5)), det((10, 0, 15, 5))]}
    assert evaluate(p, apples, {0: ["green", "green"]}).correct
    v = evaluate(p, apples, {0: ["green", "red"]})
    assert not v.correct and v.reason == "expected green apple>=2, found 1 green; and 1 red, 1 green"


def test_color_attr_each_object_its_colour():
    p = prompt(
        {
            "tag": "color_attr",
            "include": [
                {"class": "wine glass", "count": 1, "color": "purple"},
                {"class": "apple", "count": 1, "color": "black"},
            ],
            "prompt": "a photo of a purple wine glass and a black apple",
        }
    )
    objs = {"wine glass": [det((0, 0, 5, 5))], "apple": [det((6, 0, 9, 5))]}
    assert evaluate(p, objs, {0: ["purple"], 1: ["black"]}).correct
    v = evaluate(p, objs, {0: ["black"], 1: ["purple"]})  # colours swapped between the objects
    assert not v.correct and len(v.reasons) == 2


def test_position_against_the_target_clause():
    p = prompt(
        {
            "tag": "position",
            "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
            "prompt": "a photo of a dog right of a teddy bear",
        }
    )
    bear = [det((0, 0, 10, 10))]
    assert evaluate(p, {"teddy bear": bear, "dog": [det((20, 0, 30, 10))]}, {}).correct
    v = evaluate(p, {"teddy bear": bear, "dog": [det((0, 50, 10, 60))]}, {})
    assert not v.correct and v.reason == "expected dog right of target, found below target"
    v = evaluate(p, {"dog": [det((20, 0, 30, 10))]}, {})  # no target: both clauses fail
    assert v.reasons == ["expected teddy bear>=1, found 0", "no target for dog to be right of"]


def test_position_uses_only_the_top_count_objects_and_every_target():
    p = prompt(
        {
            "tag": "position",
            "include": [{"class": "car", "count": 2}, {"class": "dog", "count": 1, "position": ["above", 0]}],
            "prompt": "made up: a dog above two cars",
        }
    )
    # objects arrive best first (select_objects); the third car, which the dog is not above, is beyond count 2
    cars = [det((0, 50, 10, 60), 0.9), det((40, 50, 50, 60), 0.8), det((0, 0, 10, 10), 0.7)]
    dog_above_both = [det((20, 0, 30, 10), 0.9), det((0, 100, 10, 110), 0.8)]  # only the top dog is checked
    assert evaluate(p, {"car": cars, "dog": dog_above_both}, {}).correct
    # dog (centre 25,55) beside the cars: offset from car 1 is (+20, 0) -> right of, not above: wrong at that pair
    v = evaluate(p, {"car": cars, "dog": [det((20, 50, 30, 60))]}, {})
    assert not v.correct and v.reason == "expected dog above target, found right of target"


# ------------------------------------------------------------------------------------------ summary


def test_summary_is_the_mean_of_tag_means():
    tags = (
        ["single_object"] * 4
        + ["two_object"] * 2
        + ["counting"] * 4
        + ["colors"] * 1
        + ["position"] * 2
        + ["color_attr"] * 5
    )
    correct = [1, 1, 0, 1] + [0, 1] + [0, 0, 0, 1] + [1] + [0, 0] + [1, 0, 1, 0, 1]
    s = summarize(tags, correct)
    assert s["tags"] == {
        "single_object": 0.75,
        "two_object": 0.5,
        "counting": 0.25,
        "colors": 1.0,
        "position": 0.0,
        "color_attr": 0.6,
    }
    assert s["overall"] == pytest.approx((0.75 + 0.5 + 0.25 + 1.0 + 0.0 + 0.6) / 6)  # not the image mean 9/18
    assert s["complete"] and s["images"]["color_attr"] == 5
    part = summarize(["colors", "colors", "position"], [1, 0, 1])
    assert part["overall"] == pytest.approx(0.75) and not part["complete"]
    with pytest.raises(ValueError, match="unknown GenEval tag 'colour'"):
        summarize(["colour"], [1])


# ------------------------------------------------------------------------------------------ metadata


def test_loads_the_real_prompt_file(shared_data):
    rows = load_metadata(shared_data / "geneval")
    names = load_object_names(shared_data / "geneval")
    assert len(rows) == 553 and len(names) == 80 and names[0] == "person"
    counts = {t: sum(r["tag"] == t for r in rows) for t in TAGS}
    assert counts == {
        "single_object": 80,
        "two_object": 99,
        "counting": 80,
        "colors": 94,
        "position": 100,
        "color_attr": 100,
    }
    items = eval_items(rows[:3], images_per_prompt=4)
    assert [(i.prompt_index, i.sample_index) for i in items[:5]] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]
    assert isinstance(items[0], EvalItem) and items[0].metadata == rows[0] and items[0].category == rows[0]["tag"]
    p = GenevalPrompt.from_metadata(next(r for r in rows if r["tag"] == "position"), names)
    assert p.include[1].position[1] == 0


def test_missing_prompt_files_and_bad_metadata(tmp_path):
    with pytest.raises(MissingFilesError, match=r"does not exist.*evaluation_metadata\.jsonl.*djghosh13/geneval"):
        load_metadata(tmp_path / "nowhere")
    (tmp_path / "object_names.txt").write_text("\n".join(NAMES))
    with pytest.raises(MissingFilesError, match=r"incomplete: missing evaluation_metadata\.jsonl\. "):
        load_metadata(tmp_path)
    (tmp_path / "evaluation_metadata.jsonl").write_text(
        json.dumps({"tag": "single_object", "include": [{"class": "unicorn", "count": 1}], "prompt": "a unicorn"})
    )
    with pytest.raises(GenevalMetadataError, match="class 'unicorn' is not one of the detector's 8 classes"):
        load_metadata(tmp_path)
    with pytest.raises(GenevalMetadataError, match="position .* earlier include"):
        prompt(
            {"tag": "position", "include": [{"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "x"}
        )
    with pytest.raises(GenevalMetadataError, match="unknown tag 'color'"):
        prompt({"tag": "color", "include": [{"class": "dog", "count": 1}], "prompt": "x"})
