"""Per-token log-probs of a padded micro-batch against unpadded, one-sample-at-a-time computations done the
T2I-R1 way (the full transformers forward with the head over every position)."""

import pytest
import torch

from learner.batch import pack_level
from learner.logprobs import PolicyLogProbs, chunked_head_logprobs, image_logprobs, semantic_logprobs
from rollout.config import ImageSamplingConfig


def _samples(policy, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = policy.ids
    n_img = policy.image_tokens
    out = []
    for prompt_len, cot_len in ((5, 4), (9, 1), (3, 7), (6, 0)):  # different lengths, one empty CoT
        body = torch.randint(0, 256, (prompt_len,), generator=g).tolist()
        cot = torch.randint(0, 256, (cot_len,), generator=g).tolist()
        image_prompt = [ids.bos] + torch.randint(0, 256, (prompt_len + 2,), generator=g).tolist() + [ids.boi]
        image = torch.randint(0, policy.codebook_size, (n_img,), generator=g).tolist()
        out.append(dict(cot_prompt=[ids.bos] + body, cot=cot, image_prompt=image_prompt, image=image))
    return out


def _semantic_reference(model, s):
    ids = torch.tensor([s["cot_prompt"] + s["cot"]])
    logits = model(input_ids=ids).logits[0]  # lm_head over every position
    lp = torch.log_softmax(logits.float(), -1)
    p = len(s["cot_prompt"])
    return torch.stack([lp[p - 1 + t, tok] for t, tok in enumerate(s["cot"])]) if s["cot"] else torch.zeros(0)


def _image_hidden(model, prompt, image):
    x = torch.cat(
        [
            model.get_input_embeddings()(torch.tensor([prompt])),
            model.prepare_embeddings_for_image_generation(torch.tensor([image[:-1]])),
        ],
        1,
    )
    return model.model.language_model(inputs_embeds=x).last_hidden_state[0]


def _image_reference(model, s):
    h = _image_hidden(model, s["image_prompt"], s["image"])
    lp = torch.log_softmax(model.model.generation_head(h).float(), -1)  # generation head over every position
    p = len(s["image_prompt"])
    return torch.stack([lp[p - 1 + t, tok] for t, tok in enumerate(s["image"])])


def _levels(policy, samples):
    sem = pack_level([s["cot_prompt"] for s in samples], [s["cot"] for s in samples], policy.ids.pad)
    img = pack_level([s["image_prompt"] for s in samples], [s["image"] for s in samples], policy.ids.pad, target_pad=0)
    return sem, img


def test_semantic_logprobs_match_unpadded_full_forward(tiny_policy):
    model, samples = tiny_policy.model, _samples(tiny_policy)
    sem, _ = _levels(tiny_policy, samples)
    with torch.no_grad():
        got = semantic_logprobs(model, sem)
        for i, s in enumerate(samples):
            ref = _semantic_reference(model, s)
            n = len(s["cot"])
            torch.testing.assert_close(got[i, :n], ref, rtol=1e-5, atol=1e-5)
            assert torch.all(got[i, n:] == 0)


def test_image_logprobs_match_unpadded_full_forward(tiny_policy):
    model, samples = tiny_policy.model, _samples(tiny_policy, seed=1)
    _, img = _levels(tiny_policy, samples)
    with torch.no_grad():
        got = image_logprobs(model, img)
        for i, s in enumerate(samples):
            torch.testing.assert_close(got[i], _image_reference(model, s), rtol=1e-5, atol=1e-5)


def test_guided_logprobs_match_hand_built_cfg_distribution(tiny_policy):
    model, samples, ids = tiny_policy.model, _samples(tiny_policy, seed=2), tiny_policy.ids
    params = ImageSamplingConfig(cfg_weight=3.0, temperature=0.7, top_k=20, top_p=1.0)
    _, img = _levels(tiny_policy, samples)
    with torch.no_grad():
        got = image_logprobs(model, img, mode="guided", sampling=params, ids=ids)
        for i, s in enumerate(samples):
            p = len(s["image_prompt"])
            uncond_prompt = [ids.bos] + [ids.pad] * (p - 2) + [ids.boi]
            cond = model.model.generation_head(_image_hidden(model, s["image_prompt"], s["image"]))[p - 1 :].float()
            uncond = model.model.generation_head(_image_hidden(model, uncond_prompt, s["image"]))[p - 1 :].float()
            logits = (uncond + 3.0 * (cond - uncond)) / 0.7
            kth = logits.topk(20, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
            ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(s["image"])[:, None]).squeeze(-1)
            finite = torch.isfinite(ref)  # sampled codes outside the top-k have probability 0 under guidance
            torch.testing.assert_close(got[i][finite], ref[finite], rtol=1e-5, atol=1e-5)
            assert torch.equal(torch.isfinite(got[i]), finite)


def test_heads_only_see_their_own_positions(tiny_policy):
    model, samples = tiny_policy.model, _samples(tiny_policy)
    seen = {"lm_head": [], "generation_head": []}
    hooks = [
        model.lm_head.register_forward_hook(lambda m, i, o: seen["lm_head"].append(i[0].shape)),
        model.model.generation_head.register_forward_hook(lambda m, i, o: seen["generation_head"].append(i[0].shape)),
    ]
    try:
        sem, img = _levels(tiny_policy, samples)
        with torch.no_grad():
            PolicyLogProbs(model)({"semantic": sem, "token": img})
    finally:
        for h in hooks:
            h.remove()
    assert seen["lm_head"] == [torch.Size([sum(len(s["cot"]) for s in samples), model.config.text_config.hidden_size])]
    assert seen["generation_head"] == [
        torch.Size([len(samples) * tiny_policy.image_tokens, model.config.text_config.hidden_size])
    ]


def test_gradients_of_padded_batch_equal_sum_of_single_sample_gradients(tiny_policy):
    model, samples = tiny_policy.model, _samples(tiny_policy, seed=3)
    params = [
        model.lm_head.weight,
        model.model.language_model.layers[0].self_attn.q_proj.weight,
        model.model.language_model.embed_tokens.weight,
    ]
    sem, img = _levels(tiny_policy, samples)
    out = PolicyLogProbs(model)({"semantic": sem, "token": img})
    weights = torch.linspace(0.5, 1.5, len(samples))  # different per-row weights catch row mix-ups
    got = torch.autograd.grad(((out["semantic"].sum(1) + out["token"].sum(1)) * weights).sum(), params)
    expected = [torch.zeros_like(p) for p in params]
    for i, s in enumerate(samples):
        total = _image_reference(model, s).sum() + _semantic_reference(model, s).sum()
        for e, g in zip(expected, torch.autograd.grad(total * weights[i], params, allow_unused=True)):
            if g is not None:
                e += g
    for g, e in zip(got, expected):
        # fp32 sums in a different order: errors scale with the gradient's size (the colour words and the trained
        # head scale of the tiny model made these gradients larger), so the absolute tolerance does too
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
    assert not any(torch.isnan(g).any() for g in got)


def _groups(policy, seed=0):
    """Samples as the learner gets them: the G samples of a prompt share its CoT prompt (here groups of 3, 2 and
    1, with CoTs of different lengths, one empty)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for prompt_len, cot_lens in ((5, (4, 0, 6)), (8, (3, 3)), (2, (5,))):
        prompt = [policy.ids.bos] + torch.randint(0, 256, (prompt_len,), generator=g).tolist()
        out += [dict(cot_prompt=prompt, cot=torch.randint(0, 256, (n,), generator=g).tolist()) for n in cot_lens]
    return out


def test_rows_sharing_a_prompt_run_it_once_with_the_same_logprobs_and_gradients(tiny_policy):
    model, samples = tiny_policy.model, _groups(tiny_policy)
    sem = pack_level([s["cot_prompt"] for s in samples], [s["cot"] for s in samples], tiny_policy.ids.pad)
    batch_rows = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: batch_rows.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        got = semantic_logprobs(model, sem)
    finally:
        hook.remove()
    # one forward of the 3 distinct prompts, then one of the 6 rows' own CoT tokens
    assert batch_rows == [(3, sem.context_ids.shape[1]), (6, sem.targets.shape[1] - 1)]
    params = [model.lm_head.weight, model.model.language_model.layers[0].self_attn.k_proj.weight]
    weights = torch.linspace(0.5, 1.5, len(samples))  # different per-row weights catch row mix-ups
    grads = torch.autograd.grad((got.sum(1) * weights).sum(), params)
    expected = [torch.zeros_like(p) for p in params]
    for i, s in enumerate(samples):
        ref = _semantic_reference(model, s)  # one unpadded forward per sample
        n = len(s["cot"])
        torch.testing.assert_close(got[i, :n].detach(), ref.detach(), rtol=1e-5, atol=1e-5)
        assert torch.all(got[i, n:] == 0)
        if n:
            for e, d in zip(expected, torch.autograd.grad(ref.sum() * weights[i], params)):
                e += d
    for d, e in zip(grads, expected):
        torch.testing.assert_close(d, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
    # and the same as the unshared path
    torch.testing.assert_close(got, semantic_logprobs(model, sem, share_contexts=False), rtol=1e-5, atol=1e-5)


def test_micro_batch_without_cot_tokens(tiny_policy):
    ids = tiny_policy.ids
    sem = pack_level([[ids.bos, 5, 6], [ids.bos]], [[], []], ids.pad)
    assert sem.targets.shape == (2, 1) and sem.num_tokens == 0
    out = semantic_logprobs(tiny_policy.model, sem)
    assert out.shape == (2, 1) and torch.all(out == 0)


def test_guided_mode_needs_sampling_settings(tiny_policy):
    _, img = _levels(tiny_policy, _samples(tiny_policy))
    with pytest.raises(ValueError, match="guided"):
        image_logprobs(tiny_policy.model, img, mode="guided")


@pytest.mark.parametrize("mode", ["conditional", "guided"])
def test_learner_logprobs_equal_the_samplers_behaviour_logprobs(tiny_policy, mode):
    """The rollout's image sampler (its own static-cache decoder) records behaviour log-probs while it draws;
    the learner's teacher-forced log-probs of the same draws must agree, in both modes."""
    from rollout.image_sampler import ImageSampler

    ids = tiny_policy.ids
    # temperature, top-k and top-p all shape the guided distribution (the conditional one ignores them)
    params = ImageSamplingConfig(cfg_weight=5.0, temperature=0.9, top_k=20, top_p=0.9)
    prompts = [[ids.bos, 10, 11, 12, ids.boi], [ids.bos, 40, 41, 42, 43, 44, 45, ids.boi]]
    drawn = ImageSampler(tiny_policy.model, ids).sample(prompts, params, seeds=[1, 2], return_logprobs=True)
    level = pack_level(prompts, drawn.tokens.tolist(), ids.pad, target_pad=0)
    with torch.no_grad():
        got = image_logprobs(tiny_policy.model, level, mode=mode, sampling=params, ids=ids)
    want = drawn.logprobs if mode == "guided" else drawn.cond_logprobs
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)
    if mode == "guided":  # the filters were in force: the drawn codes' probabilities exceed their unfiltered ones
        assert bool((drawn.logprobs > drawn.cond_logprobs).any())


