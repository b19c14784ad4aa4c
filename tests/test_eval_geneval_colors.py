"""GenEval's colour classifier (masked crop on grey, open_clip's preprocessing without torchvision, the
three-template zero-shot classifier) against transformers' own CLIP processor and feature functions on a tiny
random CLIP; then the whole GenEval evaluator on tiny models, checked against those references."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

from evaluation.base import EvalItem, Fidelity
from evaluation.geneval.colors import OPENAI_MEAN, OPENAI_STD, ColorClassifier, clip_pixels, object_crop
from evaluation.geneval.evaluator import GenevalEvaluator
from evaluation.geneval.prompts import COLORS
from evaluation.geneval.rules import select_objects
from evaluation.local_files import MissingFilesError
from tests.tiny_eval_models import TINY_DETECTOR_CLASSES, block_scene, tiny_mask2former_dir
from tests.tiny_reward_models import clip_files, tiny_clip_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_object_crop_composites_on_grey_and_crops_to_the_box():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    mask = np.zeros((4, 5), bool)
    mask[1, 1] = mask[2, 2] = True
    crop = np.asarray(object_crop(image, mask, (1.0, 1.0, 3.0, 3.0)))  # mask2bbox box of that mask
    assert crop.shape == (2, 2, 3)
    np.testing.assert_array_equal(crop[0, 0], image[1, 1])
    np.testing.assert_array_equal(crop[1, 1], image[2, 2])
    np.testing.assert_array_equal(crop[0, 1], [153, 153, 153])  # "#999" where the mask is off
    np.testing.assert_array_equal(crop[1, 0], [153, 153, 153])


def test_center_crop_offset_rounds_like_torchvision():
    # 35 x 32 at size 32: no resize; torchvision's offset int(round(3 / 2)) = 2 (transformers' processor uses 1)
    cols = np.repeat(np.arange(35, dtype=np.uint8)[None, :, None] * 7, 32, axis=0).repeat(3, axis=2)
    got = clip_pixels([Image.fromarray(cols)], 32)[0, 0].numpy()
    want = (cols[:, 2:34, 0] / 255.0 - OPENAI_MEAN[0]) / OPENAI_STD[0]
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip"))


def crops_for_test():
    rng = np.random.default_rng(3)
    # sizes whose centre-crop offsets are even, where torchvision's and transformers' rounding agree
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(40, 40), (40, 48), (30, 20)]]


@functools.lru_cache(maxsize=1)
def reference_clip(path):
    return CLIPModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def reference_similarities(path, pixels, cls_names):
    """transformers' CLIP feature functions and the zero-shot classifier written out, each template encoded
    alone (no padding)."""
    model, tok = reference_clip(path)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pixels)
        img = F.normalize(img.pooler_output, dim=-1)
        rows = []
        for feat, cls in zip(img, cls_names):
            cols = []
            for c in COLORS:
                texts = [f"a photo of a {c} {cls}", f"a photo of a {c}-colored {cls}", f"a photo of a {c} object"]
                emb = torch.stack(
                    [
                        F.normalize(model.get_text_features(**tok([t], return_tensors="pt")).pooler_output[0], dim=-1)
                        for t in texts
                    ]
                ).mean(0)
                cols.append(emb / emb.norm())
            rows.append(feat @ torch.stack(cols, dim=1))
    return torch.stack(rows)


def test_color_classifier_matches_transformers_clip(tiny_clip):
    clf = ColorClassifier.load(tiny_clip, batch_size=2)
    crops = crops_for_test()
    names = ["car", "teddy bear", "car"]
    # our preprocessing equals transformers' CLIPImageProcessorPil on these sizes
    proc = CLIPImageProcessorPil.from_pretrained(tiny_clip)
    torch.testing.assert_close(
        clip_pixels(crops, 32), proc(images=crops, return_tensors="pt").pixel_values, atol=1e-5, rtol=0
    )
    got = clf.similarities(crops, names)
    want = reference_similarities(tiny_clip, proc(images=crops, return_tensors="pt").pixel_values, names)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert clf.classify(crops, names) == [COLORS[i] for i in want.argmax(1)]
    assert clf.classify([], []) == []


def test_missing_clip_dir(tmp_path):
    with pytest.raises(
        MissingFilesError,
        match=r"colour classifier \(CLIP ViT-L/14\) model directory .*does not exist.*"
        r"openai/clip-vit-large-patch14",
    ):
        ColorClassifier.load(tmp_path / "nowhere")
    clip_files(tmp_path / "partial")  # tokenizer and processor, no weights or config
    with pytest.raises(MissingFilesError, match=r"incomplete: missing config\.json; model\.safetensors"):
        ColorClassifier.load(tmp_path / "partial")


# ------------------------------------------------------------------------------------------ whole evaluator


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory, tiny_clip):
    root = tmp_path_factory.mktemp("geneval")
    det = tiny_mask2former_dir(root / "m2f")
    prompts = root / "prompts"
    prompts.mkdir()
    (prompts / "object_names.txt").write_text("\n".join(TINY_DETECTOR_CLASSES) + "\n")
    (prompts / "evaluation_metadata.jsonl").write_text(
        json.dumps({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"})
        + "\n"
    )
    return GenevalEvaluator.load(det, tiny_clip, prompts, batch_size=2)


def item(meta, i=0):
    return EvalItem(
        benchmark="geneval", category=meta["tag"], prompt=meta["prompt"], prompt_index=i, sample_index=0, metadata=meta
    )


def test_evaluator_against_references(evaluator, tiny_clip):
    assert evaluator.fidelity == Fidelity.substitute and "detectron2" in evaluator.fidelity_note
    images = [block_scene(32, 32, 0), block_scene(48, 32, 1), block_scene(32, 32, 2)]
    objects = [select_objects(d, TINY_DETECTOR_CLASSES, "colors") for d in evaluator.detector.detect(images)]
    assert all(objects), "every test scene needs a detection above 0.3 for the colour checks below"
    best = [max(o, key=lambda c: o[c][0].score) for o in objects]  # class of each image's best detection

    # the colour of an object, by the transformers reference, from a crop assembled here
    def ref_color(i, cls, k=0):
        d = objects[i][cls][k]
        x0, y0, x1, y1 = (int(v) for v in d.box)
        crop = np.where(d.mask[..., None], images[i], 153).astype(np.uint8)[y0:y1, x0:x1]
        # crops of any size: our preprocessing (checked above against transformers' processor and torchvision's
        # rounding), transformers' features
        sims = reference_similarities(tiny_clip, clip_pixels([Image.fromarray(crop)], 32), [cls])
        return COLORS[int(sims.argmax())]

    c0, c1 = ref_color(0, best[0]), ref_color(1, best[1])
    other = next(c for c in COLORS if c != c0)
    absent = next(c for c in TINY_DETECTOR_CLASSES if c not in objects[2])
    metas = [
        {"tag": "colors", "include": [{"class": best[0], "count": 1, "color": c0}], "prompt": "right colour"},
        {
            "tag": "color_attr",
            "include": [{"class": best[1], "count": 1, "color": c1}, {"class": best[0], "count": 1, "color": other}],
            "prompt": "two clauses",
        },
        {"tag": "single_object", "include": [{"class": absent, "count": 1}], "prompt": "absent class"},
        {"tag": "colors", "include": [{"class": best[0], "count": 1, "color": other}], "prompt": "wrong colour"},
    ]
    batch = [images[0], images[1], images[2], images[0]]
    got = evaluator.score(batch, [item(m, i) for i, m in enumerate(metas)])

    assert got[0].score == 1.0 and got[0].details["colors"] == [{"class": best[0], "expected": c0, "found": [c0]}]
    d1 = got[1].details
    assert d1["colors"][0] == {"class": best[1], "expected": c1, "found": [c1]}
    # clause 1 asks image 1 for image 0's best class: classified only when image 1 has it too
    if best[0] in objects[1]:
        assert d1["colors"][1]["found"] == [ref_color(1, best[0])]
    assert got[1].score == float(best[0] in objects[1] and d1["colors"][1]["found"] == [other])
    assert got[2].score == 0.0 and got[2].details["reason"] == f"expected {absent}>=1, found 0"
    assert got[3].score == 0.0 and got[3].details["reason"].startswith(f"expected {other} {best[0]}>=1, found 0")
    # details list what the rules saw: the selected detections, best first
    assert got[0].details["detections"] == {
        k: [{"score": d.score, "box": list(d.box)} for d in v] for k, v in objects[0].items()
    }
    json.dumps([r.details for r in got])  # JSON-serialisable

    # one image per call gives the same results as the batch
    single = [evaluator.score([im], [item(m, i)])[0] for i, (im, m) in enumerate(zip(batch, metas))]
    assert [(r.score, r.details) for r in single] == [(r.score, r.details) for r in got]


def test_counting_uses_the_stricter_threshold(evaluator):
    image = block_scene(32, 32, 0)
    dets = evaluator.detector.detect([image])[0]
    cls = TINY_DETECTOR_CLASSES[max(dets, key=lambda d: d.score).label]
    n_counting = len([d for d in dets if d.score > 0.9 and TINY_DETECTOR_CLASSES[d.label] == cls])
    n_plain = len([d for d in dets if d.score > 0.3 and TINY_DETECTOR_CLASSES[d.label] == cls])
    assert n_plain > n_counting  # the scene separates the two thresholds
    meta = {
        "tag": "counting",
        "include": [{"class": cls, "count": n_plain}],
        "exclude": [{"class": cls, "count": n_plain + 1}],
        "prompt": "counting",
    }
    r = evaluator.score([image], [item(meta)])[0]
    assert r.score == 0.0 and r.details["reason"] == f"expected {cls}>={n_plain}, found {n_counting}"
    meta["tag"] = "two_object"  # same clauses at the 0.3 threshold: the count is met
    assert evaluator.score([image], [item(meta)])[0].score == 1.0


def test_evaluator_refuses_a_class_list_of_another_size(tmp_path, evaluator):
    with pytest.raises(ValueError, match="the detector has 5 classes but object_names.txt lists 80"):
        GenevalEvaluator(evaluator.detector, evaluator.colors, [f"c{i}" for i in range(80)])
