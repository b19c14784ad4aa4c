"""Evaluation scoring throughput: an evaluator scoring a batch of benchmark images per call (ours: the score stage
sends ``eval.scorer.batch_size`` images per actor call) against one image per call (the official scripts loop over
images one by one), in this process, same evaluator object, same images, rounds alternating, medians reported.

Evaluators (both as the harness builds them, through evaluation/passes.py):

* ``objects@embedded`` (the embedded world's proxy: EfficientNet-Lite0 + MiniLM, real weights), on 384 px images
  (Janus-Pro's), 4 prompts x 8 images;
* ``clipscore`` (T2I-CompBench non-spatial, ``ClipScoreEvaluator``) on the tiny random CLIP of the tests, where the
  model is cheap and the per-call costs (preprocessing, text encoding) are what batching saves.

Torch runs one thread, as in a Ray actor with a fractional CPU share.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.bench_reward import JANUS_PRO_SIDE, smooth_images
from benchmarks.results_io import Entry
from evaluation.base import EvalItem, Evaluator
from evaluation.config import EvalConfig
from evaluation.passes import PASSES

ROUNDS = 5
BATCH = 16  # eval.scorer.batch_size's default
PROMPTS = [
    "a photo of a dog and a teddy bear",
    "a red car parked near a tree",
    "a bowl of oranges on a table",
    "a cat sleeping on a sofa",
]
PER_PROMPT = 8


def _items() -> list[EvalItem]:
    return [EvalItem("t2i_compbench", "non_spatial", p, i, s) for i, p in enumerate(PROMPTS) for s in range(PER_PROMPT)]


def measure(name: str, evaluator: Evaluator, images: list[np.ndarray]) -> Entry:
    items = _items()

    def batched() -> list:
        return [
            r
            for k in range(0, len(images), BATCH)
            for r in evaluator.score(images[k : k + BATCH], items[k : k + BATCH])
        ]

    def one_by_one() -> list:
        return [evaluator.score([im], [it])[0] for im, it in zip(images, items)]

    a, b = batched(), one_by_one()  # warm-up, and the same scores both ways
    times = {"batched": [], "one": []}
    for _ in range(ROUNDS):
        for key, fn in (("batched", batched), ("one", one_by_one)):
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    t_batched, t_one = statistics.median(times["batched"]), statistics.median(times["one"])
    return Entry(
        name=f"eval_score_batched_vs_per_image_{name}",
        ours=len(images) / t_batched,
        baseline=len(images) / t_one,
        unit="images/s",
        details={
            "evaluator": f"{evaluator.name} ({type(evaluator).__name__}, built by evaluation/passes.py)",
            "images": len(images),
            "image": f"{images[0].shape[1]}x{images[0].shape[0]}",
            "batch": BATCH,
            "max_abs_score_diff": float(max(abs(x.score - y.score) for x, y in zip(a, b))),
            "torch_threads": torch.get_num_threads(),
            "rounds": ROUNDS,
            "statistic": "median",
            "ours": f"{BATCH} images per evaluator call (the score stage's actor calls)",
            "baseline": "one image per call (the official scripts' loop)",
        },
    )


def run() -> list[Entry]:
    from tests.tiny_reward_models import tiny_clip_dir

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = [im for seed in range(len(PROMPTS)) for im in smooth_images(PER_PROMPT, JANUS_PRO_SIDE, seed)]
        cfg = EvalConfig()
        entries = [measure("objects_proxy", PASSES["objects@embedded"].build(cfg, "cpu", BATCH), images)]
        with tempfile.TemporaryDirectory() as tmp:
            cfg.models.clip_b32 = str(tiny_clip_dir(Path(tmp) / "clip"))
            entries.append(measure("tiny_clipscore", PASSES["clipscore"].build(cfg, "cpu", BATCH), images))
    finally:
        torch.set_num_threads(threads)  # benchmarks.run runs the other benchmarks in this process
    return entries
