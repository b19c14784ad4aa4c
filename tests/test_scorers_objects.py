"""The embedded object-presence scorer with its real packaged weights (EfficientNet-Lite0 + all-MiniLM-L6-v2),
on pictures drawn with PIL for the test: a crossword grid and an analog clock face, which the ImageNet
classifier recognises, and noise, which it does not. One scorer load for the whole module."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.records import PromptRecord
from rewards.base import ScorerInputError
from rewards.config import ObjectsScorerConfig, RewardsConfig
from rewards.effnet_lite0 import EfficientNetLite0, load_efficientnet_lite0, packaged_weights
from rewards.registry import build_scorer
from rewards.scorers.objects import ObjectPresenceScorer, classifier_input, imagenet_classes

SIZE = 384  # Janus-Pro's image size


def crossword(seed=0) -> np.ndarray:
    im = Image.new("RGB", (SIZE, SIZE), "white")
    d = ImageDraw.Draw(im)
    n, cell = 12, SIZE // 12
    rng = np.random.default_rng(seed)
    for r in range(n):
        for c in range(n):
            if rng.random() < 0.25:
                d.rectangle([c * cell, r * cell, (c + 1) * cell, (r + 1) * cell], fill="black")
    for i in range(n + 1):
        d.line([(0, i * cell), (SIZE, i * cell)], fill="black", width=2)
        d.line([(i * cell, 0), (i * cell, SIZE)], fill="black", width=2)
    return np.asarray(im)


def clock() -> np.ndarray:
    im = Image.new("RGB", (SIZE, SIZE), (200, 200, 200))
    d = ImageDraw.Draw(im)
    c, r = SIZE // 2, 160
    d.ellipse([c - r, c - r, c + r, c + r], fill="white", outline="black", width=8)
    for k in range(12):
        a = k * math.pi / 6
        d.line(
            [
                (c + 0.8 * r * math.sin(a), c - 0.8 * r * math.cos(a)),
                (c + 0.95 * r * math.sin(a), c - 0.95 * r * math.cos(a)),
            ],
            fill="black",
            width=6,
        )
    d.line([(c, c), (c + 0.5 * r * math.sin(1.0), c - 0.5 * r * math.cos(1.0))], fill="black", width=10)
    d.line([(c, c), (c + 0.8 * r * math.sin(4.0), c - 0.8 * r * math.cos(4.0))], fill="black", width=6)
    return np.asarray(im)


def noise() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def scorer() -> ObjectPresenceScorer:
    cfg = RewardsConfig(objects=ObjectsScorerConfig(enabled=True, min_similarity=0.7, batch_size=2))
    return build_scorer("objects", cfg)


def test_class_list_and_strict_weights():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0].lemmas[0] == "tench" and classes[918].lemmas[0] == "crossword puzzle"
    assert "taxi" in classes[468].lemmas
    import torch

    state = torch.load(packaged_weights(), map_location="cpu", weights_only=True)
    ours = EfficientNetLite0().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    assert sum(v.numel() for v in state.values()) == 4_694_073  # as counted in shared/notes/reward_models.md


def test_classifier_recognises_drawn_pictures(scorer):
    probs = scorer.class_probs([crossword(), clock(), noise()])
    top = [scorer.classes[int(i)].lemmas[0] for i in probs.argmax(-1)]
    assert top[:2] == ["crossword puzzle", "analog clock"]
    assert probs[0, 918] > 0.8
    assert probs[1, 409] + probs[1, 892] > 0.8  # analog clock + wall clock
    assert probs[2].max() < 0.2  # noise: no confident class


def test_preprocessing():
    x = classifier_input([np.full((300, 400, 3), 255, np.uint8), np.zeros((50, 50, 3), np.uint8)])
    assert x.shape == (2, 3, 224, 224)
    assert float(x[0].min()) == 1.0 and float(x[1].max()) == -1.0


def test_presence_scores(scorer):
    imgs = [crossword(), clock(), noise()]
    words = scorer.score(PromptRecord(prompt="a crossword", nouns=["crossword"]), imgs)
    assert words[0].score > 0.8 and words[1].score < 0.05 and words[2].score < 0.05
    assert words[0].details["classes"] == {"crossword": {"crossword puzzle": 1.0}}
    clocks = scorer.score(PromptRecord(prompt="an analog clock", nouns=["analog clock"]), imgs)
    assert clocks[1].score > 0.5 and clocks[0].score < 0.05
    # A noun with no ImageNet class is left out and reported; the others still count.
    mixed = scorer.score(PromptRecord(prompt="a crossword and a giraffe", nouns=["crossword", "giraffe"]), imgs)
    assert [s.score for s in mixed] == pytest.approx([s.score for s in words])
    assert mixed[0].details["unmatched_nouns"] == ["giraffe"]
    json.dumps([s.details for s in mixed])  # details travel on the wire as JSON


def test_synonym_lemma_and_batching(scorer):
    # "taxi" is a lemma of ImageNet's "cab": matched exactly, whatever the embedding says.
    assert scorer.noun_classes(["taxi"])["taxi"] == {468: 1.0}
    imgs = [crossword(1), clock(), noise()]
    prompt = PromptRecord(prompt="a crossword next to a clock", nouns=["crossword", "clock"])
    batched = [s.score for s in scorer.score(prompt, imgs)]
    scorer.batch_size = 1
    try:
        single = [s.score for s in scorer.score(prompt, imgs)]
    finally:
        scorer.batch_size = 2
    assert batched == pytest.approx(single, abs=1e-5)


def test_unjudgeable_and_bad_prompts(scorer):
    out = scorer.score(PromptRecord(prompt="a person", nouns=["person"]), [noise(), crossword()])
    assert [s.score for s in out] == [0.0, 0.0] and out[0].details["unmatched_nouns"] == ["person"]
    with pytest.raises(ScorerInputError, match="'nouns'"):
        scorer.score(PromptRecord(prompt="a crossword"), [crossword()])
    with pytest.raises(ScorerInputError, match="empty group"):
        scorer.score(PromptRecord(prompt="a crossword", nouns=["crossword"]), [])


def test_loader_is_strict(tmp_path):
    import torch

    state = torch.load(packaged_weights(), map_location="cpu", weights_only=True)
    del state["_fc.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(RuntimeError, match="_fc.bias"):
        load_efficientnet_lite0(tmp_path / "broken.pth")
