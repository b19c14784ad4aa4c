"""Reward server throughput: whole groups per call (ours) against one image per call (T2I-R1 scores one image
at a time), and the cost of the gRPC hop against calling the scorer in-process.

For each scorer, both ways use the same server (in this process, on 127.0.0.1), the same scorer object and the
same images; rounds alternate between the ways and medians are reported. Torch runs one thread, as in a Ray
replica with a fractional CPU share (Ray sets OMP_NUM_THREADS=1 there). Scorers, both built through the registry:

* ``objects``: the embedded object-presence reward (EfficientNet-Lite0 + MiniLM, real weights), model batch
  ``rewards.objects.batch_size`` (8 = one group of T2I-R1's G = 8);
* ``clip``: CLIPScore on the tiny random CLIP of the scorer tests (tests/tiny_reward_models.py), where the
  model is cheap and the per-call costs (prompt encoding, the call itself) are what a group call saves.

Images are 384 px (Janus-Pro's), and for the tiny CLIP also 16 px (what the tiny random Janus of the CPU
embedded default draws), where PNG coding, paid per image either way, no longer hides the per-call costs.

The details also give the in-process ratio (the scorer on a whole group vs image by image, no gRPC) and the PNG
encode / decode cost per image, which is paid per image either way.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from benchmarks.results_io import Entry
from core.images import decode_png, encode_png
from core.records import PromptRecord
from rewards.base import Scorer
from rewards.client import RewardClient
from rewards.config import RewardsConfig
from rewards.registry import build_scorer
from rewards.server import RewardServer, ServerThread

GROUP = 8  # T2I-R1's G
JANUS_PRO_SIDE = 384  # Janus-Pro's images
TINY_SIDE = 16  # the tiny random Janus's images (the CPU embedded default)
ROUNDS = 7
PROMPTS = [
    PromptRecord("a photo of a dog and a teddy bear", "object", ["dog", "teddy bear"], index=0),
    PromptRecord("a photo of a red car left of a cat", "spatial", ["car", "cat"],
                 spatial_info={"obj1": "car", "obj2": "cat", "locality": "left of"}, index=1),
]


def smooth_images(n: int, side: int, seed: int) -> list[np.ndarray]:
    """Blurry colour fields (upsampled 12x12 noise): PNG sizes like real images, unlike pure noise."""
    rng = np.random.default_rng(seed)
    return [np.asarray(Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).resize(
        (side, side), Image.BICUBIC)) for _ in range(n)]


def _seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _median_rounds(fns: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median seconds of each function over ROUNDS rounds, the functions alternating within a round."""
    for fn in fns.values():  # warm-up: lazy initialisation, allocator, connections
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(ROUNDS):
        for k, fn in fns.items():
            times[k].append(_seconds(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def measure(label: str, scorer: Scorer, cfg: RewardsConfig, side: int) -> list[Entry]:
    server = ServerThread(RewardServer(scorer, cfg, "127.0.0.1"))
    server.start()
    groups = [smooth_images(GROUP, side, seed) for seed in range(len(PROMPTS))]
    n_images = GROUP * len(PROMPTS)
    pngs = [encode_png(im) for im in groups[0]]
    try:
        with RewardClient(cfg, {scorer.name: [server.address]}, scorers=[scorer.name]) as client:
            t = _median_rounds({
                # ours: one call per group, the groups in parallel (the client's way)
                "group_calls": lambda: client.score(PROMPTS, groups),
                # baseline: one call per image, one after another (the reference's way)
                "image_calls": lambda: [client.score([p], [[im]]) for p, g in zip(PROMPTS, groups) for im in g],
                "grpc_one_group": lambda: client.score(PROMPTS[:1], groups[:1]),
                "local_one_group": lambda: scorer.score(PROMPTS[0], groups[0]),
                "local_image_by_image": lambda: [scorer.score(PROMPTS[0], [im]) for im in groups[0]],
                "png_encode": lambda: [encode_png(im) for im in groups[0]],
                "png_decode": lambda: [decode_png(p) for p in pngs],
            })
            # Same answers both ways: the speed-up is not bought with other scores.
            a = client.score(PROMPTS, groups).scores(scorer.name)
            b = np.concatenate([client.score([p], [[im]]).scores(scorer.name) for p, g in zip(PROMPTS, groups)
                                for im in g])
    finally:
        server.stop(0)
    per_image_ms = {k: round(t[k] / GROUP * 1e3, 2) for k in ("png_encode", "png_decode")}
    common = {"scorer": f"{label} ({type(scorer).__name__} v{scorer.version}, through the registry)",
              "group": GROUP, "image": f"{side}x{side} PNG", "torch_threads": torch.get_num_threads(),
              "rounds": ROUNDS, "statistic": "median"}
    return [
        Entry(name=f"reward_server_group_vs_per_image_{label}", ours=n_images / t["group_calls"],
              baseline=n_images / t["image_calls"], unit="images/s", target=3.0,
              details={**common, "groups": len(PROMPTS), "model_batch": getattr(cfg, scorer.name).batch_size,
                       "in_process_group_vs_per_image": round(t["local_image_by_image"] / t["local_one_group"], 2),
                       "png_encode_ms_per_image": per_image_ms["png_encode"],
                       "png_decode_ms_per_image": per_image_ms["png_decode"],
                       "max_abs_score_diff": float(np.abs(a - b).max()),
                       "ours": "one Score call per group, groups in parallel",
                       "baseline": "one Score call per image, sequential (T2I-R1 scores one image at a time)"}),
        Entry(name=f"reward_grpc_hop_vs_in_process_{label}", ours=t["grpc_one_group"] * 1e3,
              baseline=t["local_one_group"] * 1e3, unit="ms/group", higher_is_better=False,
              details={**common, "hop_overhead_ms": round((t["grpc_one_group"] - t["local_one_group"]) * 1e3, 1),
                       "png_encode_ms_per_image": per_image_ms["png_encode"],
                       "png_decode_ms_per_image": per_image_ms["png_decode"],
                       "ours": "client -> gRPC on 127.0.0.1 -> server: PNG encode, call, PNG decode, score",
                       "baseline": "scorer.score() on the decoded arrays in this process"}),
    ]


def run() -> list[Entry]:
    from tests.tiny_reward_models import tiny_clip_dir

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = RewardsConfig()
        cfg.objects.enabled = True
        entries = measure("objects", build_scorer("objects", cfg), cfg, JANUS_PRO_SIDE)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = RewardsConfig()
            cfg.clip.enabled, cfg.clip.path = True, str(tiny_clip_dir(Path(tmp) / "clip"))
            clip = build_scorer("clip", cfg)
            entries += measure("tiny_clip", clip, cfg, JANUS_PRO_SIDE)
            entries += measure("tiny_clip_16px", clip, cfg, TINY_SIDE)
    finally:
        torch.set_num_threads(threads)  # benchmarks.run runs the other benchmarks in this process
    return entries
