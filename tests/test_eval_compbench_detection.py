"""The GroundingDINO stand-in for UniDet on a tiny random GroundingDinoForObjectDetection saved and loaded back:
detections against a forward run here one (image, noun) at a time with boxes scaled, clipped and suppressed by
hand; then the 2D spatial and numeracy evaluators' parse, label gate and rules on top of it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.base import EvalItem, Fidelity
from evaluation.compbench.detection_rules import LabelGate, numeracy_score, spatial_2d_score
from evaluation.compbench.detector import GdinoDetector
from evaluation.compbench.files import load_new_objects, load_unidet_labels
from evaluation.compbench.numeracy import NumeracyEvaluator
from evaluation.compbench.spatial import Spatial2DEvaluator
from evaluation.local_files import MissingFilesError
from tests.tiny_compbench_models import require_spacy, threshold_between
from tests.tiny_reward_models import tiny_gdino_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = [(480, 360), (479, 479), (480, 360)]  # UniDet's frames of the three images below


@pytest.fixture(scope="module")
def gdino_dir(tmp_path_factory):
    return tiny_gdino_dir(tmp_path_factory.mktemp("gdino") / "model")


@pytest.fixture(scope="module")
def detector(gdino_dir):
    return GdinoDetector.load(gdino_dir, batch_size=2)


def images(n=3, seed=0):
    """64 x 48, 40 x 40, 64 x 48: two sizes, so a batch runs as two forwards."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(48, 64, 3), (40, 40, 3), (48, 64, 3)][:n]]


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@torch.no_grad()
def reference(detector, image, frame, noun, threshold=None):
    """All (box, score) of one noun on one image: caption "{noun}.", box score = max token probability, boxes in
    the frame clipped to it; with a threshold, those above it after greedy NMS at IoU 0.5."""
    px = detector.image_processor(images=[Image.fromarray(image)], return_tensors="pt")
    enc = detector.tokenizer([f"{noun}."], return_tensors="pt")
    out = detector.model(pixel_values=px.pixel_values, pixel_mask=px.pixel_mask, **enc)
    scores = out.logits[0, :, : enc.input_ids.shape[1]].sigmoid().max(-1).values.tolist()
    w, h = frame
    dets = []
    for (cx, cy, bw, bh), s in zip(out.pred_boxes[0].tolist(), scores):
        box = (
            min(max((cx - bw / 2) * w, 0), w),
            min(max((cy - bh / 2) * h, 0), h),
            min(max((cx + bw / 2) * w, 0), w),
            min(max((cy + bh / 2) * h, 0), h),
        )
        if box[2] > box[0] and box[3] > box[1]:
            dets.append((noun, box, s))
    if threshold is None:
        return dets
    kept = []
    for d in sorted((d for d in dets if d[2] > threshold), key=lambda d: -d[2]):
        if all(iou(d[1], k[1]) <= 0.5 for k in kept):
            kept.append(d)
    return kept


def assert_same(got, want):
    assert [d.label for d in got] == [w[0] for w in want]
    np.testing.assert_allclose([d.box for d in got], [w[1] for w in want], atol=1e-3)
    np.testing.assert_allclose([d.score for d in got], [w[2] for w in want], atol=1e-5)


def split_threshold(detector, nouns):
    return threshold_between(
        [d[2] for im, fr in zip(images(), FRAMES) for n in nouns for d in reference(detector, im, fr, n)]
    )


def test_detections_match_one_pair_at_a_time(detector):
    nouns = [["cat", "dog"], ["red apple"], ["dog", "cat", "dog"]]
    detector.score_threshold = split_threshold(detector, ["cat", "dog", "red apple"])
    detector.batch_size = 3
    got = detector.detect(images(), nouns)  # forwards of 4 rows (captions padded together) and of 1 row
    for dets, im, frame, ns in zip(got, images(), FRAMES, nouns):
        want = sorted(
            (d for n in dict.fromkeys(ns) for d in reference(detector, im, frame, n, detector.score_threshold)),
            key=lambda d: -d[2],
        )
        assert len(want) > 0
        assert_same(dets, want)
    assert detector.detect(images(), [[], [], []]) == [[], [], []]


def test_at_most_max_detections(detector):
    detector.score_threshold = 0.0
    detector.max_detections = 3
    try:
        got = detector.detect(images(1), [["cat", "dog"]])[0]
    finally:
        detector.max_detections = 300
    assert len(got) == 3 and [d.score for d in got] == sorted((d.score for d in got), reverse=True)


@pytest.fixture(scope="module")
def labels(shared_data):
    return load_unidet_labels(shared_data / "t2i_compbench/unidet_labels_722.json")


def test_spatial_2d_evaluator(detector, labels):
    require_spacy()
    prompts = ["a giraffe next to a lamp", "a mouse on side of a key"]
    detector.score_threshold = split_threshold(detector, ["giraffe", "lamp", "key"])
    evaluator = Spatial2DEvaluator(detector, LabelGate(labels))
    results = evaluator.score(images(2), [EvalItem("t2i_compbench", "spatial", p, i, 0) for i, p in enumerate(prompts)])
    # "mouse" is no exact UniDet label ("computer mouse" is): it is never asked about, and never found
    assert [r.details["asked"] for r in results] == [["giraffe", "lamp"], ["key"]]
    assert [(r.details["obj1"], r.details["obj2"], r.details["locality"]) for r in results] == [
        ("giraffe", "lamp", "next to"),
        ("mouse", "key", "on side of"),
    ]
    for r, im, frame, (o1, o2, loc) in zip(
        results, images(2), FRAMES, [("giraffe", "lamp", "next to"), ("mouse", "key", "on side of")]
    ):
        want = sorted(
            (d for n in r.details["asked"] for d in reference(detector, im, frame, n, detector.score_threshold)),
            key=lambda d: -d[2],
        )
        assert [d[0] for d in want] == [d[0] for d in r.details["detections"]]
        assert r.score == spatial_2d_score(o1, o2, loc, detector.detect([im], [r.details["asked"]])[0])[0]
    assert evaluator.name == "spatial@gdino" and evaluator.fidelity == Fidelity.substitute


def test_numeracy_evaluator(detector, labels, shared_data):
    require_spacy()
    singular, plural = load_new_objects(shared_data / "t2i_compbench/new_objects.txt")
    prompts = ["four cameras and three horses", "two boys"]
    detector.score_threshold = split_threshold(detector, ["camera", "horse", "person"])
    evaluator = NumeracyEvaluator(detector, LabelGate(labels), singular, plural)
    results = evaluator.score(
        images(2), [EvalItem("t2i_compbench", "numeracy", p, i, 0) for i, p in enumerate(prompts)]
    )
    assert [r.details["asked"] for r in results] == [["camera", "horse"], ["person"]]  # boy -> person
    for r, im, (objs, counts) in zip(results, images(2), [(["camera", "horse"], [4, 3]), (["person"], [2])]):
        assert [o["object"] for o in r.details["objects"]] == objs
        assert [o["wanted"] for o in r.details["objects"]] == counts
        assert r.score == numeracy_score(objs, counts, detector.detect([im], [objs])[0])[0]
    assert evaluator.name == "numeracy@gdino"


def test_loaders_check_their_files(tmp_path, gdino_dir, shared_data):
    with pytest.raises(MissingFilesError, match="does not exist.*IDEA-Research/grounding-dino-base"):
        GdinoDetector.load(tmp_path / "gdino")
    with pytest.raises(FileNotFoundError, match="UniDet label list.*not found"):
        Spatial2DEvaluator.load(gdino_dir, tmp_path / "labels.json")
