"""CLIPScore evaluator on a tiny random CLIPModel saved and loaded back: the cosine against transformers'
get_image_features / get_text_features on pixels from transformers' own CLIP image processor (a second
implementation of OpenAI CLIP's resize / centre-crop / normalise) and on crops worked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

from evaluation.base import EvalItem, Fidelity
from evaluation.compbench.clipscore import ClipScoreEvaluator
from evaluation.compbench.preprocess import clip_pixels
from evaluation.local_files import MissingFilesError
from tests.tiny_compbench_models import require_spacy
from tests.tiny_reward_models import tiny_clip_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["A person is looking at a rainbow.", "A woman is holding a yoga mat.", "A person is looking at a rainbow."]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip_dir(tmp_path_factory.mktemp("clip") / "model")


def images(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(40, 48, 3), (48, 40, 3), (32, 32, 3)]]


def items(prompts, category="non_spatial"):
    return [EvalItem("t2i_compbench", category, p, i, 0) for i, p in enumerate(prompts)]


@torch.no_grad()
def reference_cosines(path, imgs, texts):
    """One image and one text at a time through transformers' CLIP processor and feature methods."""
    model = CLIPModel.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    proc = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    out = []
    for im, text in zip(imgs, texts):
        img = model.get_image_features(pixel_values=proc(images=[im], return_tensors="pt").pixel_values).pooler_output
        txt = model.get_text_features(**tok([text], return_tensors="pt")).pooler_output
        out.append(float(torch.nn.functional.cosine_similarity(img, txt)[0]))
    return out


def test_clip_pixels_resize_and_crop_by_hand():
    im = images()[0]  # 48 wide, 40 high -> shorter side 32: (38, 32), centre crop from x = 3
    pil = Image.fromarray(im).resize((38, 32), Image.BICUBIC).crop((3, 0, 35, 32))
    x = torch.tensor(np.asarray(pil), dtype=torch.float32).permute(2, 0, 1) / 255
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
    torch.testing.assert_close(clip_pixels([im], 32)[0], (x - mean) / std)


def test_cosine_matches_transformers(clip_dir):
    evaluator = ClipScoreEvaluator.load(clip_dir, batch_size=2)
    imgs = images()
    results = evaluator.score(imgs, items(PROMPTS))
    want = reference_cosines(clip_dir, imgs, PROMPTS)
    assert [r.score for r in results] == pytest.approx(want, abs=1e-5)
    assert len({round(w, 4) for w in want}) == 3  # the tiny model tells the cases apart
    assert results[1].details == {"text": PROMPTS[1]}
    assert evaluator.name == "clipscore" and evaluator.fidelity == Fidelity.exact and "fp16" in evaluator.fidelity_note


def test_complex_mode_drops_adjectives(clip_dir):
    require_spacy()
    evaluator = ClipScoreEvaluator.load(clip_dir, complex_text=True)
    prompt = "The red hat was on top of the brown coat rack."
    text = "The hat was on top of the coat rack ."
    results = evaluator.score(images()[:1], items([prompt], "complex"))
    assert results[0].details == {"text": text}
    assert results[0].score == pytest.approx(reference_cosines(clip_dir, images()[:1], [text])[0], abs=1e-5)
    assert evaluator.name == "clipscore_complex"


def test_missing_model_dir(tmp_path):
    with pytest.raises(MissingFilesError, match="does not exist.*openai/clip-vit-base-patch32"):
        ClipScoreEvaluator.load(tmp_path / "clip")
