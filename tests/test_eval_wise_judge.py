"""The WISE judge on tiny Qwen3.5-MoE checkpoints (transformers' Qwen3_5MoeForConditionalGeneration): the
assembled inputs, left-padded batches against one conversation at a time, and both WISE evaluators end to end
on judges rewired to give a fixed answer, with the rubric and prompts of a fake WISE checkout."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from evaluation.base import Fidelity
from evaluation.local_files import MissingFilesError
from evaluation.wise.checkout import eval_items, load_prompts, load_rubric
from evaluation.wise.evaluator import WiseLegacyEvaluator, WiseVerifiedEvaluator
from evaluation.wise.judge import QwenJudge
from evaluation.wise.scoring import summarize
from evaluation.wise.variants import LEGACY, VERIFIED
from tests.tiny_eval_models import fake_wise_checkout, tiny_judge_dir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The rewired judges' answers (the generation prompt ends in a newline, Ċ):
# "<think> hmm</think>Score: 1" -> "Score: 1" once the think block is stripped
VERIFIED_CHAIN = {
    "Ċ": "<think>",
    "<think>": "Ġhmm",
    "Ġhmm": "</think>",
    "</think>": "Score:",
    "Score:": "Ġ1",
    "Ġ1": "<|im_end|>",
}
# "Consistency: 2\nRealism: 1\nAesthetic Quality: 0"
LEGACY_CHAIN = {
    "Ċ": "Consistency:",
    "Consistency:": "Ġ2",
    "Ġ2": "ĊRealism:",
    "ĊRealism:": "Ġ1",
    "Ġ1": "ĊAestheticĠQuality:",
    "ĊAestheticĠQuality:": "Ġ0",
    "Ġ0": "<|im_end|>",
}
UNPARSABLE_CHAIN = {"Ċ": "Ġmaybe", "Ġmaybe": "<|im_end|>"}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return fake_wise_checkout(tmp_path_factory.mktemp("WISE"))


@pytest.fixture(scope="module")
def random_judge(tmp_path_factory):
    return QwenJudge.load(tiny_judge_dir(tmp_path_factory.mktemp("judge")), batch_size=3, max_new_tokens=4)


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(32, 32), (48, 32), (32, 48), (32, 32)]
    return [rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8) for i in range(n)]


def test_inputs_follow_the_chat_template_and_image_grid(random_judge, checkout):
    rubric = load_rubric(checkout, VERIFIED)
    prompts = load_prompts(checkout, VERIFIED)[:3]
    convs = [rubric.render(p.record) for p in prompts]
    text = random_judge.prompt_text(convs[0])
    # our template renders the thinking-off generation prompt only when enable_thinking=False reaches it
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert 'Asked for: "a lantern for the autumn fair"' in text and text.count("<|image_pad|>") == 1
    ims = images(3)
    batch = random_judge.inputs(convs, ims)
    # 32x32 -> 4x4 patches of 8 px -> 2x2 merged tokens; 48x32 -> 6x4 -> 6
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 6, 4], [1, 4, 6]]
    image_id = random_judge.image_token_id
    assert (batch["input_ids"] == image_id).sum(1).tolist() == [4, 6, 6]
    assert torch.equal(batch["mm_token_type_ids"].bool(), batch["input_ids"] == image_id)
    # left padding: every row ends with the generation prompt, padding (mask 0) only at the start
    mask = batch["attention_mask"]
    assert mask[:, -1].all() and all(torch.equal(m, torch.sort(m)[0]) for m in mask) and not mask.all()
    decoded = random_judge.tokenizer.decode(batch["input_ids"][0][mask[0].bool()])
    assert decoded == text.replace("<|image_pad|>", "<|image_pad|>" * 4)


def test_batched_forward_equals_one_conversation_at_a_time(random_judge, checkout):
    rubric = load_rubric(checkout, VERIFIED)
    convs = [rubric.render(p.record) for p in load_prompts(checkout, VERIFIED)[:3]]
    ims = images(3)
    model = random_judge.model

    def last_logits(conv, im):
        with torch.no_grad():
            return model(**random_judge.inputs(conv, im)).logits[:, -1]

    batched = last_logits(convs, ims)
    single = torch.cat([last_logits([c], [i]) for c, i in zip(convs, ims)])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=1e-4)
    # the image reaches the model: another image, other logits
    other = last_logits([convs[0]], images(1, seed=5))
    assert not torch.allclose(other, single[:1], atol=1e-6)
    # and generation runs batched, answers decoded per conversation
    assert len(random_judge.answers(convs, ims)) == 3


@pytest.fixture(scope="module")
def judge_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("judges")
    return {
        name: tiny_judge_dir(root / name, chain=chain)
        for name, chain in [("verified", VERIFIED_CHAIN), ("legacy", LEGACY_CHAIN), ("unparsable", UNPARSABLE_CHAIN)]
    }


def test_verified_evaluator_end_to_end(judge_dirs, checkout):
    ev = WiseVerifiedEvaluator.load(judge_dirs["verified"], checkout, batch_size=4, max_new_tokens=10)
    assert ev.name == "wise_verified@qwen3.5" and ev.fidelity == Fidelity.same_weights
    items = eval_items(load_prompts(checkout, VERIFIED))
    results = ev.score(images(len(items)), items)
    assert [r.score for r in results] == [1.0] * 7
    assert results[2].details == {"prompt_id": 401, "category": "Time", "answer": "Score: 1", "parsed": 1.0}
    s = summarize(VERIFIED, [r.details["prompt_id"] for r in results], [r.score for r in results])
    assert s["overall"] == pytest.approx(1.0) and not s["complete"]
    json.dumps([r.details for r in results])


def test_legacy_evaluator_end_to_end(judge_dirs, checkout):
    ev = WiseLegacyEvaluator.load(judge_dirs["legacy"], checkout, batch_size=2, max_new_tokens=10)
    assert ev.name == "wiscore_legacy@qwen3.5" and ev.fidelity == Fidelity.substitute
    assert "GPT-4o" in ev.fidelity_note
    items = eval_items(load_prompts(checkout, LEGACY))
    results = ev.score(images(len(items)), items)
    assert results[0].details["answer"] == "Consistency: 2\nRealism: 1\nAesthetic Quality: 0"
    assert results[0].details["parsed"] == {"consistency": 2.0, "realism": 1.0, "aesthetic_quality": 0.0}
    assert [r.score for r in results] == pytest.approx([0.8] * 6)  # (0.7*2 + 0.2*1 + 0.1*0) / 2
    assert [r.details["category"] for r in results] == ["Culture", "Time", "Space", "Biology", "Physics", "Chemistry"]


def test_unparsable_answer_scores_nan(judge_dirs, checkout):
    ev = WiseVerifiedEvaluator.load(judge_dirs["unparsable"], checkout, max_new_tokens=10)
    items = eval_items(load_prompts(checkout, VERIFIED))[:2]
    results = ev.score(images(2), items)
    assert all(math.isnan(r.score) for r in results)
    assert results[0].details["answer"] == "maybe" and results[0].details["parsed"] is None
    assert summarize(VERIFIED, [1, 2], [r.score for r in results])["unparsed"] == [1, 2]


def test_missing_judge_files(tmp_path, judge_dirs, checkout):
    with pytest.raises(
        MissingFilesError, match=r"WISE_Verified judge .* model directory .*does not exist.*Qwen/Qwen3\.5-35B-A3B"
    ):
        QwenJudge.load(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    shutil.copytree(judge_dirs["verified"], partial)
    (partial / "preprocessor_config.json").unlink()
    with pytest.raises(MissingFilesError, match=r"incomplete: missing preprocessor_config\.json"):
        QwenJudge.load(partial)
    no_template = tmp_path / "no_template"
    shutil.copytree(judge_dirs["verified"], no_template)
    (no_template / "chat_template.jinja").unlink()
    with pytest.raises(MissingFilesError, match="has no chat template"):
        QwenJudge.load(no_template)
    # the WISE checkout is checked before the judge is loaded
    (checkout / "vllm_eval.py").rename(checkout / "vllm_eval.py.away")
    try:
        with pytest.raises(MissingFilesError, match=r"WISE checkout .*missing vllm_eval\.py"):
            WiseVerifiedEvaluator.load(tmp_path / "nowhere", checkout)
    finally:
        (checkout / "vllm_eval.py.away").rename(checkout / "vllm_eval.py")
