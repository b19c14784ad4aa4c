"""The complex (3-in-1) evaluator on the tiny BLIP-VQA, CLIP and GroundingDINO: each prompt combined by its
sub-list from its own evaluators' scores, and only the parts its sub-list uses computed."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.base import EvalItem, Fidelity
from evaluation.compbench.blip_vqa import BlipVqaEvaluator
from evaluation.compbench.clipscore import ClipScoreEvaluator
from evaluation.compbench.complex import ComplexEvaluator
from evaluation.compbench.detection_rules import LabelGate
from evaluation.compbench.detector import GdinoDetector
from evaluation.compbench.files import load_unidet_labels
from evaluation.compbench.spatial import Spatial2DEvaluator
from evaluation.compbench.three_in_one import ComplexSubsets
from tests.tiny_compbench_models import require_spacy, tiny_blip_vqa_dir
from tests.tiny_reward_models import tiny_clip_dir, tiny_gdino_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPATIAL = "The red hat was on top of the brown coat rack."
ACTION = "A man is riding a brown horse."
BOTH = "A small cat is chasing a ball next to the green sofa."


@pytest.fixture(scope="module")
def parts(tmp_path_factory, shared_data):
    require_spacy()
    root = tmp_path_factory.mktemp("complex")
    blip = BlipVqaEvaluator.load(tiny_blip_vqa_dir(root / "blip"), image_size=40)
    clip = ClipScoreEvaluator.load(tiny_clip_dir(root / "clip"), complex_text=True)
    detector = GdinoDetector.load(tiny_gdino_dir(root / "gdino"), score_threshold=0.0)
    gate = LabelGate(load_unidet_labels(shared_data / "t2i_compbench/unidet_labels_722.json"))
    return blip, clip, Spatial2DEvaluator(detector, gate, complex_parse=True)


def test_three_in_one(parts):
    blip, clip, spatial = parts
    subsets = ComplexSubsets(
        spatial=frozenset([SPATIAL.split(".")[0].lower()]), action=frozenset([ACTION.split(".")[0].lower()])
    )
    evaluator = ComplexEvaluator(blip, clip, spatial, subsets)
    prompts = [SPATIAL, ACTION, BOTH, ACTION]
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in prompts]
    items = [EvalItem("t2i_compbench", "complex", p, i // 2, i % 2) for i, p in enumerate(prompts)]
    results = evaluator.score(imgs, items)

    def alone(ev, i):
        return ev.score([imgs[i]], [items[i]])[0].score

    attr = [alone(blip, i) for i in range(4)]
    assert results[0].score == pytest.approx((alone(spatial, 0) + attr[0]) / 2)
    assert results[1].score == pytest.approx((alone(clip, 1) + attr[1]) / 2)
    assert results[2].score == pytest.approx((attr[2] + alone(spatial, 2) + alone(clip, 2)) / 3)
    assert [r.details["kind"] for r in results] == ["spatial", "action", "all", "action"]
    # only what the sub-list needs: no CLIP for the spatial prompt, no detector for the action prompts
    assert [sorted(k for k in r.details if k != "kind") for r in results] == [
        ["attribute", "spatial"],
        ["action", "attribute"],
        ["action", "attribute", "spatial"],
        ["action", "attribute"],
    ]
    # the complex parse: objects around the preposition, and the complex CLIP text
    assert (results[0].details["spatial"]["obj1"], results[0].details["spatial"]["obj2"]) == ("hat", "coat")
    assert results[1].details["action"]["text"] == "A man is riding a horse ."
    assert evaluator.fidelity == Fidelity.substitute


def test_needs_the_complex_modes(parts, tmp_path):
    blip, clip, spatial = parts
    plain = ClipScoreEvaluator(clip.model, clip.tokenizer)
    with pytest.raises(ValueError, match="complex_text=True"):
        ComplexEvaluator(blip, plain, spatial, ComplexSubsets(frozenset(), frozenset()))
