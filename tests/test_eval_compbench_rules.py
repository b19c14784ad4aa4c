"""Golden tests of T2I-CompBench's pure rules (evaluation/compbench/{prompt,detection}_rules.py, three_in_one.py),
each value worked by hand from the official scripts' rules (EVAL.md section 1). Boxes are in the 479-px frame."""

from __future__ import annotations

import json
import math

import pytest
import torch

from evaluation.compbench.detection_rules import (
    Detection,
    LabelGate,
    dedupe,
    depth_position,
    determine_position,
    numeracy_score,
    same_object,
    spatial_2d_score,
    spatial_3d_score,
)
from evaluation.compbench.files import BenchmarkFileError, load_new_objects, load_unidet_labels
from evaluation.compbench.preprocess import centre_crop_box, shortest_side_size, unidet_frame_size
from evaluation.compbench.prompt_rules import (
    LOCALITIES_2D,
    LOCALITIES_3D,
    PromptRuleError,
    as_detector_name,
    blip_questions,
    complex_spatial_objects,
    find_locality,
    first_last_nouns,
    numeracy_detector_name,
    numeracy_objects,
    pre_question,
    without_adjectives,
)
from evaluation.compbench.spacy_parse import Token
from evaluation.compbench.three_in_one import ComplexSubsets, combine, complex_key


def toks(spec: str) -> list[Token]:
    """Hand-tagged tokens: "The/DET red/ADJ hat/NOUN ./PUNCT" (a "." token is glued to the word before it)."""
    out = []
    for part in spec.split(" "):
        text, pos = part.rsplit("/", 1)
        if text in (".", ",") and out:
            out[-1] = Token(out[-1].text, out[-1].pos, "")
        out.append(Token(text, pos))
    return out[:-1] + [Token(out[-1].text, out[-1].pos, "")]


def det(label, box, score=0.9):
    return Detection(label, tuple(float(v) for v in box), score)


# ------------------------------------------------------------------------------------------- 2D determine_position

A = (0, 0, 100, 100)  # centre (50, 50)


@pytest.mark.parametrize(
    "locality, box2, want",
    [
        # near family: 1 if |dx| or |dy| < 150, else 150 / max(|dx|, |dy|)
        ("next to", (300, 0, 400, 100), 1.0),  # dx = 300, dy = 0
        ("near", (300, 300, 400, 400), 0.5),  # dx = dy = 300 -> 150 / 300
        ("on side of", (400, 200, 500, 300), 150 / 400),  # dx = 400, dy = 200
        # left/right need dx = c2 - c1 of the right sign and dominant; IoU 0 < 0.1 -> 1
        ("on the left of", (200, 0, 300, 100), 1.0),  # dx = +200: obj1 is left of obj2
        ("on the right of", (200, 0, 300, 100), 0.0),
        ("on the right of", (-300, 0, -200, 100), 1.0),
        ("on the left of", (50, 0, 150, 100), 0.3),  # dx = 50, IoU = 5000 / 15000 -> 0.1 / (1/3)
        ("on the left of", (100, 150, 200, 250), 0.0),  # dx = 100 < dy = 150: not dominant
        # top/bottom: y grows downwards; "on the top of" needs dy > 0 (obj1 higher)
        ("on the top of", (0, 200, 100, 300), 1.0),
        ("on the bottom of", (0, 200, 100, 300), 0.0),
        ("on the bottom of", (0, -200, 100, -100), 1.0),
        ("on top of", (0, 200, 100, 300), 0.0),  # no rule for "on top of"
        (None, (0, 200, 100, 300), 0.0),
    ],
)
def test_determine_position(locality, box2, want):
    assert determine_position(locality, A, box2) == pytest.approx(want)


