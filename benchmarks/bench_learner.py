"""Learner benchmarks (CPU).

1. ``learner_step_*`` / ``learner_peak_mem_*``: one learner update (reference forward, policy forward and
   backward of both CoT levels, GRPO loss, AdamW step inside the DeepSpeed engine) on a global batch, for the tiny
   model and a small one with Janus-Pro's real vocabulary (102,400), codebook (16,384) and 576 image tokens.
   Baseline: the same learner with T2I-R1's way of computing the per-token log-probs (its
   ``_get_per_token_logps``): each level's pass is the full model forward, which applies the 102,400-way
   ``lm_head`` over every position (also in the image pass, where it is thrown away) with all hidden states kept;
   the text pass then applies ``lm_head`` over every position again, and log-softmaxes every position. Ours runs
   the backbone only, applies each head to its own target positions, and runs the CoT prompt that the samples of
   a group share once per micro-batch (learner/logprobs.py; the samples come in groups sharing their prompt, as a
   rollout's do). Everything else (DeepSpeed, loss, optimizer, batch) is identical. Each variant runs in a fresh
   process; time = median over the steps after a warm-up step, both variants alternated three times; memory =
   peak RSS growth over the steps (ru_maxrss).
2. ``sync_bucketed_vs_per_param``: one weight sync (weightsync.broadcast, gloo) from a sender to 2 receiver
   processes, for a 24-layer tiny Janus (219 trainable tensors): fixed 64 MB buckets vs one broadcast per tensor.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.results_io import Entry
from learner.batch import LevelInputs
from learner.logprobs import PolicyLogProbs

SYNC_ROUNDS = 12  # per sync group: 2 warm-up + 10 timed


# --------------------------------------------------------------------------------------------------- baseline


class T2IR1LogProbs(PolicyLogProbs):
    """T2I-R1's per-token log-probs (see the module docstring), on the same inputs and outputs as ours."""

    def forward(self, levels: dict[str, LevelInputs], semantic_chunks: int | None = None) -> dict[str, torch.Tensor]:
        out = {}  # T2I-R1 computes lm_head over every position at once: no chunks
        for name, level in levels.items():
            p = level.context_ids.shape[1]
            mask = torch.cat([level.context_mask, level.target_mask[:, :-1].long()], dim=1)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            if name == "semantic":
                ids = torch.cat([level.context_ids, level.targets[:, :-1]], dim=1)
                res = self.policy(input_ids=ids, attention_mask=mask, position_ids=positions, output_hidden_states=True)
                logits = self.policy.lm_head(res.hidden_states[-1])  # lm_head over every position, again
            else:
                embeds = torch.cat(
                    [
                        self.policy.get_input_embeddings()(level.context_ids),
                        self.policy.prepare_embeddings_for_image_generation(level.targets[:, :-1]),
                    ],
                    dim=1,
                )
                res = self.policy(
                    inputs_embeds=embeds, attention_mask=mask, position_ids=positions, output_hidden_states=True
                )  # computes (and discards) lm_head everywhere
                logits = self.policy.model.generation_head(res.hidden_states[-1])
            rows = [torch.log_softmax(row.float(), -1) for row in logits]  # every position, row by row
            lp = torch.stack([r[p - 1 :].gather(-1, t[:, None]).squeeze(-1) for r, t in zip(rows, level.targets)])
            out[name] = lp * level.target_mask
        return out


# --------------------------------------------------------------------------------------------------- models


def _small_model_dir(root: Path) -> str:
    """Janus with the real vocabulary, codebook and image-token count, and a small backbone."""
    from transformers import JanusForConditionalGeneration

    from policy.config import TinyModelConfig
    from policy.model import janus_generation_config, tiny_janus_config
    from policy.tokenizer import SpecialIds, build_tiny_tokenizer

    out = root / "small-janus"
    if (out / "config.json").is_file():
        return str(out)
    tok = build_tiny_tokenizer()
    ids = SpecialIds.from_tokenizer(tok)
    spec = TinyModelConfig(
        hidden_size=256,
        num_layers=4,
        num_heads=4,
        num_kv_heads=4,
        intermediate_size=688,
        image_grid=24,
        codebook_size=16384,
    )
    torch.manual_seed(0)
    model = JanusForConditionalGeneration(tiny_janus_config(spec, 102400, ids))
    model.generation_config = janus_generation_config(ids)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


SIZES = {
    # model path ("small" = built here; None = the tiny model), prompts x group, micro-batch, prompt/CoT lengths
    # steps per process: the first is a warm-up, the rest are timed
    "tiny": dict(path=None, prompts=2, group=4, micro=4, prompt_len=(20, 40), cot_len=(10, 30), steps=21),
    "small": dict(path="small", prompts=1, group=4, micro=2, prompt_len=(100, 140), cot_len=(40, 80), steps=5),
}


