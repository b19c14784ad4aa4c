"""Image tokens per second on a GPU at Janus-Pro-1B and -7B shapes: our sampler with CUDA graphs and the fused
sampling kernel vs the T2I-R1 loop (benchmarks/bench_sampler.py's ``t2i_r1_loop``), same process.

Random weights (the speed of a decode step does not depend on their values) in bfloat16, 16 images of 576
tokens with CFG (32 rows), codebook 16,384, prompts of bench_sampler's length. Also reported: our sampler
without graphs, transformers' ``generate(generation_mode="image")``, and how close our step comes to the
memory-bandwidth limit: a decode step must read every weight once, so weight bytes per step / step time,
divided by the bandwidth measured with a large device-to-device copy, is the fraction of the limit reached. The
graph step also reads the whole static KV cache every step (future slots masked): its bytes are reported, and the
fraction with them counted. ``make bench`` runs this only with CUDA; benchmarks/gpu_check.sh runs one shape per
call (and, in its dry run, the same code on CPU with the tiny shapes).
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
from rollout.image_sampler import DecoderWeights, ImageSampler, kv_cache_bytes

# Janus-Pro's LLaMA shapes (docs/ALGORITHM.md §9: hidden, layers, heads = KV heads, FFN), 576 image tokens and
# 16,384 codes; "tiny" is the embedded tiny model, for the CPU dry run of benchmarks/gpu_check.sh.
SHAPES = {
    "1b": TinyModelConfig(
        seed=0,
        hidden_size=2048,
        num_layers=24,
        num_heads=16,
        num_kv_heads=16,
        intermediate_size=5632,
        image_grid=24,
        codebook_size=16384,
    ),
    "7b": TinyModelConfig(
        seed=0,
        hidden_size=4096,
        num_layers=30,
        num_heads=32,
        num_kv_heads=32,
        intermediate_size=11008,
        image_grid=24,
        codebook_size=16384,
    ),
    "tiny": TinyModelConfig(seed=0),
}
GROUP = 16  # images per batch
ROUNDS = 3
COPY_BYTES = {"cuda": 2 << 30, "cpu": 64 << 20}


def run() -> list[Entry]:
    if not torch.cuda.is_available():
        print("   bench_gpu: no CUDA device, nothing measured")
        return []
    entries = []
    for name in ("1b", "7b"):
        entries.append(measure(name))
        torch.cuda.empty_cache()  # the 1B model's blocks, before the 7B model is built
    return entries


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def device_name(device: torch.device | str) -> str:
    return torch.cuda.get_device_name(device) if torch.device(device).type == "cuda" else "cpu"


def copy_bandwidth(device: str = "cuda") -> float:
    """Bytes per second of a large copy on the device (each byte read once and written once)."""
    src = torch.empty(COPY_BYTES[torch.device(device).type], dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    iters = 20
    synchronize(device)
    t = time.perf_counter()
    for _ in range(iters):
        dst.copy_(src)
    synchronize(device)
    return 2 * src.numel() * iters / (time.perf_counter() - t)


def weight_bytes_per_step(model) -> int:
    """Bytes of the weights one decode step reads: every decoder layer, the final norm, the generation head and
    the generation aligner (one embedding row per token is negligible)."""
    w = DecoderWeights.read(model)
    tensors = [w.final_norm, w.head_proj, w.head_proj_bias, w.head_out, w.head_out_bias]
    tensors += [t for lw in w.layers for t in vars(lw).values()]
    tensors += list(model.model.generation_aligner.parameters())
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def kv_bytes_per_graph_step(model, images: int, prompt_tokens: int) -> int:
    """Bytes of the static KV cache (cond and uncond rows, every layer, keys and values), which the graph step
    reads whole at every token."""
    text = model.config.text_config
    n = model.config.vision_config.num_image_tokens
    capacity = -(-(prompt_tokens + n) // ImageSampler.CACHE_ROUND) * ImageSampler.CACHE_ROUND
    head_dim = text.hidden_size // text.num_attention_heads
    element = next(model.parameters()).element_size()
    return kv_cache_bytes(text.num_hidden_layers, 2 * images, text.num_key_value_heads, capacity, head_dim, element)


def build(shape: TinyModelConfig, device: str, vocab_size: int | None = None):
    """A random Janus of this shape, built on the device in float32, then bfloat16 on CUDA (float32 on CPU)."""
    with torch.device(device):
        model, tok = build_tiny_janus(shape, vocab_size)
    if torch.device(device).type == "cuda":
        model = model.to(torch.bfloat16)
    return model, SpecialIds.from_tokenizer(tok)


def measure(
    name: str, shape: TinyModelConfig | None = None, device: str = "cuda", images: int = GROUP, rounds: int = ROUNDS
) -> Entry:
    """The ``gpu_sampler_image_tokens_per_s_{name}`` entry, at ``SHAPES[name]`` unless ``shape`` is given."""
    shape = shape or SHAPES[name]
    bandwidth = copy_bandwidth(device)
    model, ids = build(shape, device)
    n = model.config.vision_config.num_image_tokens
    g = torch.Generator().manual_seed(0)
    prompts = [
        [ids.bos] + torch.randint(0, 250, (PROMPT_TOKENS - 2,), generator=g).tolist() + [ids.boi] for _ in range(images)
    ]
    params = ImageSamplingConfig(cfg_weight=5.0, max_batch=images)
    seeds = list(range(images))
    graphs, eager = build_image_sampler(model, ids, cuda_graphs=True), ImageSampler(model, ids)

    def timed(fn) -> float:
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - t

    def ours():
        graphs.sample(prompts, params, seeds)

    def ours_eager():
        eager.sample(prompts, params, seeds)

    def baseline():
        t2i_r1_loop(model, ids, prompts, params.cfg_weight)

    def hf_generate():
        x = torch.tensor(prompts, device=device)
        model.generation_config.guidance_scale = params.cfg_weight
        with torch.inference_mode():
            model.generate(x, attention_mask=torch.ones_like(x), generation_mode="image", do_sample=True)

    for fn in (ours, ours_eager, baseline):  # warm-up: graph capture, Triton and cuBLAS compilation, caches
        fn()
    ours_s, eager_s, base_s = [], [], []
    for _ in range(rounds):
        ours_s.append(timed(ours))
        eager_s.append(timed(ours_eager))
        base_s.append(timed(baseline))
    try:  # one run: it is only informative, and must not cost the entry if this transformers version lacks it
        hf = round(images * model.config.vision_config.num_image_tokens / timed(hf_generate), 1)
    except Exception as e:  # noqa: BLE001 (any failure of the library's image mode is reported, not raised)
        hf = f"failed: {type(e).__name__}: {e}".splitlines()[0]
    tokens = images * n
    ours_t = statistics.median(ours_s)
    step_s = ours_t / n  # the prefill is included: a slight underestimate of the fractions
    w_bytes = weight_bytes_per_step(model)
    kv_bytes = kv_bytes_per_graph_step(model, images, PROMPT_TOKENS)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return Entry(
        name=f"gpu_sampler_image_tokens_per_s_{name}",
        ours=round(tokens / ours_t, 1),
        baseline=round(tokens / statistics.median(base_s), 1),
        unit="image tokens/s",
        target=10.0,
        details={
            "device": device_name(device),
            "model": f"random Janus, LLaMA hidden {shape.hidden_size} x {shape.num_layers} layers, "
            f"{shape.num_heads} heads, FFN {shape.intermediate_size}, codebook {shape.codebook_size}, {dtype}",
            "batch": f"{images} images x {n} tokens, CFG 5 (2 x {images} rows), prompts of {PROMPT_TOKENS} tokens",
            "ours": "build_image_sampler(cuda_graphs=True): one captured decode step replayed, fused Triton sampling",
            "baseline": "T2I-R1 loop: DynamicCache, eager HF forward per token, multinomial",
            "ours_s": [round(s, 3) for s in ours_s],
            "baseline_s": [round(s, 3) for s in base_s],
            "ours_without_graphs_image_tokens_per_s": round(tokens / statistics.median(eager_s), 1),
            "hf_generate_image_tokens_per_s": hf,
            "weight_bytes_per_step": w_bytes,
            "kv_cache_bytes_per_graph_step": kv_bytes,
            "copy_bandwidth_gb_s": round(bandwidth / 1e9, 1),
            "bandwidth_limit_fraction": round(w_bytes / step_s / bandwidth, 3),
            "bandwidth_limit_fraction_with_kv": round((w_bytes + kv_bytes) / step_s / bandwidth, 3),
            "targets": "ours >= 10x the T2I-R1 loop; bandwidth_limit_fraction >= 0.5 at 16 images",
        },
    )
