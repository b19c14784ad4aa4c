"""The fused Triton sampling kernel against the torch path (policy/sampling.py) it must reproduce.

Without CUDA the kernel runs on CPU under Triton's interpreter (``TRITON_INTERPRET=1``); with CUDA it is
compiled and runs on the GPU (also at Janus-Pro's 16,384 codes). The same step keys must give the same tokens,
so "same distribution" is checked as "same draws", plus a frequency check against the analytic probabilities.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from policy.sampling import cfg_combine, draw_tokens, filter_logits, seed_keys, step_keys
from rollout.config import ImageSamplingConfig
from rollout.fused_sampling import fused_next_tokens, triton_available

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"


def _kernel_runs_here() -> bool:
    """Whether this process can run the kernel: on CUDA, or on CPU with Triton in interpreter mode.

    Triton makes ``@triton.jit`` functions (its own ``tl.argmax`` included) interpreted only if
    ``TRITON_INTERPRET=1`` is set when they are defined, and it reads the variable again when it first launches a
    kernel; so on CPU this works only if nothing imported triton before this module, and the variable then stays
    set for the rest of the process (nothing else runs Triton on a machine without CUDA). In a full run something
    imports triton first: then :func:`test_kernel_tests_under_the_interpreter_in_a_subprocess` runs them.
    """
    if not triton_available():
        return False
    if CUDA:
        return True
    if "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.argmax, InterpretedFunction)


KERNEL_HERE = _kernel_runs_here()
needs_kernel = pytest.mark.skipif(
    not KERNEL_HERE,
    reason="triton missing, or imported before this module without TRITON_INTERPRET=1 (the subprocess test runs these)",
)


def params(**kw) -> ImageSamplingConfig:
    return ImageSamplingConfig(**kw)


def both(cond, uncond, p, keys, greedy=False):
    """(kernel tokens, kernel log-probs, torch tokens, torch log-probs)."""
    t, lp = fused_next_tokens(cond, uncond, p, keys, greedy=greedy, with_logprobs=True, backend="triton")
    rt, rlp = fused_next_tokens(cond, uncond, p, keys, greedy=greedy, with_logprobs=True, backend="torch")
    return t, lp, rt, rlp


def keys_for(n: int, step: int = 0) -> torch.Tensor:
    return step_keys(seed_keys(range(n), DEVICE), step)


# --------------------------------------------------------------------------------------------------- hand-made


@needs_kernel
def test_greedy_hand_values_and_first_index_on_ties():
    cond = torch.tensor([[2.0, 0.0, -1.0, 0.5], [1.0, 3.0, 3.0, 0.0]], device=DEVICE)
    uncond = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], device=DEVICE)
    # w = 5: row 0 = [6, -4, -9, -1.5] -> 0; row 1 = [5, 15, 15, 0] -> 1 (first of the tied maxima)
    t, _ = fused_next_tokens(cond, uncond, params(cfg_weight=5.0), None, greedy=True, backend="triton")
    assert t.tolist() == [0, 1]
    # w = 0: the unconditional rows, all tied in row 0 -> 0; row 1 all zeros -> 0
    t, _ = fused_next_tokens(cond, uncond, params(cfg_weight=0.0), None, greedy=True, backend="triton")
    assert t.tolist() == [0, 0]


@needs_kernel
def test_top_k_keeps_ties_with_the_kth_value():
    n = 256
    logits = torch.tensor([[1.0, 2.0, 2.0, 0.0]], device=DEVICE).expand(n, -1)
    t, lp, rt, rlp = both(logits, None, params(top_k=1), keys_for(n))
    assert torch.equal(t, rt)
    assert set(t.tolist()) == {1, 2}  # both tied codes survive top-k = 1, nothing else
    assert torch.allclose(lp, torch.full_like(lp, math.log(0.5)), atol=1e-6)


@needs_kernel
def test_top_p_hand_values():
    n = 256
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().to(DEVICE).expand(n, -1)
    # mass strictly above each code: 0, 0.5, 0.8, 0.95; p = 0.7 keeps codes 0 and 1, renormalised to 5/8, 3/8
    t, lp, rt, rlp = both(logits, None, params(top_p=0.7), keys_for(n))
    assert torch.equal(t, rt) and set(t.tolist()) == {0, 1}
    assert torch.allclose(lp, torch.where(t == 0, math.log(5 / 8), math.log(3 / 8)).float(), atol=1e-6)
    t, _, rt, _ = both(logits, None, params(top_p=0.01), keys_for(n))
    assert (t == 0).all() and (rt == 0).all()  # the most likely code always stays


@needs_kernel
def test_top_p_tie_at_the_cutoff_keeps_every_tied_code():
    """The documented difference: four equal logits, p = 0.5. torch keeps the two its sort puts first (mass
    above them 0 and 0.25), the kernel all four (the mass strictly above each is 0)."""
    logits = torch.zeros(1, 4, device=DEVICE)
    t, lp, _, rlp = both(logits, None, params(top_p=0.5), keys_for(1))
    assert lp.item() == pytest.approx(math.log(0.25), abs=1e-6)
    assert rlp.item() == pytest.approx(math.log(0.5), abs=1e-6)
    assert torch.isfinite(filter_logits(logits, params(top_p=0.5))).sum() == 2


# --------------------------------------------------------------------------------------------------- random


VARIANTS = [
    params(),
    params(cfg_weight=1.0),
    params(cfg_weight=1.5, temperature=0.7),
    params(temperature=1.3, top_k=10),
    params(top_p=0.8),
    params(cfg_weight=3.0, temperature=0.9, top_k=40, top_p=0.9),
    params(cfg_weight=0.0, top_k=300),  # k >= V: no filtering
]


@needs_kernel
@pytest.mark.parametrize("p", VARIANTS, ids=lambda p: f"w{p.cfg_weight}-t{p.temperature}-k{p.top_k}-p{p.top_p}")
def test_same_tokens_as_torch_for_the_same_keys(p):
    g = torch.Generator().manual_seed(0)
    b, v = 128, 200  # not a power of two: the kernel masks the tail of its block
    cond = (torch.randn(b, v, generator=g) * 3).to(DEVICE)
    uncond = (torch.randn(b, v, generator=g) * 3).to(DEVICE)
    for step in (0, 1):
        t, lp, rt, rlp = both(cond, uncond, p, keys_for(b, step))
        assert torch.equal(t, rt), step
        assert torch.allclose(lp, rlp, atol=1e-5, rtol=0), step
    t, lp, rt, rlp = both(cond, uncond, p, None, greedy=True)
    assert torch.equal(t, rt)
    assert torch.allclose(lp, rlp, atol=1e-5, rtol=0)


@needs_kernel
def test_already_guided_and_strided_logits():
    """The image sampler passes CFG-combined logits as a transposed view (uncond None)."""
    g = torch.Generator().manual_seed(1)
    cond, uncond = (torch.randn(2, 16, 256, generator=g) * 2).to(DEVICE)
    guided = cfg_combine(cond, uncond, 5.0)
    strided = guided.t().contiguous().t()
    assert strided.stride(-1) != 1
    p = params(temperature=0.8, top_k=50)
    keys = keys_for(16)
    t, _ = fused_next_tokens(strided, None, p, keys, backend="triton")
    assert torch.equal(t, fused_next_tokens(cond, uncond, p, keys, backend="triton")[0])
    assert torch.equal(t, draw_tokens(guided, p, keys, greedy=False, with_logprobs=False)[0])


@needs_kernel
@pytest.mark.gpu  # 16,384 codes is too slow for the Triton interpreter on CPU
@pytest.mark.parametrize("p", VARIANTS[:6], ids=lambda p: f"w{p.cfg_weight}-t{p.temperature}-k{p.top_k}-p{p.top_p}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_same_tokens_as_torch_at_janus_pro_codebook_on_cuda(p, dtype):
    g = torch.Generator().manual_seed(2)
    b, v = 32, 16384
    cond = (torch.randn(b, v, generator=g) * 3).to(DEVICE, dtype)
    uncond = (torch.randn(b, v, generator=g) * 3).to(DEVICE, dtype)
    for step in range(3):
        t, lp, rt, rlp = both(cond, uncond, p, keys_for(b, step))
        assert torch.equal(t, rt), step
        assert torch.allclose(lp, rlp, atol=1e-4, rtol=0), step
    assert torch.equal(*both(cond, uncond, p, None, greedy=True)[::2])


# --------------------------------------------------------------------------------------------------- distribution


@needs_kernel
def test_draw_frequencies_match_softmax_probabilities():
    """4,000 draws (one per seed) from one row after temperature 0.8 and top-k 6: every code's frequency within
    5 binomial standard deviations of softmax(top-6(logits) / 0.8), plus 3 counts of slack for rare codes;
    filtered codes never drawn. Fixed seeds, so the outcome is deterministic."""
    n, v = 4000, 32
    logits = torch.randn(v, generator=torch.Generator().manual_seed(3)) * 1.5
    p = params(temperature=0.8, top_k=6)
    t, _ = fused_next_tokens(logits.to(DEVICE).expand(n, -1), None, p, keys_for(n), backend="triton")
    probs = torch.softmax(filter_logits(logits, p).double(), -1)
    freq = torch.bincount(t.cpu(), minlength=v).double() / n
    assert (freq[probs == 0] == 0).all()
    assert ((freq - probs).abs() <= 5 * (probs * (1 - probs) / n).sqrt() + 3 / n).all()


# --------------------------------------------------------------------------------------------------- dispatch


def test_auto_backend_without_cuda_is_the_torch_path_bit_for_bit():
    g = torch.Generator().manual_seed(4)
    cond, uncond = torch.randn(2, 8, 64, generator=g) * 3
    p = params(cfg_weight=2.0, temperature=0.9, top_k=20, top_p=0.9)
    keys = step_keys(seed_keys(range(8)), 7)
    t, lp = fused_next_tokens(cond, uncond, p, keys, with_logprobs=True)
    rt, rlp = draw_tokens(cfg_combine(cond, uncond, 2.0), p, keys, greedy=False, with_logprobs=True)
    assert torch.equal(t, rt) and torch.equal(lp, rlp)


@needs_kernel
def test_rejects_bad_arguments():
    logits = torch.zeros(2, 8, device=DEVICE)
    with pytest.raises(ValueError, match="backend"):
        fused_next_tokens(logits, None, params(), None, greedy=True, backend="cuda")
    with pytest.raises(ValueError, match="step_key"):
        fused_next_tokens(logits, None, params(), None)
    with pytest.raises(ValueError, match="one key per row"):
        fused_next_tokens(logits, None, params(), keys_for(3), backend="triton")
    with pytest.raises(ValueError, match="differ in shape"):
        fused_next_tokens(logits, logits[:1], params(), keys_for(2), backend="triton")


def _interpreter_tests() -> tuple[list[str], int]:
    """This module's kernel tests that run without CUDA (marked ``needs_kernel``, not ``gpu``): their
    names and how many test items they make (one per parametrization)."""
    names, items = [], 0
    for name, fn in globals().items():
        marks = getattr(fn, "pytestmark", []) if name.startswith("test_") else []
        if needs_kernel.mark in marks and not any(m.name == "gpu" for m in marks):
            names.append(name)
            items += math.prod(len(m.args[1]) for m in marks if m.name == "parametrize")
    return names, items


@pytest.mark.skipif(
    KERNEL_HERE or CUDA or not triton_available(), reason="the kernel tests run in this process (or triton is missing)"
)
def test_kernel_tests_under_the_interpreter_in_a_subprocess():
    """A fresh interpreter with ``TRITON_INTERPRET=1`` from the start runs this module's kernel tests: every one
    of them passes (none skipped, failed or in error)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(root)}
    names, expected = _interpreter_tests()
    assert expected >= len(names) > 0
    node_ids = [f"{__file__}::{n}" for n in names]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *node_ids],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    summary = out.stdout.strip().splitlines()[-1]  # e.g. "14 passed, 2 warnings in 31.02s"
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", summary) if k not in ("warning", "warnings")}
    assert counts == {"passed": expected}, summary
