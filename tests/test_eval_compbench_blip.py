"""BLIP-VQA evaluator on a tiny random BlipForQuestionAnswering saved and loaded back: its yes/no read-out against
a forward assembled here one (image, question) at a time from the original's recipe (BLIP_vqa.py, blip_vqa.py
``vqa_prob``), and its score against the original's four-decimal float32 product."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.base import EvalItem, Fidelity
from evaluation.compbench.blip_vqa import BlipVqaEvaluator
from evaluation.local_files import MissingFilesError
from tests.tiny_compbench_models import BLIP_NATIVE_SIZE, require_spacy, tiny_blip_vqa_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN_SIZE = 40  # the tiny model's "480 px": 5 x 5 patches, position embedding interpolated from 3 x 3
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)
PROMPTS = ["a green bench and a blue bowl", "a big old wooden chair near the window with a cat", "running fast"]
QUESTIONS = [["a green bench?", "a blue bowl?"], ["a big old wooden chair?", "the window?", "a cat?"], []]


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return tiny_blip_vqa_dir(tmp_path_factory.mktemp("blip") / "model")


@pytest.fixture(scope="module")
def evaluator(blip_dir):
    require_spacy()  # the questions are spaCy noun chunks
    return BlipVqaEvaluator.load(blip_dir, image_size=RUN_SIZE, batch_size=2)


def images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(n)]


def items(prompts):
    return [EvalItem("t2i_compbench", "color", p, i, 0) for i, p in enumerate(prompts)]


@torch.no_grad()
def reference_p(model, tokenizer, image, question, first_token=30523):
    """One image, one question: Resize((480, 480), BICUBIC) + CLIP normalisation, ViT with interpolated position
    embedding, the question with its first token set to [ENC] through the text encoder, [DEC] through the
    decoder, P(yes) / (P(yes) + P(no)) at the first step."""
    pil = Image.fromarray(image).resize((RUN_SIZE, RUN_SIZE), Image.BICUBIC)
    x = ((torch.tensor(np.asarray(pil), dtype=torch.float32).permute(2, 0, 1) / 255 - MEAN) / STD)[None]
    img = model.vision_model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state
    ids = tokenizer(question, return_tensors="pt").input_ids
    ids[0, 0] = first_token
    ones = torch.ones_like(ids)
    q = model.text_encoder(
        input_ids=ids,
        attention_mask=ones,
        encoder_hidden_states=img,
        encoder_attention_mask=torch.ones(img.shape[:2], dtype=torch.long),
    ).last_hidden_state
    logits = model.text_decoder(
        input_ids=torch.tensor([[30522]]), encoder_hidden_states=q, encoder_attention_mask=ones
    ).logits[0, 0]
    prob = torch.softmax(logits, dim=0)
    return float(prob[2748] / (prob[2748] + prob[2053]))


def original_product(answers_per_image: list[list[float]]) -> list[float]:
    """BLIP_vqa.py:80-117: answers written as '{:.4f}', a float32 [images, 8] tensor of them (1 where a prompt has
    fewer questions), multiplied column by column, written as '{:.4f}'."""
    reward = torch.ones(len(answers_per_image), 8)
    for k, answers in enumerate(answers_per_image):
        for i, p in enumerate(answers):
            reward[k][i] = float(f"{p:.4f}")
    final = reward[:, 0].clone()
    for i in range(1, 8):
        final *= reward[:, i]
    return [float(f"{x.item():.4f}") for x in final]


def test_questions_from_noun_chunks(evaluator):
    assert [evaluator.questions(p) for p in PROMPTS] == QUESTIONS


def test_answers_and_score_match_the_original_recipe(evaluator):
    imgs = images()
    want = [[reference_p(evaluator.model, evaluator.tokenizer, im, q) for q in qs] for im, qs in zip(imgs, QUESTIONS)]
    got = evaluator.answer(imgs, QUESTIONS)  # one batch: three questions' lengths padded together
    assert [len(g) for g in got] == [2, 3, 0]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), atol=2e-6)
    results = evaluator.score(imgs, items(PROMPTS))  # batches of 2
    assert [r.score for r in results] == pytest.approx(original_product(want), abs=1e-4)
    assert results[2].score == 1.0 and results[2].details == {"questions": [], "p_yes": []}
    assert results[0].details["questions"] == QUESTIONS[0]
    assert results[0].details["p_yes"] == pytest.approx([float(f"{p:.4f}") for p in want[0]], abs=1e-4)


def test_the_enc_token_is_what_the_encoder_sees(evaluator):
    """transformers' own forward keeps [CLS] (101) first; the original replaces it by [ENC]. The two read-outs
    differ, so the previous test would catch the wrong path."""
    im, q = images(1)[0], QUESTIONS[0][0]
    with_enc = evaluator.answer([im], [[q]])[0][0]
    assert with_enc == pytest.approx(reference_p(evaluator.model, evaluator.tokenizer, im, q), abs=2e-6)
    assert abs(with_enc - reference_p(evaluator.model, evaluator.tokenizer, im, q, first_token=101)) > 1e-4


def test_fidelity_tag(blip_dir, evaluator):
    assert evaluator.fidelity == Fidelity.same_weights and "24x24" in evaluator.fidelity_note
    native = BlipVqaEvaluator.load(blip_dir, image_size=BLIP_NATIVE_SIZE)
    assert native.fidelity == Fidelity.exact


def test_bad_model_dirs(tmp_path):
    with pytest.raises(MissingFilesError, match="does not exist.*config.json.*Salesforce/blip-vqa-capfilt-large"):
        BlipVqaEvaluator.load(tmp_path / "nope")
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial/config.json").write_text("{}")
    with pytest.raises(
        MissingFilesError, match="incomplete: missing tokenizer.json or vocab.json or vocab.txt.*model.safetensors"
    ):
        BlipVqaEvaluator.load(tmp_path / "partial")
    with pytest.raises(MissingFilesError, match="BLIP-VQA.* model directory is not set"):
        BlipVqaEvaluator.load(None)


def test_rejects_a_tokenizer_with_other_yes_no_ids(evaluator):
    from transformers import BertTokenizer

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "yes", "no"])}
    with pytest.raises(ValueError, match="yes/no"):
        BlipVqaEvaluator(evaluator.model, BertTokenizer(vocab=vocab))
