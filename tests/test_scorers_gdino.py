"""GroundingDINO scorer on a tiny random GroundingDinoForObjectDetection saved and loaded back through the
scorer's loader; detections checked against a hand-written forward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from core.records import PromptRecord
from rewards.base import ScorerInputError
from rewards.config import GdinoScorerConfig, RewardsConfig
from rewards.detection_rules import RuleParams
from rewards.registry import build_scorer
from rewards.scorers.common import ModelDirError
from rewards.scorers.gdino import GdinoScorer, caption_and_spans, first_and_last_word_spans, phrase_weights
from tests.tiny_reward_models import tiny_gdino_dir


@pytest.fixture(scope="module")
def gdino_dir(tmp_path_factory):
    return tiny_gdino_dir(tmp_path_factory.mktemp("gdino") / "model")


def images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (96, 96, 3), dtype=np.uint8) for _ in range(n)]


def rewards_cfg(path, compat=False, **kw) -> RewardsConfig:
    return RewardsConfig(gdino=GdinoScorerConfig(enabled=True, path=str(path), **kw), t2i_r1_compat=compat)


def manual_phrase_scores(scorer: GdinoScorer, imgs, words: list[list[str]], counted: list[list[str]]):
    """Independent path: tokenise the caption of the phrases ``words``, find the ids of each phrase's ``counted``
    words by vocabulary lookup, run the model on all images at once, and average the sigmoid over those
    positions. Returns [B, Q, P] scores and boxes."""
    caption = " . ".join(" ".join(w) for w in words) + "."
    enc = scorer.tokenizer([caption] * len(imgs), return_tensors="pt")
    ids = enc.input_ids[0].tolist()
    positions = [[ids.index(scorer.tokenizer.convert_tokens_to_ids(w)) for w in ws] for ws in counted]
    px = scorer.image_processor(images=[Image.fromarray(a) for a in imgs], return_tensors="pt")
    with torch.no_grad():
        out = scorer.model(pixel_values=px.pixel_values, pixel_mask=px.pixel_mask, **enc)
    prob = out.logits.sigmoid()
    return torch.stack([prob[:, :, pos].mean(-1) for pos in positions], -1), out.pred_boxes


def split_threshold(scores: torch.Tensor) -> float:
    """A threshold that splits this random model's queries: the middle of the widest gap between sorted scores
    in their middle half, so that no score sits within rounding of it."""
    v = scores.flatten().sort().values
    lo, hi = len(v) // 4, 3 * len(v) // 4
    i = lo + int((v[lo + 1 : hi + 1] - v[lo:hi]).argmax())
    return float(v[i] + v[i + 1]) / 2


def test_caption_matches_t2i_r1():
    assert caption_and_spans(["cat", "red apple"]) == ("cat . red apple.", [(0, 3), (6, 15)])


def test_caption_spans_of_first_and_last_words_are_t2i_r1s():
    # T2I-R1's make_detection_prompt on ["cat", "blue and red ball"]: [[0, 3]] and [[6, 10], [19, 23]]
    assert first_and_last_word_spans("cat", 0) == [(0, 3)]
    assert first_and_last_word_spans("blue and red ball", 6) == [(6, 10), (19, 23)]
    assert first_and_last_word_spans("red apple", 6) == [(6, 9), (10, 15)]


def test_phrase_weights_on_hand_built_probabilities(gdino_dir):
    """One query with a hand-chosen probability per caption token; "big" is three word pieces."""
    tokenizer = GdinoScorer.load(gdino_dir, GdinoScorerConfig()).tokenizer
    phrases = ["cat", "big red apple"]
    caption, _ = caption_and_spans(phrases)
    enc = tokenizer([caption], return_tensors="pt", return_offsets_mapping=True)
    assert tokenizer.convert_ids_to_tokens(enc.input_ids[0]) == [
        "[CLS]",
        "cat",
        ".",
        "b",
        "##i",
        "##g",
        "red",
        "apple",
        ".",
        "[SEP]",
    ]
    prob = torch.tensor([[0.0, 0.9, 0.05, 0.1, 0.2, 0.3, 0.8, 0.4, 0.05, 0.0]], dtype=torch.float64)
    offsets = enc.offset_mapping[0]
    default = prob @ phrase_weights(offsets, phrases).double().T
    compat = prob @ phrase_weights(offsets, phrases, t2i_r1_compat=True).double().T
    # Default: every token of the phrase. T2I-R1: the tokens of "big" and "apple" ("red" left out), normalised
    # by their count + 1e-6 as GroundingDINO's create_positive_map_from_span does.
    torch.testing.assert_close(default, torch.tensor([[0.9, (0.1 + 0.2 + 0.3 + 0.8 + 0.4) / 5]], dtype=torch.float64))
    torch.testing.assert_close(
        compat,
        torch.tensor([[0.9 / (1 + 1e-6), (0.1 + 0.2 + 0.3 + 0.4) / (4 + 1e-6)]], dtype=torch.float64),
        rtol=1e-7,
        atol=0,
    )


@pytest.mark.parametrize("compat", [False, True])
def test_detections_match_manual_forward(gdino_dir, compat):
    imgs = images(3)
    phrases = ["cat", "blue and red ball"]
    words = [p.split() for p in phrases]
    counted = [["cat"], ["blue", "ball"] if compat else ["blue", "and", "red", "ball"]]  # T2I-R1: first, last word
    probe = GdinoScorer.load(gdino_dir, GdinoScorerConfig())
    want, boxes = manual_phrase_scores(probe, imgs, words, counted)
    threshold = split_threshold(want)
    scorer = build_scorer("gdino", rewards_cfg(gdino_dir, compat=compat, box_threshold=threshold, batch_size=2))
    dets = scorer.detect(imgs, phrases)
    for i, d in enumerate(dets):
        for j, phrase in enumerate(phrases):
            keep = want[i, :, j] > threshold
            torch.testing.assert_close(d[phrase].scores, want[i, keep, j], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(d[phrase].boxes, boxes[i, keep], atol=1e-5, rtol=1e-4)
    assert 0 < sum(len(d[p]) for d in dets for p in d) < 3 * 2 * scorer.model.config.num_queries

    # Object rule end to end: the fraction of nouns with at least one box above the threshold.
    prompt = PromptRecord(prompt="a cat and a blue and red ball", task_type="object", nouns=phrases)
    got = [s.score for s in scorer.score(prompt, imgs)]
    assert got == pytest.approx([float((want[i] > threshold).any(0).float().mean()) for i in range(3)])


def test_batching_does_not_change_scores(gdino_dir):
    imgs = images(4, seed=1)
    prompt = PromptRecord(
        prompt="a dog left of a cat",
        task_type="spatial",
        nouns=["dog", "cat"],
        spatial_info={"obj1": "dog", "obj2": "cat", "locality": "left of"},
    )
    one = build_scorer("gdino", rewards_cfg(gdino_dir, box_threshold=0.0, batch_size=1)).score(prompt, imgs)
    four = build_scorer("gdino", rewards_cfg(gdino_dir, box_threshold=0.0, batch_size=4)).score(prompt, imgs)
    assert [s.score for s in one] == pytest.approx([s.score for s in four], abs=1e-6)
    # Threshold 0 keeps every query for both objects: 0.4 for presence plus half a position score.
    assert all(0.4 <= s.score <= 0.9 for s in one)
    assert set(one[0].details) >= {"obj1_found", "obj2_found", "position", "boxes"}
    json.dumps([s.details for s in one])  # details travel on the wire as JSON


def test_compat_switch_reaches_the_rules(gdino_dir):
    compat = build_scorer("gdino", rewards_cfg(gdino_dir, compat=True, box_threshold=0.0))
    fixed = build_scorer("gdino", rewards_cfg(gdino_dir, box_threshold=0.0))
    assert compat.params == RuleParams(t2i_r1_compat=True) and fixed.params == RuleParams()
    assert compat.version != fixed.version
    # "above" never gets position credit in compat mode: exactly the 0.4 presence score.
    prompt = PromptRecord(
        prompt="a dog above a cat",
        task_type="spatial",
        nouns=["dog", "cat"],
        spatial_info={"obj1": "dog", "obj2": "cat", "locality": "above"},
    )
    assert [s.score for s in compat.score(prompt, images(2))] == pytest.approx([0.4, 0.4])


def test_bad_input(gdino_dir):
    scorer = build_scorer("gdino", rewards_cfg(gdino_dir))
    with pytest.raises(ScorerInputError, match="unknown task_type 'poem'"):
        scorer.score(PromptRecord(prompt="x", task_type="poem", nouns=["cat"]), images(1))
    with pytest.raises(ScorerInputError, match="'numeracy_info'"):
        scorer.score(PromptRecord(prompt="two cats", task_type="numeracy", nouns=["cat"]), images(1))
    with pytest.raises(ScorerInputError, match="empty group"):
        scorer.score(PromptRecord(prompt="a cat", task_type="object", nouns=["cat"]), [])
    long_nouns = [f"cat{i}" for i in range(20)]
    with pytest.raises(ScorerInputError, match="reads at most 32"):
        scorer.score(PromptRecord(prompt="many", task_type="object", nouns=long_nouns), images(1))


def test_missing_directory(tmp_path):
    with pytest.raises(ModelDirError, match="rewards.gdino.path"):
        build_scorer("gdino", RewardsConfig())
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        ModelDirError, match="missing preprocessor_config.json or processor_config.json; tokenizer.json or vocab.json"
    ):
        build_scorer("gdino", rewards_cfg(tmp_path))
