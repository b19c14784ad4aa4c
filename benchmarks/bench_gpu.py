"""Image tokens per second on a GPU at Janus-Pro-1B and -7B shapes: our sampler with CUDA graphs and the fused
sampling kernel vs the T2I-R1 loop (benchmarks/bench_sampler.py's ``t2i_r1_loop``), same process.

Random weights (the speed of a decode step does not depend on their values) in bfloat16, 16 images of 576
tokens with CFG (32 rows), codebook 16,384, prompts of bench_sampler's length. Also reported: our sampler
without graphs, transformers' ``generate(generation_mode="image")``, and how close our step comes to the
memory-bandwidth limit: a decode step must read every weight once, so weight bytes per step / step time,
divided by the HBM bandwidth measured with a large device-to-device copy, is the fraction of the limit
reached. Without CUDA it returns nothing.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.bench_sampler import PROMPT_TOKENS, t2i_r1_loop
from benchmarks.results_io import Entry
from policy.config import TinyModelConfig
from policy.model import build_tiny_janus
from policy.tokenizer import SpecialIds
from rollout.config import ImageSamplingConfig
from rollout.factories import build_image_sampler
from rollout.image_sampler import DecoderWeights, ImageSampler

# LLaMA shapes of Janus-Pro's language model (hidden, layers, heads = KV heads, FFN)
SHAPES = {
    "1b": dict(hidden_size=2048, num_layers=24, num_heads=16, num_kv_heads=16, intermediate_size=5632),
    "7b": dict(hidden_size=4096, num_layers=30, num_heads=32, num_kv_heads=32, intermediate_size=11008),
}
GROUP = 16  # images per batch
ROUNDS = 3
COPY_BYTES = 2 << 30


def run() -> list[Entry]:
    if not torch.cuda.is_available():
        print("   bench_gpu: no CUDA device, nothing measured")
        return []
    bandwidth = hbm_bandwidth()
    return [_measure(name, bandwidth) for name in SHAPES]


def hbm_bandwidth() -> float:
    """Bytes per second of a large device-to-device copy (each byte read once and written once)."""
    src = torch.empty(COPY_BYTES, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    iters = 20
    start.record()
    for _ in range(iters):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    return 2 * COPY_BYTES * iters / (start.elapsed_time(end) / 1e3)


def weight_bytes_per_step(model) -> int:
    """Bytes of the weights one decode step reads: every decoder layer, the final norm, the generation head and
    the generation aligner (one embedding row per token is negligible)."""
    w = DecoderWeights.read(model)
    tensors = [w.final_norm, w.head_proj, w.head_proj_bias, w.head_out, w.head_out_bias]
    tensors += [t for lw in w.layers for t in vars(lw).values()]
    tensors += list(model.model.generation_aligner.parameters())
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _build(name: str):
    """A random Janus at the named shape, built on the GPU in float32 and cast to bfloat16."""
    cfg = TinyModelConfig(seed=0, image_grid=24, codebook_size=16384, **SHAPES[name])
    with torch.device("cuda"):
        model, tok = build_tiny_janus(cfg)
    return model.to(torch.bfloat16), SpecialIds.from_tokenizer(tok)


def _timed(fn) -> float:
    torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t


def _measure(name: str, bandwidth: float) -> Entry:
    model, ids = _build(name)
    n = model.config.vision_config.num_image_tokens
    g = torch.Generator().manual_seed(0)
    prompts = [[ids.bos] + torch.randint(0, 250, (PROMPT_TOKENS - 2,), generator=g).tolist() + [ids.boi]
               for _ in range(GROUP)]
    params = ImageSamplingConfig(cfg_weight=5.0, max_batch=GROUP)
    seeds = list(range(GROUP))
    graphs, eager = build_image_sampler(model, ids, cuda_graphs=True), ImageSampler(model, ids)

    def ours():
        graphs.sample(prompts, params, seeds)

    def ours_eager():
        eager.sample(prompts, params, seeds)

    def baseline():
        t2i_r1_loop(model, ids, prompts, params.cfg_weight)

    def hf_generate():
        x = torch.tensor(prompts, device="cuda")
        model.generation_config.guidance_scale = params.cfg_weight
        with torch.inference_mode():
            model.generate(x, attention_mask=torch.ones_like(x), generation_mode="image", do_sample=True)

    for fn in (ours, ours_eager, baseline):  # warm-up: graph capture, Triton and cuBLAS compilation, caches
        fn()
    ours_s, eager_s, base_s = [], [], []
    for _ in range(ROUNDS):
        ours_s.append(_timed(ours))
        eager_s.append(_timed(ours_eager))
        base_s.append(_timed(baseline))
    hf_s = _timed(hf_generate)  # one run: it is only informative
    tokens = GROUP * n
    ours_t = statistics.median(ours_s)
    step_s = ours_t / n  # the prefill is included: a slight underestimate of the fraction
    w_bytes = weight_bytes_per_step(model)
    entry = Entry(
        name=f"gpu_sampler_image_tokens_per_s_{name}",
        ours=round(tokens / ours_t, 1),
        baseline=round(tokens / statistics.median(base_s), 1),
        unit="image tokens/s",
        details={
            "device": torch.cuda.get_device_name(0),
            "model": f"random Janus-Pro-{name.upper()} shape: LLaMA hidden {SHAPES[name]['hidden_size']} x "
                     f"{SHAPES[name]['num_layers']} layers, {SHAPES[name]['num_heads']} heads, FFN "
                     f"{SHAPES[name]['intermediate_size']}, codebook 16384, bfloat16",
            "batch": f"{GROUP} images x {n} tokens, CFG 5 (2 x {GROUP} rows), prompts of {PROMPT_TOKENS} tokens",
            "ours": "build_image_sampler(cuda_graphs=True): one captured decode step replayed, fused Triton sampling",
            "baseline": "T2I-R1 loop: DynamicCache, eager HF forward per token, multinomial",
            "ours_s": [round(s, 3) for s in ours_s],
            "baseline_s": [round(s, 3) for s in base_s],
            "ours_without_graphs_image_tokens_per_s": round(tokens / statistics.median(eager_s), 1),
            "hf_generate_image_tokens_per_s": round(tokens / hf_s, 1),
            "weight_bytes_per_step": w_bytes,
            "hbm_bandwidth_gb_s": round(bandwidth / 1e9, 1),
            "bandwidth_limit_fraction": round(w_bytes / step_s / bandwidth, 3),
        },
    )
    del graphs, eager, model
    torch.cuda.empty_cache()
    return entry
