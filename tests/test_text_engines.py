"""Both text engines against an independent reference: a plain argmax loop and teacher-forced log-probs, each
a full (uncached) forward of the Janus model in transformers.

One vLLM engine serves the whole module (start-up takes several seconds). Tests that change weights restore
them (in the Janus model and in the vLLM engine) when they finish.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import GenerationConfig, TemperatureLogitsWarper, TopKLogitsWarper
from transformers.generation.utils import GenerationMixin

from policy.model import load_policy
from rollout.config import RolloutConfig, TextSamplingConfig
from rollout.factories import EngineFallbackWarning, build_text_engine
from rollout.hf_engine import HFTextEngine

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ENGINES = ["vllm", "transformers"]
# The last prompt spans several KV-cache blocks, so vLLM's prefix cache holds it between calls.
TEXTS = ["User: a red cat\n\nAssistant:", "two dogs", "a photo of a bench left of a clock, in watercolour. " * 6]
LOGPROB_ATOL = 1e-4  # fp32; vLLM's CPU kernels and transformers differ by ~1e-6 here


@pytest.fixture(scope="module")
def policy(tiny_model_cfg):
    # Our own copy: these tests change weights, the session's tiny_policy must stay pristine.
    return load_policy(tiny_model_cfg)


@pytest.fixture(scope="module")
def rollout_cfg():
    cfg = RolloutConfig()
    cfg.prompt.max_prompt_tokens = 512
    cfg.cot.max_new_tokens = 24
    return cfg


@pytest.fixture(scope="module")
def engines(policy, rollout_cfg, tmp_path_factory):
    pytest.importorskip("vllm")
    vllm_engine = build_text_engine(policy, rollout_cfg, work_dir=tmp_path_factory.mktemp("vllm"))
    assert vllm_engine.name == "vllm"
    yield {"vllm": vllm_engine, "transformers": HFTextEngine(policy.model, policy.ids)}
    vllm_engine.close()


@pytest.fixture
def restore_weights(policy, engines):
    """Undo a test's weight changes in the Janus model and in the vLLM engine."""
    saved = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    yield
    with torch.no_grad():
        for n, p in policy.model.named_parameters():
            p.copy_(saved[n])
    engines["vllm"].update_weights(saved.items())


@pytest.fixture(scope="module")
def prompts(policy):
    return [[policy.ids.bos] + policy.tokenizer(t, add_special_tokens=False)["input_ids"] for t in TEXTS]


@torch.no_grad()
def reference_greedy(policy, prompt: list[int], max_new: int) -> list[int]:
    """Argmax of a full forward over the whole sequence at every step; stops after EOS."""
    seq = list(prompt)
    for _ in range(max_new):
        nxt = int(policy.model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
        seq.append(nxt)
        if nxt == policy.ids.eos:
            break
    return seq[len(prompt) :]


@torch.no_grad()
def reference_logprobs(policy, prompt: list[int], completion: list[int]) -> list[float]:
    """Teacher-forced log_softmax of the raw logits at each completion token."""
    seq = torch.tensor([prompt + completion])
    logp = torch.log_softmax(policy.model(input_ids=seq).logits[0].float(), dim=-1)
    pos = torch.arange(len(prompt) - 1, len(prompt) + len(completion) - 1)
    return logp[pos, torch.tensor(completion)].tolist()


def _assert_well_formed(c, eos: int, max_new: int):
    assert 1 <= len(c.token_ids) <= max_new
    assert len(c.logprobs) == len(c.token_ids)
    assert eos not in c.token_ids[:-1]
    if c.finish_reason == "stop":
        assert c.token_ids[-1] == eos
    else:
        assert c.finish_reason == "length" and len(c.token_ids) == max_new and c.token_ids[-1] != eos


def test_greedy_equals_reference_in_both_engines(policy, engines, prompts, rollout_cfg):
    max_new = rollout_cfg.cot.max_new_tokens
    expected = [reference_greedy(policy, p, max_new) for p in prompts]
    for name in ENGINES:
        out = engines[name].generate(prompts, 2, [0, 1, 2], rollout_cfg.cot, greedy=True)
        assert [[c.token_ids for c in group] for group in out] == [[e, e] for e in expected], name


def test_weight_update_changes_greedy_identically(policy, engines, prompts, rollout_cfg, restore_weights):
    max_new = rollout_cfg.cot.max_new_tokens
    before = [reference_greedy(policy, p, max_new) for p in prompts]
    params = dict(policy.model.named_parameters())
    # Only q_proj of one fused qkv module, an MLP matrix and lm_head: a partial update of fused vLLM modules.
    names = [
        "model.language_model.layers.0.self_attn.q_proj.weight",
        "model.language_model.layers.1.mlp.up_proj.weight",
        "lm_head.weight",
    ]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn(params[n].shape, generator=gen) * 0.5)
    for name in ENGINES:
        engines[name].update_weights([(n, params[n].detach().clone()) for n in names])
    after = [reference_greedy(policy, p, max_new) for p in prompts]
    assert after != before
    for name in ENGINES:
        out = engines[name].generate(prompts, 1, [0, 1, 2], rollout_cfg.cot, greedy=True)
        assert [g[0].token_ids for g in out] == after, name


