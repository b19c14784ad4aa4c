"""One image token per row in one kernel launch: CFG combine, temperature, top-k, top-p and the draw fused.

The torch path (policy/sampling.py) makes a dozen passes over ``[B, 16384]`` logits per step, with a sort
for top-p; on a GPU each is a kernel launch, and the step is launch-bound. The Triton kernel
(rollout/fused_sampling_kernel.py) holds a row in registers and makes all those passes there, finding the
top-k and top-p cut-offs by binary search on the value instead of sorting.

It draws with the same counter-based noise as :func:`policy.sampling.sample_from_logits`, so given the same
step keys it picks the same token as the torch path (greedy: the same argmax). Where it can differ, and why:
- top-p on tied values at the cut-off: torch keeps the tied codes that its sort happens to put first, the
  kernel keeps all of them (every code whose strictly-larger mass is below ``p``); without ties at the cut-off
  (any real-valued logits) the kept sets agree;
- rounding: the probability mass compared with ``p`` is summed in a different order than torch's cumulative
  sum, and the log-prob's log-sum-exp likewise, so a mass within float32 rounding of ``p`` may be cut on one
  side and not the other, and log-probs agree to about 1e-6, not bit for bit.
"""

from __future__ import annotations

import importlib.util
from typing import Optional

import torch

from policy.sampling import SamplingParams, cfg_combine, draw_tokens

BACKENDS = ("auto", "triton", "torch")


def triton_available() -> bool:
    """Whether Triton is installed (it is not a dependency of the project: CPU installs may lack it). Looked up
    without importing it: whether Triton interprets or compiles is fixed when it is first imported."""
    return importlib.util.find_spec("triton") is not None


def fused_next_tokens(
    cond_logits: torch.Tensor,
    uncond_logits: Optional[torch.Tensor],
    params: SamplingParams,
    step_key: Optional[torch.Tensor],
    *,
    greedy: bool = False,
    with_logprobs: bool = False,
    backend: str = "auto",
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Tokens ``[B]`` (int64) drawn from ``guided = uncond + w * (cond - uncond)`` ``[B, V]`` after temperature,
    top-k and top-p, with the requests' counter-based noise of this step (``step_key`` ``[B]`` int32, from
    :func:`policy.sampling.step_keys`); and, with ``with_logprobs``, their log-probs ``[B]`` under that
    filtered distribution.

    ``uncond_logits`` None: ``cond_logits`` are already guided (the image sampler combines CFG before the
    generation head's last linear map). ``greedy``: the argmax of the guided logits (no temperature or
    filters; ``step_key`` may be None). ``backend``: "triton" runs the kernel (CUDA tensors, or CPU tensors
    when Triton was imported under ``TRITON_INTERPRET=1``), "torch" the functions of policy/sampling.py,
    "auto" the kernel on CUDA when Triton is installed, else torch.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    if not greedy and step_key is None:
        raise ValueError(
            "sampling needs step_key (the requests' keys of this step, policy.sampling.step_keys); "
            "only greedy=True may pass None"
        )
    if backend == "auto":
        backend = "triton" if cond_logits.is_cuda and triton_available() else "torch"
    if backend == "torch":
        guided = cond_logits.float()
        if uncond_logits is not None:
            guided = cfg_combine(guided, uncond_logits.float(), params.cfg_weight)
        return draw_tokens(guided, params, step_key, greedy, with_logprobs)
    return _launch(cond_logits, uncond_logits, params, step_key, greedy, with_logprobs)


def _launch(cond, uncond, params, step_key, greedy, with_logprobs):
    if not triton_available():
        raise RuntimeError(
            "backend='triton' needs the triton package (pip install triton); use backend='auto' "
            "or 'torch' to sample without it"
        )
    from triton import cdiv as triton_cdiv
    from triton.runtime.interpreter import InterpretedFunction

    from rollout import fused_sampling_kernel as k  # imported here: only this path needs Triton

    interpreted = isinstance(k.fused_sample_kernel, InterpretedFunction)
    if not cond.is_cuda and not interpreted:
        raise RuntimeError(
            "the Triton kernel needs CUDA tensors, or TRITON_INTERPRET=1 in the environment before "
            "triton is first imported to run it on CPU; use backend='torch' on CPU"
        )
    b, v = cond.shape
    cond = cond if cond.stride(-1) == 1 else cond.contiguous()  # the sampler's logits are a transposed view
    if uncond is not None:
        if uncond.shape != cond.shape:
            raise ValueError(f"cond logits {tuple(cond.shape)} and uncond logits {tuple(uncond.shape)} differ in shape")
        uncond = uncond if uncond.stride(-1) == 1 else uncond.contiguous()
    if step_key is not None and step_key.shape != (b,):
        raise ValueError(f"step_key has shape {tuple(step_key.shape)}; expected ({b},), one key per row")
    tokens = torch.empty(b, dtype=torch.long, device=cond.device)
    logprobs = torch.empty(b, dtype=torch.float32, device=cond.device) if with_logprobs else None
    if b == 0:
        return tokens, logprobs
    on_cuda = cond.is_cuda
    # torch divides by a Python-scalar temperature on CPU but multiplies by its float32 reciprocal on CUDA
    temperature = float(params.temperature)
    if on_cuda:
        temperature = (torch.tensor(1.0) / torch.tensor(temperature, dtype=torch.float32)).item()
    block = max(16, 1 << (v - 1).bit_length())
    # one row per program on a GPU; the interpreter runs programs one by one in Python, so there give each
    # program many rows (its numpy ops then run over all of them at once)
    rows = 1 if on_cuda else min(1 << (b - 1).bit_length(), max(1, (1 << 20) // block))
    k.fused_sample_kernel[(triton_cdiv(b, rows),)](
        cond,
        cond if uncond is None else uncond,
        tokens if step_key is None else step_key,
        tokens,
        tokens if logprobs is None else logprobs,
        cond.stride(0),
        cond.stride(0) if uncond is None else uncond.stride(0),
        b,
        v,
        float(params.cfg_weight),
        temperature,
        int(params.top_k),
        float(params.top_p),
        HAS_UNCOND=uncond is not None,
        TEMP_RECIPROCAL=on_cuda,
        TOP_K=0 < params.top_k < v,
        TOP_P=params.top_p < 1.0,
        GREEDY=greedy,
        WITH_LOGPROB=with_logprobs,
        ACCURATE=not interpreted,
        ROWS=rows,
        BLOCK=block,
        num_warps=4 if block <= 2048 else 8 if block <= 8192 else 16,
        enable_fp_fusion=False,
    )
    return tokens, logprobs
