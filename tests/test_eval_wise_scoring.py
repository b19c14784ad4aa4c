"""WISE answer parsing, WiScore, category ranges and the weighted summaries, worked by hand."""

from __future__ import annotations

import math

import pytest

from evaluation.wise.scoring import parse_legacy, parse_verified, strip_think, summarize, wiscore
from evaluation.wise.variants import LEGACY, VERIFIED, variant


def test_strip_think():
    assert strip_think("<think>\nlet me see\n</think>\n\nScore: 1\n") == "Score: 1"
    assert strip_think("<think>a</think> x <think>b</think>y") == "x y"
    assert strip_think("reasoning</think>\n Score: 0") == "reasoningScore: 0"  # a stray closing tag
    assert strip_think("  Score: 0  ") == "Score: 0"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Score: 1", 1.0),
        ("Score: 0", 0.0),
        ("**Score**: 1", 1.0),  # markdown bold around the word
        ("**Score:** 0", None),  # bold closes after the colon: the official pattern does not match
        ("score 1", 1.0),  # case-insensitive, colon optional
        ("The image fits.\nScore:0\nScore: 1", 0.0),  # the first match
        ("Score: 10", None),  # \b after the digit
        ("Score: 2", None),
        ("Score：1", None),  # full-width colon: the official class [::] is ASCII only
        ("The answer is\n1\n", 1.0),  # a lone 0/1 line when there is exactly one
        ("0\n1", None),
        ("", None),
    ],
)
def test_parse_verified(answer, expected):
    assert parse_verified(answer) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Consistency: 2\nRealism: 1\nAesthetic Quality: 0", (2, 1, 0)),
        ("**Consistency**: 1\n**Realism**: 1\n**Aesthetic Quality**: 2", (1, 1, 2)),
        ("consistency 1, REALISM 0, aesthetic quality 1", (1, 0, 1)),
        ("Consistency: 1\nRealism: 2\nAesthetic Quality: 2\nConsistency: 0", (0, 2, 2)),  # the last one wins
        ("2\n1\n0\n", (2, 1, 0)),  # three lone 0-2 lines, in rubric order
        ("Consistency: 2\nRealism: 1", None),  # one missing
        ("Consistency: 2\n1\n0\n1", None),  # a named score found: no fall-back to lone lines
        ("nothing here", None),
    ],
)
def test_parse_legacy(answer, expected):
    got = parse_legacy(answer)
    assert (None if got is None else (got["consistency"], got["realism"], got["aesthetic_quality"])) == expected


def test_wiscore():
    assert wiscore(2, 1, 0) == pytest.approx(0.8)  # (1.4 + 0.2 + 0) / 2
    assert wiscore(1, 0, 2) == pytest.approx(0.45)  # (0.7 + 0 + 0.2) / 2
    assert wiscore(2, 2, 2) == pytest.approx(1.0)
    assert wiscore(0, 0, 0) == 0.0


@pytest.mark.parametrize(
    "v, bounds",
    [
        (
            VERIFIED,
            [
                (1, "Culture"),
                (400, "Culture"),
                (401, "Time"),
                (520, "Time"),
                (521, "Space"),
                (640, "Space"),
                (641, "Biology"),
                (760, "Biology"),
                (761, "Physics"),
                (880, "Physics"),
                (881, "Chemistry"),
                (1000, "Chemistry"),
            ],
        ),
        (
            LEGACY,
            [
                (400, "Culture"),
                (401, "Time"),
                (567, "Time"),
                (568, "Space"),
                (700, "Space"),
                (701, "Biology"),
                (800, "Biology"),
                (801, "Physics"),
                (900, "Physics"),
                (901, "Chemistry"),
                (1000, "Chemistry"),
            ],
        ),
    ],
)
def test_category_ranges(v, bounds):
    assert [v.category(pid) for pid, _ in bounds] == [c for _, c in bounds]
    with pytest.raises(ValueError, match="outside 1-1000"):
        v.category(1001)
    with pytest.raises(ValueError, match="outside"):
        v.category(0)


# Culture 1,0,1,1 (+ one unparsed) -> .75; Time 0,1 -> .5; Space 1; Biology 0; Physics 1,1; Chemistry 0,1 -> .5
VERIFIED_IDS = [1, 2, 3, 4, 5, 401, 402, 521, 641, 761, 762, 881, 882]
SCORES = [1, 0, 1, 1, math.nan, 0, 1, 1, 0, 1, 1, 0, 1]


def test_summary_verified_weights():
    s = summarize(VERIFIED, VERIFIED_IDS, SCORES)
    assert s["categories"] == {
        "Culture": 0.75,
        "Time": 0.5,
        "Space": 1.0,
        "Biology": 0.0,
        "Physics": 1.0,
        "Chemistry": 0.5,
    }
    assert s["overall"] == pytest.approx(0.4 * 0.75 + 0.12 * (0.5 + 1.0 + 0.0 + 1.0 + 0.5))  # 0.66
    assert s["unparsed"] == [5] and s["images"]["Culture"] == 4 and not s["complete"]
    assert s["metric"] == "wise_verified@qwen3.5"


def test_summary_legacy_weights_and_ranges():
    # the same scores on legacy ids: 402 is Time, 568 Space, 701 Biology, 801/802 Physics, 901/902 Chemistry
    ids = [1, 2, 3, 4, 5, 401, 402, 568, 701, 801, 802, 901, 902]
    s = summarize(LEGACY, ids, SCORES)
    assert s["overall"] == pytest.approx(0.4 * 0.75 + 0.167 * 0.5 + 0.133 * 1.0 + 0.1 * (0.0 + 1.0 + 0.5))  # .6665
    # the boundary between Time and Space differs between the protocols
    assert summarize(VERIFIED, [520, 521], [1, 0])["categories"] == {"Time": 1.0, "Space": 0.0}
    assert summarize(LEGACY, [520, 521], [1, 0])["categories"] == {"Time": 0.5}


def test_summary_needs_every_category_for_the_overall():
    s = summarize(VERIFIED, [1, 401, 521, 641, 761], [1, 1, 1, 1, 1])  # no Chemistry
    assert s["overall"] is None and s["categories"]["Culture"] == 1.0
    full = summarize(VERIFIED, list(range(1, 1001)), [1.0] * 1000)
    assert full["complete"] and full["overall"] == pytest.approx(1.0)
    assert not summarize(VERIFIED, list(range(1, 1001)), [1.0] * 999 + [math.nan])["complete"]


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown WISE variant 'verfied'"):
        variant("verfied")