def test_spatial_2d_score():
    cat, dog = det("cat", (0, 0, 100, 100), 0.9), det("dog", (200, 0, 300, 100), 0.8)
    # both found, position 1: 0.25 * 0.9 + 0.25 * 0.8 + 1 / 2
    assert spatial_2d_score("cat", "dog", "on the left of", [dog, cat])[0] == pytest.approx(0.925)
    # both found, wrong side: 0.425 < 0.5 -> 0
    score, details = spatial_2d_score("cat", "dog", "on the right of", [cat, dog])
    assert score == 0.0 and details["raw_score"] == pytest.approx(0.425) and details["position"] == 0.0
    # one found: 0.25 * 0.9 = 0.225 -> 0
    score, details = spatial_2d_score("cat", "horse", "on the left of", [cat, dog])
    assert score == 0.0 and details["raw_score"] == pytest.approx(0.225)
    assert spatial_2d_score(None, None, "near", [cat, dog])[0] == 0.0
    # the first (most confident) instance of a label counts: the second cat would be on the wrong side
    far_cat = det("cat", (400, 0, 479, 100), 0.7)
    assert spatial_2d_score("cat", "dog", "on the left of", [cat, dog, far_cat])[0] == pytest.approx(0.925)
    assert spatial_2d_score("cat", "dog", "on the left of", [far_cat, dog])[0] == 0.0


def test_label_gate(tmp_path):
    gate = LabelGate(["table, desk", "cat", "person", "caterpillar"])
    assert gate.exact("cat") and not gate.exact("table") and not gate.exact(None)
    assert gate.substring("table") and gate.substring("cat") and not gate.substring("mouse")


def test_label_gate_on_the_real_labels(shared_data):
    gate = LabelGate(load_unidet_labels(shared_data / "t2i_compbench/unidet_labels_722.json"))
    # 2D needs an exact label: "table" and "cow" are only inside "table, desk" / "cattle, cow"
    assert gate.exact("person") and gate.exact("dog") and not gate.exact("table") and not gate.exact("cow")
    assert gate.substring("table") and gate.substring("cow") and not gate.substring("unicorn")


# ------------------------------------------------------------------------------------------- 3D depth rule


def column_depth():
    """10 x 10 map, 1 in columns 0-2. The script indexes depth[x_min:x_max, y_min:y_max] (x along rows), so
    a box's region is its transpose: box (0, 0, 10, 2) reads columns 0-1 (mean 1), not rows 0-1 (mean 0.3)."""
    depth = torch.zeros(10, 10)
    depth[:, 0:3] = 1.0
    return depth


def test_depth_position_uses_transposed_regions():
    b1, b2 = (0, 0, 10, 2), (0, 1, 10, 10)
    # means: b1 -> columns 0-1 = 1; b2 -> columns 1-9 = 2/9. IoU = 10 / (20 + 90 - 10) = 0.1 -> 0.1 / 0.5
    score, m1, m2 = depth_position("in front of", b1, b2, column_depth())
    assert (score, m1, m2) == (pytest.approx(0.2), pytest.approx(1.0), pytest.approx(2 / 9))
    assert depth_position("behind", b1, b2, column_depth())[0] == 0.0
    assert depth_position("hidden", b2, b1, column_depth())[0] == pytest.approx(0.2)
    assert depth_position(None, b1, b2, column_depth())[0] == 0.0


def test_depth_position_overlap_cases():
    depth = column_depth()
    big, inner = (0, 0, 10, 10), (0, 0, 10, 8)  # IoU 0.8 > 0.5: 1 if the order is right
    assert depth_position("in front of", inner, big, depth)[0] == 1.0  # means: columns 0-7 -> 3/8 > 3/10
    assert depth_position("behind", inner, big, depth)[0] == 0.0
    assert depth_position("in front of", (0, 0, 10, 2), (0, 5, 10, 10), depth)[0] == 0.0  # no overlap
    # an empty region (x_min == x_max after int()) has NaN mean: no comparison holds
    score, m1, _ = depth_position("in front of", (3.2, 0, 3.9, 5), (0, 0, 10, 10), depth)
    assert score == 0.0 and math.isnan(m1)


