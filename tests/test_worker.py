"""RolloutWorker end to end on the tiny Janus (vLLM text engine where installed), and the rollout demo."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.config import load_config
from core.records import PromptRecord
from rollout.config import T2I_R1_REASONING_TEMPLATE, T2I_R1_SYSTEM_PROMPT
from rollout.prompts import cot_chat_text
from rollout.worker import RolloutWorker

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
G = 3
MAX_NEW = 8
PROMPTS = [PromptRecord(prompt="a red cat", task_type="color", nouns=["cat"], index=0),
           PromptRecord(prompt="two dogs on a bench", task_type="numeracy", nouns=["dog", "bench"], index=1)]


def _overrides(tiny_model_cfg, *extra: str) -> list[str]:
    return [f"model.cache_dir={tiny_model_cfg.cache_dir}", f"rollout.group_size={G}",
            f"rollout.cot.max_new_tokens={MAX_NEW}", "rollout.prompt.max_prompt_tokens=1024", *extra]


@pytest.fixture(scope="module")
def worker(tiny_model_cfg):
    cfg = load_config("tiny", _overrides(tiny_model_cfg))
    w = RolloutWorker(cfg.model, cfg.rollout, cfg.learner.loss.image_logprob)
    yield w
    w.close()


@pytest.fixture
def restore_weights(worker):
    saved = [(n, p.detach().clone()) for n, p in worker.policy.model.named_parameters()]
    version = worker.version
    yield
    worker.update_weights(saved, version)


def _ids(groups):
    return [[(s.cot_ids, s.image_ids) for s in g.samples] for g in groups]


@torch.no_grad()
def _cond_image_logprobs(model, prompt_ids: list[int], image_ids: list[int]) -> list[float]:
    """Teacher-forced log_softmax of the generation head on the conditional context (T2I-R1's learner)."""
    prompt = torch.tensor([prompt_ids])
    codes = torch.tensor([image_ids])
    x = torch.cat([model.get_input_embeddings()(prompt), model.prepare_embeddings_for_image_generation(codes)[:, :-1]], 1)
    h = model.model.language_model(inputs_embeds=x).last_hidden_state[:, len(prompt_ids) - 1:]
    logp = torch.log_softmax(model.model.generation_head(h).float(), -1)
    return logp.gather(-1, codes.unsqueeze(-1))[0, :, 0].tolist()


def test_records_hold_what_the_learner_needs(worker):
    tok, ids, policy = worker.policy.tokenizer, worker.policy.ids, worker.policy
    groups = worker.rollout(PROMPTS, seed=0)
    assert [g.prompt for g in groups] == PROMPTS
    side = policy.model.config.vq_config.num_patches * 2 ** (len(policy.model.config.vq_config.channel_multiplier) - 1)
    for g in groups:
        assert [s.group_index for s in g.samples] == list(range(G))
        for s in g.samples:
            assert s.prompt is g.prompt
            # The chat string itself is pinned in test_prompts.py.
            chat = cot_chat_text(g.prompt.prompt, T2I_R1_SYSTEM_PROMPT, T2I_R1_REASONING_TEMPLATE)
            assert s.cot_prompt_ids == [ids.bos] + tok(chat, add_special_tokens=False)["input_ids"]
            assert 1 <= len(s.cot_ids) <= MAX_NEW and ids.eos not in s.cot_ids[:-1]
            assert len(s.cot_logprobs) == len(s.cot_ids) and all(lp <= 0 for lp in s.cot_logprobs)
            assert s.cot_text == tok.decode(s.cot_ids, skip_special_tokens=True)
            expected_image_prompt = "User: " + f"{g.prompt.prompt}. {s.cot_text}".strip() + "\n\nAssistant:"
            assert s.image_prompt_ids == [ids.bos] + tok(expected_image_prompt, add_special_tokens=False)["input_ids"] + [ids.boi]
            assert len(s.image_ids) == policy.image_tokens and all(0 <= c < policy.codebook_size for c in s.image_ids)
            assert s.image.dtype == np.uint8 and s.image.shape == (side, side, 3)
            assert s.image_logprob_mode == "conditional"
            assert s.policy_version == 0
            assert set(s.timings) == {"cot", "image", "decode", "total"} and s.timings["total"] > 0
    # Behaviour log-probs of the image are the conditional-row ones the learner recomputes.
    s = groups[1].samples[2]
    ref = _cond_image_logprobs(policy.model, s.image_prompt_ids, s.image_ids)
    assert s.image_logprobs == pytest.approx(ref, abs=1e-4)
    # The image is the VQ decode of its tokens, as uint8 RGB.
    with torch.no_grad():
        pix = policy.model.decode_image_tokens(torch.tensor([s.image_ids]))[0]
    assert np.array_equal(s.image, ((pix.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy())


def test_rollout_is_deterministic_for_a_seed(worker):
    a, b, c = worker.rollout(PROMPTS, seed=7), worker.rollout(PROMPTS, seed=7), worker.rollout(PROMPTS, seed=8)
    assert _ids(a) == _ids(b)
    assert all(np.array_equal(x.image, y.image) for ga, gb in zip(a, b) for x, y in zip(ga.samples, gb.samples))
    assert _ids(a) != _ids(c)
    # The G samples of a group are different draws.
    assert len({tuple(s.image_ids) for s in a[0].samples}) == G


def test_update_weights_changes_both_stages_and_the_version(worker, restore_weights):
    before = worker.rollout(PROMPTS, seed=0, greedy=True)
    assert all(s.cot_ids == g.samples[0].cot_ids for g in before for s in g.samples)  # greedy: G equal samples
    gen = torch.Generator().manual_seed(1)
    update = [(n, p.detach() + 0.5 * torch.randn(p.shape, generator=gen)) for n, p in worker.named_trainable_parameters()]
    worker.update_weights(update, version=5)
    assert worker.version == 5
    after = worker.rollout(PROMPTS, seed=0, greedy=True)
    assert all(s.policy_version == 5 for g in after for s in g.samples)
    assert [g.samples[0].cot_ids for g in after] != [g.samples[0].cot_ids for g in before]
    assert [g.samples[0].image_ids for g in after] != [g.samples[0].image_ids for g in before]
    # The text engine's copy (vLLM) got the same weights: its greedy CoT is the updated Janus model's argmax.
    model, prompt = worker.policy.model, after[0].samples[0].cot_prompt_ids
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(MAX_NEW):
            seq.append(int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax()))
            if seq[-1] == worker.policy.ids.eos:
                break
    assert after[0].samples[0].cot_ids == seq[len(prompt):]


def test_update_weights_rejects_unknown_names_and_shapes(worker):
    with pytest.raises(KeyError, match="not a parameter"):
        worker.update_weights([("model.nope.weight", torch.zeros(1))], version=1)
    name, p = next(worker.named_trainable_parameters())
    with pytest.raises(ValueError, match="shape"):
        worker.update_weights([(name, torch.zeros(p.shape[0] + 1))], version=1)
    assert worker.version == 0


def test_no_cot_worker_draws_from_the_raw_prompt(tiny_model_cfg):
    cfg = load_config("tiny", _overrides(tiny_model_cfg, "rollout.prompt.use_cot=false"))
    w = RolloutWorker(cfg.model, cfg.rollout, cfg.learner.loss.image_logprob)
    assert w.text_engine is None
    (g,) = w.rollout(PROMPTS[:1], seed=0)
    tok = w.policy.tokenizer
    for s in g.samples:
        assert s.cot_ids == [] and s.cot_text == "" and s.cot_prompt_ids == []
        assert tok.decode(s.image_prompt_ids) == "<｜begin▁of▁sentence｜>User: a red cat\n\nAssistant:<begin_of_image>"


def test_a_prompt_draws_the_same_samples_on_any_worker(tiny_model_cfg):
    """The trainer splits a step's prompts across the workers (prompts[i::W]) and gives each the step's seed: with
    one worker or two, every prompt must get the same samples, since its seeds follow its global index (the same
    text under three indices: three different draws, whatever the share)."""
    cfg = load_config("tiny", _overrides(tiny_model_cfg, "rollout.cot.engine=transformers"))
    prompts = [PromptRecord(prompt="a red cat", task_type="color", nouns=["cat"], index=i) for i in (7, 2, 30)]
    workers = [RolloutWorker(cfg.model, cfg.rollout, cfg.learner.loss.image_logprob) for _ in range(2)]
    one = workers[0].rollout(prompts, seed=5)
    shares = [prompts[0::2], prompts[1::2]]
    two = {g.prompt.index: g for w, share in zip(workers, shares) for g in w.rollout(share, seed=5)}
    assert _ids(one) == _ids([two[p.index] for p in prompts])
    assert all(np.array_equal(a.image, b.image) for g in one for a, b in zip(g.samples, two[g.prompt.index].samples))
    assert len({tuple(g.samples[0].image_ids) for g in one}) == 3  # a prompt's draw is its own
    with pytest.raises(ValueError, match=r"no global index"):
        workers[0].rollout([PromptRecord(prompt="a red cat")], seed=5)


# --------------------------------------------------------------------------------------------------- the demo


def _check_demo_outputs(out, label: str, n_prompts: int):
    from PIL import Image

    with Image.open(out / f"grid_{label}.png") as im:
        width, height = im.size
    assert width == 2 * 192 and height % n_prompts == 0  # one column per sample (G=2), one row per prompt
    rows = [json.loads(line) for line in (out / f"rollouts_{label}.jsonl").read_text().splitlines()]
    assert [r["group_index"] for r in rows] == [0, 1] * n_prompts
    assert all(r["policy_version"] == 0 and r["timings"]["total"] > 0 for r in rows)


def test_demo_writes_a_grid(tiny_model_cfg, tmp_path, capsys):
    from rollout.demo import main

    assert main(["--config", "tiny", "--engines", "transformers", "--prompts", "2", "--out", str(tmp_path),
                 f"model.cache_dir={tiny_model_cfg.cache_dir}", "rollout.group_size=2", "rollout.cot.max_new_tokens=4"]) == 0
    assert f"wrote {tmp_path / 'grid_transformers.png'}" in capsys.readouterr().out
    _check_demo_outputs(tmp_path, "transformers", 2)


def test_demo_rejects_bad_config(capsys):
    from rollout.demo import main

    assert main(["--config", "tiny", "rollout.group_size=1"]) == 2
    assert "rollout.group_size" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end_through_both_engines(tiny_model_cfg, tmp_path):
    """`make run` until the training loop lands: the demo as its own process, vLLM then transformers."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rollout.demo", "--config", "tiny", "--prompts", "2", "--out", str(tmp_path),
           f"model.cache_dir={tiny_model_cfg.cache_dir}", "rollout.group_size=2", "rollout.cot.max_new_tokens=4"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for label in ("vllm", "transformers"):
        if label == "vllm" and importlib.util.find_spec("vllm") is None:
            continue  # then the vLLM run fell back (the demo says so) and wrote the transformers grid
        assert f"wrote {tmp_path / f'grid_{label}.png'}" in res.stdout and f"text engine {label};" in res.stdout
        _check_demo_outputs(tmp_path, label, 2)
