"""The embedded colour rule and the scorer registry, on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.config import load_config
from core.records import PromptRecord
from rewards.base import ScorerInputError
from rewards.config import SCORER_NAMES, RewardsConfig
from rewards.registry import BUILDERS, build_scorer
from rewards.scorers.color import ColorScorer, color_words, srgb_to_lab


def solid(rgb, h=16, w=16):
    return np.full((h, w, 3), rgb, dtype=np.uint8)


def score(prompt, images, **kw):
    return [s.score for s in ColorScorer(**kw).score(PromptRecord(prompt=prompt), images)]


def test_lab_matches_published_values():
    # Reference CIELAB (D65) values of sRGB primaries, e.g. from Bruce Lindbloom's calculator.
    got = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8))
    want = np.array([[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [87.73, -86.18, 83.18], [32.30, 79.19, -107.86]])
    np.testing.assert_allclose(got, want, atol=0.05)


def test_color_words():
    assert color_words("A Grey cat and a golden retriever next to a grey dog") == ["gray", "gold"]
    assert color_words("a red car and a blue house") == ["red", "blue"]
    assert color_words("a reddish redwood tree") == []  # whole words only


def test_pure_colors_score_high_for_their_word_low_for_others():
    red, blue = solid((255, 0, 0)), solid((0, 0, 255))
    assert score("a red apple", [red])[0] > 0.9
    assert score("a blue car", [red])[0] < 0.05
    assert score("a blue car", [blue])[0] > 0.9
    assert score("a black dog", [solid((0, 0, 0))])[0] == pytest.approx(1.0)
    assert score("a white dog", [solid((0, 0, 0))])[0] < 0.15  # dE = 100: the kernel's tail, (1 + (80/30)^2)^-1


def test_kernel_by_hand():
    # One colour: score = mean over pixels of 1 / (1 + (max(0, dE - radius) / scale)^2).
    # Black vs white is dE = 100 exactly; black vs black 0.
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = 255  # one white pixel, three black
    assert score("a black cat", [img], radius=20.0, scale=40.0)[0] == pytest.approx((3 + 1 / (1 + 4)) / 4, abs=1e-6)
    assert score("a black cat", [img], radius=0.0, scale=25.0)[0] == pytest.approx((3 + 1 / (1 + 16)) / 4, abs=1e-6)


def test_two_colours_each_need_their_share():
    half = solid((220, 20, 30))  # a darker red and a lighter blue than the prototypes, within their radius
    half[:, 8:] = (20, 70, 240)
    s_half, s_red = score("a red car and a blue house", [half, solid((220, 20, 30))])
    assert s_half == pytest.approx(1.0, abs=0.01)
    assert 0.45 < s_red < 0.6


def test_independent_of_image_size_and_deterministic():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(img, 5, axis=0), 5, axis=1)  # nearest-neighbour upscale: same pixel proportions
    a, b = score("a green frog on a pink leaf", [img, big])
    assert a == pytest.approx(b, rel=1e-12)
    assert score("a green frog on a pink leaf", [img]) == score("a green frog on a pink leaf", [img])


def test_smooth_climb_from_grey_to_red():
    # A policy that makes its pixels a little redder must always see a higher score (no flat zero region).
    grey, red = np.array([90, 100, 110.0]), np.array([220, 20, 30.0])
    imgs = [solid(np.round(grey + t * (red - grey)).astype(np.uint8)) for t in np.linspace(0, 1, 21)]
    s = score("a red apple", imgs)
    assert all(b > a for a, b in zip(s, s[1:]))
    assert s[0] > 0.02  # even a dull grey-blue sits on the kernel's tail


def test_prompt_without_colour_scores_zero():
    out = ColorScorer().score(PromptRecord(prompt="a photo of a dog"), [solid((255, 0, 0)), solid((0, 0, 0))])
    assert [o.score for o in out] == [0.0, 0.0]
    assert out[0].details["colors"] == []


def test_bad_input():
    s = ColorScorer()
    with pytest.raises(ScorerInputError, match="empty group"):
        s.score(PromptRecord(prompt="a red apple"), [])
    with pytest.raises(ScorerInputError, match="image 1"):
        s.score(PromptRecord(prompt="a red apple"), [solid((1, 2, 3)), np.zeros((4, 4, 3), np.float32)])


def test_registry_covers_config_and_builds_color():
    assert set(BUILDERS) == set(SCORER_NAMES)
    cfg = load_config(overrides=["rewards.color.scale=10", "rewards.color.radius=5"])
    scorer = build_scorer("color", cfg.rewards)
    assert isinstance(scorer, ColorScorer) and (scorer.radius, scorer.scale) == (5, 10) and scorer.name == "color"
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        build_scorer("nope", RewardsConfig())