def _make_eos_follow(policy, token: int, scale: float):
    """Set EOS's lm_head row to ``scale`` x that of ``token``: EOS then wins wherever ``token`` would."""
    w = policy.model.lm_head.weight
    with torch.no_grad():
        w[policy.ids.eos] = w[token] * scale
    return [("lm_head.weight", w.detach().clone())]


def test_greedy_stops_at_eos(policy, engines, prompts, rollout_cfg, restore_weights):
    max_new = rollout_cfg.cot.max_new_tokens
    first = reference_greedy(policy, prompts[0], max_new)
    update = _make_eos_follow(policy, first[3], 1.05)
    expected = reference_greedy(policy, prompts[0], max_new)
    assert expected[-1] == policy.ids.eos and len(expected) <= 4
    for name in ENGINES:
        engines[name].update_weights(update)
        ((c,),) = engines[name].generate(prompts[:1], 1, [0], rollout_cfg.cot, greedy=True)
        assert c.token_ids == expected and c.finish_reason == "stop", name


@pytest.mark.parametrize("name", ENGINES)
def test_sampling_respects_n_seed_and_max_tokens(policy, engines, prompts, rollout_cfg, name):
    engine = engines[name]
    params = rollout_cfg.cot
    a = engine.generate(prompts, 4, [10, 11, 12], params)
    again = engine.generate(prompts, 4, [10, 11, 12], params)
    other = engine.generate(prompts, 4, [20, 21, 22], params)
    alone = engine.generate(prompts[2:], 4, [12], params)
    ids = lambda out: [[c.token_ids for c in g] for g in out]  # noqa: E731
    assert [len(g) for g in a] == [4, 4, 4]
    assert ids(a) == ids(again)  # same seeds: same completions
    assert ids(a) != ids(other)
    assert ids(alone)[0] == ids(a)[2]  # a prompt's completions do not depend on the rest of the batch
    assert all(len({tuple(t) for t in g}) > 1 for g in ids(a))  # n distinct samples, not n copies
    for g in a:
        for c in g:
            _assert_well_formed(c, policy.ids.eos, params.max_new_tokens)
    short = engine.generate(prompts[:1], 2, [0], TextSamplingConfig(max_new_tokens=3))
    assert all(len(c.token_ids) <= 3 for c in short[0])


def test_seeded_sampling_of_a_batch_larger_than_one_scheduler_step(policy, engines, rollout_cfg):
    """24 distinct ~500-token prompts (12k tokens) do not fit one vLLM scheduler step (8192 tokens): a prompt
    split across steps once made vLLM rewind the seeded CPU generator and fail ("CPU Generator does not use
    offset"). Each prompt's samples must still be the ones it gets alone."""
    prompts = [[policy.ids.bos] + [(i * 7 + j) % 250 for j in range(500)] for i in range(24)]
    out = engines["vllm"].generate(prompts, 2, list(range(24)), rollout_cfg.cot)
    alone = engines["vllm"].generate(prompts[-1:], 2, [23], rollout_cfg.cot)
    assert [len(g) for g in out] == [2] * 24
    assert [c.token_ids for c in out[-1]] == [c.token_ids for c in alone[0]]