def _head_case(vocab: int, tokens: int, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(dim, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, dim, generator=g) * 0.5)
    hidden = torch.randn(tokens, dim, generator=g).requires_grad_(True)
    return head, hidden, torch.randint(0, vocab, (tokens,), generator=g)


@pytest.mark.parametrize("chunks", [1, 3, 7, 40])  # 40 > 23 tokens: some slices are empty
def test_chunked_head_logprobs_equal_the_full_log_softmax(chunks):
    head, hidden, targets = _head_case(vocab=97, tokens=23)
    got = chunked_head_logprobs(head, hidden, targets, chunks)
    weights = torch.linspace(-1.0, 2.0, 23)
    got_grads = torch.autograd.grad((got * weights).sum(), [hidden, head.weight])
    full = torch.log_softmax(head(hidden).float(), -1).gather(-1, targets[:, None])[:, 0]  # [N, V] at once
    want_grads = torch.autograd.grad((full * weights).sum(), [hidden, head.weight])
    torch.testing.assert_close(got, full, rtol=1e-6, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_semantic_logprobs_in_chunks_equal_one_chunk_and_call_the_head_once_per_chunk(tiny_policy):
    model, samples = tiny_policy.model, _samples(tiny_policy)
    sem, _ = _levels(tiny_policy, samples)  # 12 CoT tokens
    params = [model.lm_head.weight, model.model.language_model.layers[1].mlp.up_proj.weight]
    whole = semantic_logprobs(model, sem, chunks=1)
    whole_grads = torch.autograd.grad(whole.sum(), params)
    calls = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        out = PolicyLogProbs(model, chunk_tokens=5)({"semantic": sem})["semantic"]
        assert calls == [4, 4, 4]  # 12 tokens need 3 chunks of at most 5: equal slices
        grads = torch.autograd.grad(out.sum(), params)  # the backward recomputes each chunk's logits
        assert calls == [4, 4, 4] * 2
        calls.clear()
        # a number of chunks agreed by all ZeRO-3 ranks: one call per chunk, even an empty one
        PolicyLogProbs(model, chunk_tokens=5)({"semantic": sem}, semantic_chunks=5)
        assert calls == [3, 3, 3, 3, 0]
    finally:
        hook.remove()
    torch.testing.assert_close(out, whole, rtol=1e-6, atol=1e-6)
    for g, w in zip(grads, whole_grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def _peak_cpu_bytes(fn) -> int:
    """The most CPU memory allocated at once while ``fn`` runs, beyond what was allocated before: the running sum
    of the allocator's allocation (+) and free (-) events recorded by torch's profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


def test_chunked_head_logprobs_bound_the_memory_at_a_large_vocabulary():
    """N = 512 tokens, V = 32768 words, chunks of c = 64 tokens, float32. The whole computation holds four
    [rows, V] float32 buffers at once in its backward (the logits kept for log-sum-exp's backward, the softmax, the
    gradient of the logits, the gradient through the gather), so the unchunked peak is >= 4 N V 4 bytes = 256 MiB
    (measured: 256 MiB); the chunked one is <= 4 c V 4 bytes + the weight's gradient V D 4 bytes + slack for
    small buffers = 32 + 2 + 1 MiB (measured: 34 MiB), which the unchunked computation exceeds 7 times over."""
    n, vocab, dim, c = 512, 32768, 16, 64
    head, hidden, targets = _head_case(vocab, n, dim)

    def step(chunks):
        return lambda: chunked_head_logprobs(head, hidden, targets, chunks).sum().backward()

    float_bytes = 4
    bound = 4 * c * vocab * float_bytes + vocab * dim * float_bytes + 2**20
    chunked, whole = _peak_cpu_bytes(step(n // c)), _peak_cpu_bytes(step(1))
    assert chunked <= bound, (chunked, bound)
    assert whole >= 4 * n * vocab * float_bytes > 7 * bound, (whole, bound)


@pytest.fixture(autouse=True)
def _one_thread():
    # the CPU is shared by several processes: one OpenMP thread avoids oversubscription stalls
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