def test_spatial_3d_score():
    depth = column_depth()
    cat, dog = det("cat", (0, 0, 10, 2), 0.9), det("dog", (0, 1, 10, 10), 0.8)
    # 0.25 * 0.9 + 0.25 * 0.8 + 0.2 / 2, no 0.5 floor in 3D
    score, details = spatial_3d_score("cat", "dog", "in front of", [cat, dog], depth)
    assert score == pytest.approx(0.525) and details["depth_means"] == [1.0, round(2 / 9, 4)]
    assert spatial_3d_score("cat", "dog", "behind", [cat, dog], depth)[0] == pytest.approx(0.425)
    # substring matching: "cow" is found in "cattle, cow"; only one object -> 0.25 s
    assert spatial_3d_score("cow", "horse", "behind", [det("cattle, cow", (0, 0, 5, 5), 0.6)], depth)[
        0
    ] == pytest.approx(0.15)
    assert spatial_3d_score("cow", "horse", "behind", [dog], depth)[0] == 0.0


def test_spatial_3d_takes_the_last_obj1_match_before_obj2():
    """The script sets obj1's index at every match until both are set: cats at 0 and 1, dog at 2 -> cat 1."""
    depth = column_depth()
    cats_then_dog = [det("cat", (0, 5, 10, 10), 0.95), det("cat", (0, 0, 10, 2), 0.9), det("dog", (0, 1, 10, 10), 0.8)]
    score, details = spatial_3d_score("cat", "dog", "in front of", cats_then_dog, depth)
    assert score == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.1) and details["depth_means"][0] == 1.0


# ------------------------------------------------------------------------------------------- numeracy


def test_same_object_uses_plus_one_areas_and_containment():
    assert same_object((0, 0, 99, 99), (1, 1, 99, 99))  # IoU = 99*99 / 100*100 = 0.98
    assert same_object((0, 0, 9, 9), (0, 0, 99, 99))  # IoU 0.01, but the small box is 100 % inside
    assert not same_object((0, 0, 99, 99), (20, 0, 119, 99))  # IoU 80*100 / 12000, 80 % each
    # +1: (0, 0, 0, 0) has area 1 and lies inside the other
    assert same_object((0, 0, 0, 0), (0, 0, 50, 50))


def test_dedupe_only_within_a_label():
    a, dup, other_label = det("dog", (0, 0, 99, 99)), det("dog", (1, 1, 99, 99), 0.8), det("cat", (1, 1, 99, 99))
    assert dedupe([a, dup, other_label]) == [a, other_label]


def test_numeracy_score():
    dogs = [det("dog", (0, 0, 99, 99)), det("dog", (1, 1, 99, 99), 0.8), det("dog", (200, 0, 299, 99), 0.7)]
    # dog: 2 after de-duplication = asked -> 0.5 * 1/2 + 0.5 * 1/2; cat: absent -> 0
    score, details = numeracy_score(["dog", "cat"], [2, 1], dogs)
    assert score == pytest.approx(0.5)
    assert details["objects"] == [
        {"object": "dog", "wanted": 2, "found": 2},
        {"object": "cat", "wanted": 1, "found": 0},
    ]
    assert numeracy_score(["dog"], [3], dogs)[0] == pytest.approx(0.5)  # present, wrong count
    # a name inside a label renames those detections: "cow" counts "cattle, cow"
    cows = [det("cattle, cow", (0, 0, 50, 50)), det("cattle, cow", (100, 100, 150, 150))]
    assert numeracy_score(["cow"], [2], cows)[0] == pytest.approx(1.0)
    # a missing count (the parse's lists out of step) only matters once the object is found
    assert numeracy_score(["cat"], [], dogs)[0] == 0.0
    with pytest.raises(PromptRuleError, match="no parsed count"):
        numeracy_score(["dog"], [], dogs)


SINGULAR = ["dog", "cat", "sheep", "man", "ice cream"]
PLURAL = ["dogs", "cats", "sheep", "men", "ice creams"]