@pytest.mark.parametrize("name", ENGINES)
def test_sampling_stops_at_eos(policy, engines, prompts, rollout_cfg, restore_weights, name):
    engine = engines[name]
    first = reference_greedy(policy, prompts[0], 4)
    update = _make_eos_follow(policy, first[0], 20.0)  # EOS becomes likely on about every other step
    engine.update_weights(update)
    out = engine.generate(prompts, 6, [1, 2, 3], rollout_cfg.cot)
    completions = [c for g in out for c in g]
    for c in completions:
        _assert_well_formed(c, policy.ids.eos, rollout_cfg.cot.max_new_tokens)
    assert sum(c.finish_reason == "stop" for c in completions) >= len(completions) // 2


@pytest.mark.parametrize("name", ENGINES)
def test_logprobs_are_raw_model_logprobs(policy, engines, prompts, name):
    # Temperature and top-k change what is sampled, not the reported log-probs: those are under the raw
    # distribution (what the learner recomputes), so they must match the teacher-forced reference exactly.
    params = TextSamplingConfig(max_new_tokens=16, temperature=0.7, top_k=5, top_p=0.9)
    out = engines[name].generate(prompts, 3, [5, 6, 7], params)
    for prompt, group in zip(prompts, out):
        for c in group:
            ref = reference_logprobs(policy, prompt, c.token_ids)
            assert c.logprobs == pytest.approx(ref, abs=LOGPROB_ATOL)


def test_engines_report_the_same_greedy_logprobs(engines, prompts, rollout_cfg):
    v, h = (engines[n].generate(prompts, 1, [0, 0, 0], rollout_cfg.cot, greedy=True) for n in ENGINES)
    for gv, gh in zip(v, h):
        assert gv[0].logprobs == pytest.approx(gh[0].logprobs, abs=LOGPROB_ATOL)


# --------------------------------------------------------------------------------------------------- transformers


def test_transformers_batch_equals_the_per_prompt_full_score_computation(policy, prompts, rollout_cfg):
    """One left-padded generate for all prompts gives, per prompt, the greedy tokens and log-probs of what the
    engine did before: one unpadded generate per prompt with ``output_logits`` (every step's raw logits kept)."""
    out = HFTextEngine(policy.model, policy.ids).generate(prompts, 2, [0, 1, 2], rollout_cfg.cot, greedy=True)
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=rollout_cfg.cot.max_new_tokens,
        guidance_scale=1.0,
        eos_token_id=policy.ids.eos,
        pad_token_id=policy.ids.pad,
        return_dict_in_generate=True,
        output_logits=True,
    )
    for prompt, group in zip(prompts, out):
        x = torch.tensor([prompt])
        with torch.no_grad():
            res = GenerationMixin.generate(policy.model, x, attention_mask=torch.ones_like(x), generation_config=config)
        new = res.sequences[0, len(prompt) :]
        full = torch.log_softmax(torch.stack(res.logits, dim=1)[0].float(), dim=-1)  # [T, V]
        logp = full.gather(-1, new[:, None])[:, 0]
        end = new.tolist().index(policy.ids.eos) + 1 if policy.ids.eos in new.tolist() else len(new)
        for c in group:
            assert c.token_ids == new[:end].tolist()
            assert c.logprobs == pytest.approx(logp[:end].tolist(), abs=1e-5)


def test_transformers_rows_draw_from_the_filtered_distribution_with_their_own_seeds(policy, prompts):
    """First tokens of 1500 completions of one prompt: only top-k codes, at the frequencies of softmax(top-k of
    logits / T) (transformers' warpers as the reference); the same seed gives the same rows, in any chunking."""
    params = TextSamplingConfig(max_new_tokens=1, temperature=0.7, top_k=20, transformers_max_batch=4096)
    engine = HFTextEngine(policy.model, policy.ids)
    first = torch.tensor([c.token_ids[0] for c in engine.generate(prompts[:1], 1500, [9], params)[0]])
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([prompts[0]])).logits[:, -1].float()
    warped = TopKLogitsWarper(20)(None, TemperatureLogitsWarper(0.7)(None, logits))[0]
    probs = torch.softmax(warped.double(), -1)
    assert torch.isfinite(warped[first]).all()
    freq = torch.bincount(first, minlength=probs.numel()).double() / first.numel()
    assert ((freq - probs).abs() <= 5 * (probs * (1 - probs) / first.numel()).sqrt() + 3 / first.numel()).all()
    # chunked one prompt per generate call (4 rows), or all in one: the same completions per prompt
    sampled = TextSamplingConfig(max_new_tokens=6, top_k=50)
    together = engine.generate(prompts, 4, [3, 4, 5], sampled)
    apart = engine.generate(prompts, 4, [3, 4, 5], dataclasses.replace(sampled, transformers_max_batch=4))
    assert [[c.token_ids for c in g] for g in together] == [[c.token_ids for c in g] for g in apart]