def _learner_process(kind: str, size: str, root: str, queue) -> None:
    import resource

    torch.set_num_threads(1)  # 2 shared cores: one thread per process gives stable, comparable timings
    from cluster.config import Config, learner_setup
    from learner.engine import PolicyTrainer
    from learner.synthetic import random_samples
    from policy.config import ModelConfig
    from weightsync.distributed import Rendezvous, init_default_group, shutdown_default_group

    spec = SIZES[size]
    cfg = Config()
    cfg.model = ModelConfig(path=_small_model_dir(Path(root)) if spec["path"] else None, cache_dir=root)
    cfg.trainer.prompts_per_step, cfg.rollout.group_size = spec["prompts"], spec["group"]
    cfg.learner.micro_batch_size, cfg.learner.ref_on_cpu = spec["micro"], True
    rdzv = Rendezvous("127.0.0.1", 1)
    init_default_group(rdzv.store, 0, 1, "gloo")
    trainer = PolicyTrainer(learner_setup(cfg), logprobs=T2IR1LogProbs if kind == "baseline" else PolicyLogProbs)
    batch = random_samples(
        trainer.policy,
        spec["prompts"] * spec["group"],
        seed=1,
        prompt_len=spec["prompt_len"],
        cot_len=spec["cot_len"],
        group=spec["group"],
    )
    for s in batch:  # as recorded by a rollout, so no recompute pass
        s.cot_logprobs = [-2.0] * len(s.cot_ids)
        s.image_logprobs = [-4.0] * len(s.image_ids)
    rss_before = _rss_kb()
    times = []
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        trainer.train_batch(batch)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    shutdown_default_group()
    queue.put(
        {"times": times[1:], "peak_mb": peak / 1024, "samples": len(batch), "image_tokens": len(batch[0].image_ids)}
    )


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _in_subprocess(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        return queue.get(timeout=1800)
    finally:
        proc.join(timeout=60)


def bench_learner_steps() -> list[Entry]:
    entries = []
    with tempfile.TemporaryDirectory() as root:
        for size in SIZES:
            runs = {"ours": [], "baseline": []}
            for _ in range(3):
                for kind in ("ours", "baseline"):
                    runs[kind].append(_in_subprocess(_learner_process, kind, size, root))
            step = {k: statistics.median(t for r in v for t in r["times"]) for k, v in runs.items()}
            peak = {k: statistics.median(r["peak_mb"] for r in v) for k, v in runs.items()}
            info = runs["ours"][0]
            details = {
                "samples_per_step": info["samples"],
                "image_tokens": info["image_tokens"],
                "micro_batch": SIZES[size]["micro"],
                "zero_stage": 2,
                "dtype": "float32",
                "threads": 1,
                "baseline": "T2I-R1 _get_per_token_logps (full forwards, heads over all positions)",
            }
            entries.append(
                Entry(
                    f"learner_step_{size}",
                    step["ours"],
                    step["baseline"],
                    "s/step",
                    higher_is_better=False,
                    details=details,
                )
            )
            entries.append(
                Entry(
                    f"learner_peak_mem_{size}",
                    peak["ours"],
                    peak["baseline"],
                    "MB",
                    higher_is_better=False,
                    details={"measure": "peak RSS growth during the steps"},
                )
            )
    return entries


# --------------------------------------------------------------------------------------------------- weight sync


def _sync_receiver(port: int, rank: int, world: int, layout, rounds: int, queue) -> None:
    torch.set_num_threads(1)
    from weightsync.broadcast import SyncGroup, WeightReceiver

    receiver = WeightReceiver(SyncGroup.join("127.0.0.1", port, rank, world, "gloo", "cpu", 300.0), layout)
    for _ in range(rounds):
        receiver.receive()
    queue.put(rank)


def _sync_seconds(named: list[tuple[str, torch.Tensor]], bucket_mb: float, receivers: int = 2) -> float:
    """Seconds per sync, averaged over the timed rounds (until every receiver holds the last version)."""
    from weightsync.broadcast import SyncGroup, SyncLayout, send_weights
    from weightsync.distributed import Rendezvous

    layout = SyncLayout.build([(n, t.shape) for n, t in named], "float32", bucket_mb)
    rdzv = Rendezvous("127.0.0.1", receivers + 1, 300.0)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_sync_receiver, args=(rdzv.port, r, receivers + 1, layout, SYNC_ROUNDS, queue))
        for r in range(1, receivers + 1)
    ]
    for p in procs:
        p.start()
    group = SyncGroup.join("127.0.0.1", rdzv.port, 0, receivers + 1, "gloo", "cpu", 300.0, store=rdzv.store)
    for _ in range(2):  # warm-up rounds
        send_weights(group, layout, 1, iter(named))
    t0 = time.perf_counter()
    for _ in range(SYNC_ROUNDS - 2):
        send_weights(group, layout, 1, iter(named))
    for _ in procs:  # each receiver reports after its last complete version
        queue.get(timeout=300)
    seconds = (time.perf_counter() - t0) / (SYNC_ROUNDS - 2)
    for p in procs:
        p.join(timeout=60)
    group.close()
    return seconds


def bench_sync() -> list[Entry]:
    from policy.config import TinyModelConfig
    from policy.model import build_tiny_janus, named_trainable_parameters

    torch.set_num_threads(1)
    model, _ = build_tiny_janus(TinyModelConfig(num_layers=24))
    named = [(n, p.detach()) for n, p in named_trainable_parameters(model, ["model.language_model.", "lm_head."])]
    runs = {"bucketed": [], "per_param": []}
    for _ in range(3):
        runs["bucketed"].append(_sync_seconds(named, 64))
        runs["per_param"].append(_sync_seconds(named, 0))
    t = {k: statistics.median(v) for k, v in runs.items()}
    mb = sum(p.numel() for _, p in named) * 4 / 2**20
    details = {
        "tensors": len(named),
        "megabytes": round(mb, 2),
        "receivers": 2,
        "backend": "gloo",
        "bucket_mb": 64,
        "bucketed_MBps": round(mb / t["bucketed"], 1),
        "per_param_MBps": round(mb / t["per_param"], 1),
        "measure": f"median of 3 groups x {SYNC_ROUNDS - 2} timed syncs each",
    }
    return [
        Entry(
            "sync_bucketed_vs_per_param",
            mb / t["bucketed"],
            mb / t["per_param"],
            "MB/s",
            higher_is_better=True,
            target=3.0,
            details=details,
        )
    ]


def run() -> list[Entry]:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    return bench_sync() + bench_learner_steps()