@pytest.mark.parametrize(
    "prompt, objects, counts",
    [
        ("two dogs", ["dog"], [2]),
        ("a cat and three dogs", ["cat", "dog"], [1, 3]),
        ("one sheep", ["sheep"], [1]),  # singular with a/an/one
        ("five sheep", ["sheep"], [5]),  # same word as a plural
        ("two ice creams and an ice cream", ["ice cream", "ice cream"], [2, 1]),  # two-word objects first
        ("a dogs", ["dog"], []),  # a plural after "a": word2number cannot read "a", no count is appended
        ("two men", ["man"], [2]),
    ],
)
def test_numeracy_objects(prompt, objects, counts):
    tokens = [Token(w, "X") for w in prompt.split(" ")]
    assert numeracy_objects(tokens, SINGULAR, PLURAL) == (objects, counts)


@pytest.mark.parametrize(
    "prompt, error",
    [("two dog", "singular noun"), ("the dogs", "no counted object"), ("dogs and two", "ends with the number")],
)
def test_numeracy_objects_where_the_script_fails(prompt, error):
    with pytest.raises(PromptRuleError, match=error):
        numeracy_objects([Token(w, "X") for w in prompt.split(" ")], SINGULAR, PLURAL)


def test_numeracy_renames():
    assert [
        numeracy_detector_name(o) for o in ("boy", "woman", "ship", "telivision", "goldfish", "painting", "dog")
    ] == ["person", "person", "boat", "tv", "fish", "picture", "dog"]


# ------------------------------------------------------------------------------------------- text rules


def test_pre_question_and_blip_questions():
    assert pre_question('A "Big" (red) dog!?  ') == "a big red dog?"
    assert pre_question("x" + " y" * 60) == " ".join(["x"] + ["y"] * 49)
    chunks = ["The red hat", "top", "the side", "the left", "the right", "the brown coat rack"]
    assert blip_questions(chunks) == ["the red hat?", "the brown coat rack?"]
    assert blip_questions([f"np{i}" for i in range(10)]) == [f"np{i}?" for i in range(8)]
    assert blip_questions([]) == []


def test_without_adjectives():
    tokens = toks(
        "The/DET red/ADJ hat/NOUN was/AUX on/ADP top/NOUN of/ADP the/DET brown/ADJ coat/NOUN rack/NOUN ./PUNCT"
    )
    assert without_adjectives(tokens) == "The hat was on top of the coat rack ."


def test_localities():
    assert find_locality("a bird on the top of a car", LOCALITIES_2D) == "on the top of"
    assert find_locality("a bird on top of a car", LOCALITIES_2D) == "on top of"
    assert find_locality("a bird nearby a car", LOCALITIES_2D) == "near"  # substring test
    assert find_locality("a dog on side of a cat near a car", LOCALITIES_2D) == "on side of"  # vocabulary order
    assert find_locality("a cat hidden behind a box", LOCALITIES_3D) == "behind"
    assert find_locality("a cat and a box", LOCALITIES_3D) is None


def test_simple_objects():
    tokens = toks("a/DET girl/NOUN on/ADP the/DET left/NOUN of/ADP a/DET red/ADJ car/NOUN")
    assert first_last_nouns(tokens) == ("girl", "car")
    assert [as_detector_name(x) for x in ("girl", "boy", "man", "woman", "car", None)] == ["person"] * 4 + ["car", None]
    with pytest.raises(PromptRuleError, match="no NOUN"):
        first_last_nouns(toks("it/PRON is/AUX red/ADJ"))


@pytest.mark.parametrize(
    "spec, objects",
    [
        # "on top of": nearest NOUN/PROPN before (hat), nearest NOUN after (coat, not rack)
        (
            "The/DET red/ADJ hat/NOUN was/AUX on/ADP top/NOUN of/ADP the/DET brown/ADJ coat/NOUN rack/NOUN ./PUNCT",
            ["hat", "coat"],
        ),
        # no NOUN after "near": the last PROPN of the first proper-noun run
        ("a/DET cat/NOUN near/ADP Big/PROPN Ben/PROPN ./PUNCT", ["cat", "Ben"]),
        ("a/DET cat/NOUN near/ADP Ben/PROPN", ["cat"]),  # the run must be followed by a token
        ("a/DET cat/NOUN is/AUX near/ADP", ["cat"]),  # k = 3 on a slice past the end: nothing after
        (
            "a/DET cat/NOUN on/ADP the/DET left/NOUN and/CCONJ a/DET dog/NOUN next/ADJ to/ADP a/DET box/NOUN",
            ["cat", "dog", "dog", "box"],
        ),  # two prepositions: four objects (scored 0)
        ("a/DET cat/NOUN and/CCONJ a/DET dog/NOUN", []),
    ],
)
def test_complex_spatial_objects(spec, objects):
    assert complex_spatial_objects(toks(spec)) == objects


