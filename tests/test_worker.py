"""RolloutWorker end to end on the tiny Janus (vLLM text engine where installed), and `python -m rollout.generate`."""

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
from core.t2i_r1_text import T2I_R1_REASONING_TEMPLATE, T2I_R1_SYSTEM_PROMPT
from rollout.prompts import cot_chat_text
from rollout.worker import RolloutWorker

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
G = 3
MAX_NEW = 8
PROMPTS = [
    PromptRecord(prompt="a red cat", task_type="color", nouns=["cat"], index=0),
    PromptRecord(prompt="two dogs on a bench", task_type="numeracy", nouns=["dog", "bench"], index=1),
]


def _overrides(tiny_model_cfg, *extra: str) -> list[str]:
    return [
        f"model.cache_dir={tiny_model_cfg.cache_dir}",
        f"rollout.group_size={G}",
        f"rollout.cot.max_new_tokens={MAX_NEW}",
        "rollout.prompt.max_prompt_tokens=1024",
        *extra,
    ]


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
    x = torch.cat(
        [model.get_input_embeddings()(prompt), model.prepare_embeddings_for_image_generation(codes)[:, :-1]], 1
    )
    h = model.model.language_model(inputs_embeds=x).last_hidden_state[:, len(prompt_ids) - 1 :]
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
            assert s.image_prompt_ids == [ids.bos] + tok(expected_image_prompt, add_special_tokens=False)[
                "input_ids"
            ] + [ids.boi]
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
    update = [
        (n, p.detach() + 0.5 * torch.randn(p.shape, generator=gen)) for n, p in worker.named_trainable_parameters()
    ]
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
    assert after[0].samples[0].cot_ids == seq[len(prompt) :]


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


def test_draw_is_independent_of_the_batch(worker):
    """Per-request seeds: a request's sample is the one it gets alone, whatever else shares the call."""
    batch = worker.draw([PROMPTS[0], PROMPTS[1], PROMPTS[0]], [5, 6, 7])
    alone = [worker.draw([p], [s])[0] for p, s in ((PROMPTS[0], 5), (PROMPTS[1], 6), (PROMPTS[0], 7))]
    for b, a in zip(batch, alone):
        assert (b.cot_ids, b.image_ids) == (a.cot_ids, a.image_ids) and np.array_equal(b.image, a.image)
    assert batch[0].image_ids != batch[2].image_ids  # same prompt, other seed: another draw
    # per-prompt seeds in rollout(): each group is the prompt's rollout alone with its seed
    groups = worker.rollout(PROMPTS, [11, 12])
    assert _ids(groups) == _ids(worker.rollout(PROMPTS[:1], [11])) + _ids(worker.rollout(PROMPTS[1:], [12]))
    with pytest.raises(ValueError, match="2 prompts but 3 seeds"):
        worker.rollout(PROMPTS, [1, 2, 3])


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


# --------------------------------------------------------------------------------------------------- generate


def _generate_args(tiny_model_cfg, out, *extra: str) -> list[str]:
    return [
        "--config",
        "tiny",
        "--out",
        str(out),
        *extra,
        f"model.cache_dir={tiny_model_cfg.cache_dir}",
        "rollout.cot.engine=transformers",
        "rollout.cot.max_new_tokens=4",
    ]


def test_generate_writes_images_cots_and_a_grid(tiny_model_cfg, tmp_path, capsys):
    from PIL import Image

    from policy.model import tiny_janus_dir
    from rollout.generate import main

    out = tmp_path / "a"
    assert (
        main(
            _generate_args(
                tiny_model_cfg, out, "--prompt", "a red cat", "--prompt", "two dogs", "--images", "2", "--seed", "3"
            )
        )
        == 0
    )
    assert f"wrote 4 images of 2 prompts to {out}" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [(r["prompt"], r["file"], r["seed"]) for r in rows] == [
        ("a red cat", "images/0000_00.png", 3),
        ("a red cat", "images/0000_01.png", 4),
        ("two dogs", "images/0001_00.png", 3),
        ("two dogs", "images/0001_01.png", 4),
    ]
    assert all(r["cot"] and r["policy_version"] == 0 for r in rows)
    with Image.open(out / "grid.png") as im:
        assert im.size[0] == 2 * 192  # one column per image of a prompt
    # A training run's output_dir as --checkpoint: its HF export (here the tiny model itself) is the policy, and
    # image k of a prompt is redrawn alone with seed S + k.
    export = tmp_path / "run" / "checkpoints" / "hf"
    export.parent.mkdir(parents=True)
    export.symlink_to(tiny_janus_dir(tiny_model_cfg))
    again = tmp_path / "b"
    assert (
        main(
            _generate_args(
                tiny_model_cfg,
                again,
                "--checkpoint",
                str(tmp_path / "run"),
                "--prompt",
                "two dogs",
                "--images",
                "1",
                "--seed",
                "4",
            )
        )
        == 0
    )
    (row,) = [json.loads(line) for line in (again / "generations.jsonl").read_text().splitlines()]
    assert row["policy"] == str(export) and row["cot"] == rows[3]["cot"]
    assert (again / "images/0000_00.png").read_bytes() == (out / "images/0001_01.png").read_bytes()


def test_generate_reads_a_prompt_file_and_rejects_bad_input(tiny_model_cfg, tmp_path, capsys):
    from rollout.generate import main, read_prompts

    txt = tmp_path / "prompts.txt"
    txt.write_text("a red cat\n\n two dogs \n")
    assert [(p.prompt, p.index) for p in read_prompts(["first"], str(txt))] == [
        ("first", 0),
        ("a red cat", 1),
        ("two dogs", 2),
    ]
    assert main(_generate_args(tiny_model_cfg, tmp_path, "--prompt", "x", "--checkpoint", str(tmp_path))) == 2
    assert "is neither an HF-format Janus directory" in capsys.readouterr().err
    assert main(_generate_args(tiny_model_cfg, tmp_path, "--prompt", "x", "rollout.cot.top_p=2")) == 2
    assert "rollout.cot.top_p" in capsys.readouterr().err
    assert main(_generate_args(tiny_model_cfg, tmp_path, "--prompts-file", str(tmp_path / "none.txt"))) == 2
    assert "none.txt' does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_generate_end_to_end_through_vllm(tiny_model_cfg, tmp_path):
    """The command as a user runs it, with the vLLM text engine (or its announced fallback)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "rollout.generate",
        "--config",
        "tiny",
        "--prompt",
        "a red cat",
        "--images",
        "2",
        "--out",
        str(tmp_path),
        f"model.cache_dir={tiny_model_cfg.cache_dir}",
        "rollout.cot.max_new_tokens=4",
    ]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    engine = "vllm" if importlib.util.find_spec("vllm") is not None else "transformers"
    assert f"text engine {engine}" in res.stdout
    assert len(list((tmp_path / "images").glob("*.png"))) == 2
