"""The real-shapes tier: one whole ``cluster.run`` step at Janus-Pro-1B's widths and vocabularies
(cluster/configs/real-shapes.yaml: hidden 2048, 16 heads of 128, FFN 5632, 102,400 text ids, 16,384 codes, 576
image tokens, 384 px; one layer, random weights, bf16), one prompt with G = 2, through vLLM, our sampler, the
rewards, the DeepSpeed learner, the weight sync and the checkpoint. Each stage's seconds and peak memory are
recorded (printed, and as junit properties), the memory against what the stage must hold (bf16 = 2 bytes):

    rollout worker  = Janus + vLLM (its language model, plus a second, prepacked copy of the two 102,400 x 2048
                      vocabulary matrices for its CPU GEMMs, plus its KV cache) + the weight-sync staging copy of
                      the trainable weights (weightsync.broadcast.WeightReceiver keeps it between syncs) + runtime;
                      image: + the sampler's KV cache; decode: + the VQ decoder's activations;
                      over its life: + vLLM's new prepacked vocabulary copies when a weight update reloads it
    learner rank    = policy + reference (on CPU) + fp32 master weights + AdamW's two fp32 moments
                      + fp32 gradients + bf16 gradients (the parameters' own, ZeRO-2's contiguous partition and
                      its reduce bucket of 5e8 elements) + the embedding's dense fp32 gradient + activations (each
                      level's logits in bf16, their fp32 copy and its gradient) + runtime

"runtime" is what the process holds besides: Python, torch, vLLM or DeepSpeed, Ray's worker, vLLM's batch
buffers (rollout: 0.83 GiB with the tiny model, 0.95 GiB at these shapes; learner: 0.71 GiB). A stage's peak must
be at least its resident weights and within 20% below / 10% above its formula.

Measured here (2 shared cores, idle-ish): the run 200 s, the step 85 s (CoT 12, image tokens 23, decode 2, reward
1, learner 44, sync 3); peaks: rollout 4.8 GiB (CoT, image), 4.9 GiB (decode), 5.6 GiB over its life; learner 13.6
GiB; reward server 0.35 GiB. The whole run needs about 20 GB of memory.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cluster.config import load_config
from rollout.image_sampler import ImageSampler, kv_cache_bytes
from tests.test_cluster import Run

REPO = Path(__file__).resolve().parents[1]
GIB, MIB = 2**30, 2**20
RUNTIME_ROLLOUT = 1.0 * GIB
RUNTIME_LEARNER = 0.75 * GIB
RUNTIME_REWARD = 1.0 * GIB


def test_preset_has_janus_pro_1b_widths_and_vocabularies():
    cfg = load_config("real-shapes")
    t = cfg.model.tiny
    assert (t.hidden_size, t.num_heads, t.hidden_size // t.num_heads, t.intermediate_size) == (2048, 16, 128, 5632)
    side = t.image_grid * 2**t.vq_upsamples
    assert (t.vocab_size, t.codebook_size, t.image_grid**2, side) == (102400, 16384, 576, 384)
    assert t.num_layers in (1, 2) and cfg.model.dtype == "bfloat16" and cfg.learner.dtype == "bfloat16"
    assert (cfg.trainer.steps, cfg.trainer.prompts_per_step, cfg.rollout.group_size) == (1, 1, 2)


# --------------------------------------------------------------------------------------------------- memory model


@dataclass
class Params:
    """Parameter counts of the checkpoint, from its safetensors header (no model code involved)."""

    total: int
    language: int  # the Llama half vLLM serves: embeddings, layers, final norm, lm_head
    trainable: int  # T2I-R1's: the same set

    @classmethod
    def read(cls, model_dir: Path) -> Params:
        with open(model_dir / "model.safetensors", "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        numel = {k: int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__"}
        language = sum(n for k, n in numel.items() if k.startswith(("model.language_model.", "lm_head.")))
        return cls(total=sum(numel.values()), language=language, trainable=language)


def vocab_matrices_bytes(cfg) -> int:
    """The embedding and lm_head in bf16."""
    return 2 * cfg.model.tiny.vocab_size * cfg.model.tiny.hidden_size * 2


def rollout_resident(p: Params, cfg) -> dict[str, float]:
    """Bytes the rollout worker holds between stages: "floor" its weights, "formula" all of it."""
    vllm = p.language * 2 + vocab_matrices_bytes(cfg) + cfg.rollout.cot.vllm_kv_cache_gib * GIB
    staging = p.trainable * 2
    return {"floor": p.total * 2 + p.language * 2, "formula": p.total * 2 + vllm + staging + RUNTIME_ROLLOUT}


def sampler_kv_bytes(cfg, image_prompt_tokens: int) -> int:
    t = cfg.model.tiny
    capacity = -(-(image_prompt_tokens + t.image_grid**2) // ImageSampler.CACHE_ROUND) * ImageSampler.CACHE_ROUND
    return kv_cache_bytes(
        t.num_layers, 2 * cfg.rollout.group_size, t.num_kv_heads, capacity, t.hidden_size // t.num_heads, 2
    )


def decode_activation_bytes(cfg) -> int:
    """The VQ decoder at full resolution: 64 channels x 384 x 384 per image in bf16, about 8 maps alive at once
    (a residual block's input, its two convolutions and norms, the upsampled map)."""
    t = cfg.model.tiny
    side = t.image_grid * 2**t.vq_upsamples
    return 8 * cfg.rollout.group_size * t.vq_base_channels * side * side * 2


def learner_peak(p: Params, cfg, cot_tokens: int) -> dict[str, float]:
    t, g = cfg.model.tiny, cfg.rollout.group_size
    weights = p.total * 2 * 2  # policy and reference
    optimizer = p.trainable * (4 + 8)  # fp32 master weights, AdamW's m and v
    gradients = p.trainable * 4 + p.trainable * 2 * 2 + 5e8 * 2 + t.vocab_size * t.hidden_size * 4
    # each level's logits in bf16, their fp32 copy and its gradient: semantic over the CoT, token over the image
    activations = g * (cot_tokens * t.vocab_size + t.image_grid**2 * t.codebook_size) * (2 + 4 + 4)
    return {"floor": weights + optimizer, "formula": weights + optimizer + gradients + activations + RUNTIME_LEARNER}


def within(measured_mib: float, floor: float, formula: float) -> bool:
    return floor / MIB <= measured_mib and 0.8 * formula / MIB <= measured_mib <= 1.1 * formula / MIB


# --------------------------------------------------------------------------------------------------- the run


class PeakWatcher:
    """Lifetime peak resident memory (VmHWM) of each actor process of a run's session, by actor class."""

    def __init__(self, session: int):
        self.session, self.peaks_mib = session, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if os.getsid(int(pid)) != self.session:
                        continue
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                    hwm = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
                except (OSError, ValueError):
                    continue
                if cmd.startswith("ray::") and hwm:
                    name = cmd[5:].split(".")[0].split(" ")[0]
                    self.peaks_mib[name] = max(self.peaks_mib.get(name, 0.0), int(hwm.group(1)) / 1024)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks_mib


@pytest.mark.heavy
def test_one_step_at_janus_pro_1b_shapes(tmp_path, record_property):
    cfg = load_config("real-shapes")
    out, cache = tmp_path / "run", tmp_path / "models"
    started = time.perf_counter()
    run = Run(out, f"model.cache_dir={cache}", "--config", "real-shapes", timeout_s=3000)
    watcher = PeakWatcher(run.proc.pid)
    try:
        rc = run.wait()
    finally:
        lifetime = watcher.stop()
        # the DeepSpeed checkpoint (bf16 weights, fp32 master and moments) takes 7 GB, the model 2 GB: not kept
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    wall = time.perf_counter() - started
    assert rc == 0, run.log[-5000:]

    if importlib.util.find_spec("vllm") is not None:
        assert "rollout.cot.engine=vllm is unavailable" not in run.log  # the CoT ran in vLLM, not the fallback
    (row,) = pq.read_table(out / "metrics.parquet").to_pylist()
    rollouts = pq.read_table(out / "rollouts" / "step_000001.parquet").to_pylist()
    assert len(rollouts) == 2 and row["policy_version"] == 1 and np.isfinite(row["loss"])
    assert all((out / r["image_file"]).is_file() for r in rollouts)
    from PIL import Image

    with Image.open(out / rollouts[0]["image_file"]) as im:
        assert im.size == (384, 384)

    model_dir = next(cache.glob("tiny-janus-*"))
    params = Params.read(model_dir)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    shutil.rmtree(cache)
    image_prompt = max(
        len(tok(f"User: {r['prompt']}. {r['cot']}".strip() + "\n\nAssistant:", add_special_tokens=False)["input_ids"])
        + 2
        for r in rollouts
    )
    cot_tokens = max(r["cot_tokens"] for r in rollouts)

    seconds = {
        k: row[k]
        for k in (
            "rollout_cot_s",
            "rollout_image_s",
            "rollout_decode_s",
            "rollout_s",
            "reward_s",
            "learner_s",
            "sync_s",
            "step_s",
        )
    }
    peaks = {
        k: row[k]
        for k in ("rollout_cot_peak_mib", "rollout_image_peak_mib", "rollout_decode_peak_mib", "learner_peak_mib")
    }
    resident, learn = rollout_resident(params, cfg), learner_peak(params, cfg, cot_tokens)
    kv, decode, repack = sampler_kv_bytes(cfg, image_prompt), decode_activation_bytes(cfg), vocab_matrices_bytes(cfg)
    formulas_mib = {
        "rollout_cot": resident["formula"] / MIB,
        "rollout_image": (resident["formula"] + kv) / MIB,
        "rollout_decode": (resident["formula"] + decode) / MIB,
        "learner": learn["formula"] / MIB,
        "rollout_lifetime": (resident["formula"] + max(kv, decode, repack)) / MIB,
        "reward_lifetime": RUNTIME_REWARD / MIB,
    }
    report = {
        "wall_s": wall,
        "seconds": seconds,
        "peak_mib": peaks,
        "lifetime_peak_mib": lifetime,
        "formula_mib": formulas_mib,
        "params": vars(params),
        "image_prompt_tokens": image_prompt,
        "cot_tokens": cot_tokens,
        "sampler_kv_mib": kv / MIB,
        # learner vs rollout-engine log-probs at these shapes (bf16): the gap the importance weights correct
        "learner_vs_rollout": {
            k: row[k] for k in row if any(s in k for s in ("logp_gap", "is_weight", "is_truncated", "clip_frac"))
        },
    }
    record_property("real_shapes", json.dumps(report))
    print("\nreal-shapes step:", json.dumps(report, indent=1))

    # every stage's peak holds its weights, and what the formula says it holds
    assert within(row["rollout_cot_peak_mib"], resident["floor"], resident["formula"])
    assert within(row["rollout_image_peak_mib"], resident["floor"], resident["formula"] + kv)
    assert within(row["rollout_decode_peak_mib"], resident["floor"], resident["formula"] + decode)
    assert within(row["learner_peak_mib"], learn["floor"], learn["formula"])
    assert lifetime["RolloutActor"] <= 1.1 * formulas_mib["rollout_lifetime"]
    assert lifetime["RewardServerActor"] <= formulas_mib["reward_lifetime"]