# ------------------------------------------------------------------------------------------- 3-in-1


def test_combine():
    assert combine("spatial", attribute=0.6, spatial=0.8, action=0.3) == pytest.approx(0.7)
    assert combine("action", attribute=0.6, spatial=0.8, action=0.3) == pytest.approx(0.45)
    assert combine("all", attribute=0.6, spatial=0.8, action=0.3) == pytest.approx(1.7 / 3)


def test_complex_subsets(tmp_path):
    (tmp_path / "s.txt").write_text("The red hat was on top of the rack. It was old.\nA cat near a dog\n")
    (tmp_path / "a.txt").write_text("A man is riding a horse.")
    subsets = ComplexSubsets.load(tmp_path / "s.txt", tmp_path / "a.txt")
    assert complex_key("The red hat was on top of the rack. It was old.\n") == "the red hat was on top of the rack"
    assert subsets.kind("THE RED HAT WAS ON TOP OF THE RACK. Something else.") == "spatial"
    assert subsets.kind("A man is riding a horse.") == "action"
    assert subsets.kind("A man is riding a horse near a dog.") == "all"


def test_complex_subsets_of_the_val_prompts(shared_data):
    d = shared_data / "t2i_compbench"
    subsets = ComplexSubsets.load(d / "complex_val_spatial.txt", d / "complex_val_action.txt")
    kinds = [subsets.kind(p) for p in (d / "complex_val.txt").read_text().splitlines()]
    assert (kinds.count("spatial"), kinds.count("action"), kinds.count("all")) == (58, 212, 30)


# ------------------------------------------------------------------------------------------- sizes and files


def test_resize_sizes():
    assert unidet_frame_size(384, 384) == (479, 479)
    # 64 x 48: 479 x 638 would exceed 480, so the long side is 480 and the short int(480 * 479 / 638) = 360
    assert unidet_frame_size(64, 48) == (480, 360)
    assert unidet_frame_size(48, 64) == (360, 480)
    assert shortest_side_size(48, 40, 32) == (38, 32)  # int(32 * 48 / 40) = 38
    assert centre_crop_box(38, 32, 32) == (3, 0, 35, 32)
    assert centre_crop_box(33, 32, 32) == (0, 0, 32, 32)  # round(0.5) = 0 (round half to even)


def test_bad_benchmark_files(tmp_path):
    with pytest.raises(BenchmarkFileError, match="not found.*detection_features.pt"):
        load_unidet_labels(tmp_path / "missing.json")
    (tmp_path / "short.json").write_text(json.dumps(["cat", "dog"]))
    with pytest.raises(BenchmarkFileError, match="722 strings"):
        load_unidet_labels(tmp_path / "short.json")
    (tmp_path / "objects.txt").write_text("dog - dogs\ncat\n")
    with pytest.raises(BenchmarkFileError, match="line 2"):
        load_new_objects(tmp_path / "objects.txt")
    with pytest.raises(BenchmarkFileError, match="complex_val_spatial.txt.*not found.*T2I-CompBench"):
        ComplexSubsets.load(tmp_path / "nope.txt", tmp_path / "objects.txt")


def test_new_objects_file(shared_data):
    singular, plural = load_new_objects(shared_data / "t2i_compbench/new_objects.txt")
    assert len(singular) == len(plural) == 101
    assert plural[singular.index("knife")] == "knives" and plural[singular.index("sheep")] == "sheep"