def test_transformers_engine_memory_does_not_grow_with_the_completion_length():
    """Janus-Pro's 102,400-way vocabulary: the log-probs are read one step at a time, so the engine's peak
    allocation during generate stays within a few [rows, V] float32 buffers (logits, their copy, one step's
    log-softmax, the sampling filters and noise) plus the KV cache, while keeping every step's logits (the
    output_logits way) would hold rows x T x V x 4 bytes = 37.5 MiB here."""
    from policy.config import TinyModelConfig
    from policy.model import build_tiny_janus
    from policy.tokenizer import SpecialIds

    model, tok = build_tiny_janus(TinyModelConfig(), vocab_size=102400)
    ids = SpecialIds.from_tokenizer(tok)
    prompt = [ids.bos] + tok("a red cat on a bench", add_special_tokens=False)["input_ids"]
    rows, t, vocab = 4, 24, 102400
    params = TextSamplingConfig(max_new_tokens=t, top_k=50)
    peak, out = _peak_allocated_bytes(lambda: HFTextEngine(model, ids).generate([prompt], rows, [0], params))
    assert all(len(c.token_ids) == len(c.logprobs) for c in out[0])
    text = model.config.text_config
    kv_cache = 2 * text.num_hidden_layers * rows * (len(prompt) + t) * text.hidden_size * 4
    assert peak <= 10 * rows * vocab * 4 + kv_cache + 2 * 2**20  # + 2 MiB of small tensors
    assert rows * t * vocab * 4 > 2 * (10 * rows * vocab * 4 + kv_cache)  # the bound has power


def _peak_allocated_bytes(fn):
    """(peak bytes of live CPU tensors allocated while ``fn`` runs, its result), from the profiler's allocation
    and free events in time order."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    live = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage  # frees, allocations
        peak = max(peak, live)
    return peak, result


def test_bad_arguments_are_rejected(engines, prompts, rollout_cfg):
    for engine in engines.values():
        with pytest.raises(ValueError, match="one seed per prompt"):
            engine.generate(prompts, 2, [0], rollout_cfg.cot)
        with pytest.raises(ValueError, match="empty prompt"):
            engine.generate([[]], 2, [0], rollout_cfg.cot)


def test_transformers_engine_needs_no_warning(policy, rollout_cfg, recwarn):
    cfg = RolloutConfig(cot=TextSamplingConfig(engine="transformers"))
    engine = build_text_engine(policy, cfg)
    assert engine.name == "transformers" and not engine.owns_weights
    assert not [w for w in recwarn if issubclass(w.category, EngineFallbackWarning)]


def test_vllm_not_installed_falls_back_with_a_warning(policy, rollout_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what `import vllm` sees when it is not installed
    with pytest.warns(EngineFallbackWarning, match="import of vllm halted"):
        engine = build_text_engine(policy, rollout_cfg)
    assert isinstance(engine, HFTextEngine)


def test_vllm_load_error_falls_back_with_a_warning(policy, rollout_cfg, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.warns(EngineFallbackWarning, match="vllm is unavailable"):
        engine = build_text_engine(policy, rollout_cfg, work_dir=not_a_dir)
    assert isinstance(engine, HFTextEngine)


def test_second_vllm_engine_in_a_process_falls_back(policy, engines, rollout_cfg):
    # vLLM's parallel state is process-global: a second engine would break the first when closed.
    with pytest.warns(EngineFallbackWarning, match="already open"):
        engine = build_text_engine(policy, rollout_cfg)
    assert isinstance(engine, HFTextEngine)
