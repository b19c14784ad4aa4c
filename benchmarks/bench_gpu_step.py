"""Whole BiCoT-GRPO steps on one GPU, learning included: images per second of ours vs a T2I-R1-style step.

The project's rollout, learner and weight sync run in one process here (no Ray: the GPU machine has none), on
random weights at Janus-Pro shapes (Janus-Pro's text vocabulary of 102,400 included). One step, for P prompts
times T2I-R1's group of G = 8:

- ours: semantic CoT with the transformers text engine (rollout.hf_engine: left-padded ``generate`` calls of 32
  rows, seeded per row, behaviour log-probs recorded step by step); image tokens with our ImageSampler (CUDA
  graphs and the fused sampling kernel on CUDA; behaviour log-probs recorded); VQ decode; the stand-in reward
  (below); group advantages (learner.advantages); reference and policy log-probs (learner.logprobs.PolicyLogProbs:
  backbone once per level, each head on its own targets); GRPO loss (learner.loss.grpo_loss, T2I-R1's beta 0.01);
  the optimiser step; then the weight copy of the trainable tensors into the sampler's own model (the rollout
  worker's copy, updated in place so the captured graphs stay valid).
- baseline, T2I-R1's way (docs/ALGORITHM.md §9): one HF ``generate`` over all P x G CoT rows, the eager
  576-step DynamicCache loop on the policy itself (bench_sampler.t2i_r1_loop), the same decode, reward and
  advantages, log-probs by full forwards with both heads over every position (bench_learner.T2IR1LogProbs, for
  the policy and the reference), old log-probs = the current ones detached (one update per batch), same loss and
  optimiser step, no weight copy (one model).

Both run the same shapes and batch in the same process, on the same three models (policy, frozen reference,
sampler copy); the optimiser is torch AdamW on bfloat16 parameters with bfloat16 states (no DeepSpeed, no fp32
master weights: at 7B those would not fit beside the other copies on one GPU), gradients clipped at 1.0, one
step per batch with the loss averaged over micro-batches (gradient accumulation).

Stand-ins, said in every entry: the reward is the mean redness of each decoded image (red minus the mean of green
and blue), computed on the device, instead of T2I-R1's four reward models; the VQ decoder is the tiny model's
(64 channels) at Janus-Pro's 384 px output, not Janus-Pro's wider decoder; prompts are random token ids at T2I-R1's
lengths, and the image prompt joins the raw prompt's ids and the CoT's ids directly (T2I-R1 decodes the CoT and
re-tokenises "User: {prompt}. {CoT}"; with random weights the CoT is random ids either way).

Stages are timed with the device synchronised at their edges; images/s = images per step / step wall time (one
GPU). Peak memory is the largest device allocation during a step (everything resident included).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import torch
from transformers import GenerationConfig
from transformers.generation.utils import GenerationMixin

from benchmarks.bench_gpu import SHAPES, build, device_name, synchronize
from benchmarks.bench_learner import T2IR1LogProbs
from benchmarks.bench_sampler import t2i_r1_loop
from benchmarks.results_io import Entry
from learner.advantages import group_advantages
from learner.batch import LEVELS, pack_level, pack_values
from learner.config import AdvantageConfig, LossConfig
from learner.logprobs import PolicyLogProbs
from learner.loss import LevelTerms, grpo_loss
from policy.config import ModelConfig, TinyModelConfig
from policy.model import named_trainable_parameters, set_trainable
from policy.tokenizer import SpecialIds
from rollout.config import ImageSamplingConfig, TextSamplingConfig
from rollout.factories import build_image_sampler
from rollout.hf_engine import HFTextEngine

JANUS_PRO_VOCAB = 102400


@dataclass(frozen=True)
class StepSetup:
    """Model shape and batch of one benchmark step."""

    shape: TinyModelConfig
    vocab_size: Optional[int]  # None: the tiny tokenizer's
    prompts: int  # P prompts per step
    group: int = 8  # G samples per prompt (T2I-R1)
    cot_prompt_tokens: int = 200  # about T2I-R1's CoT chat prompt with Janus-Pro's tokenizer
    prompt_tokens: int = 24  # the raw prompt inside the image prompt
    cot_tokens: int = 64
    micro_batch: int = 8  # samples per learner forward/backward
    lr: float = 1e-6  # T2I-R1's
    timed_steps: int = 2  # of each, after one warm-up step of each

    @property
    def samples(self) -> int:
        return self.prompts * self.group


# 384 px images from the tiny decoder: 24 x 2**4
_JANUS_PRO_PIXELS = dict(vq_upsamples=4)
SETUPS = {
    # 64 images per step: the sampler's KV cache for 128 rows is ~19 GB, the learner's activations ~10 GB
    "1b": StepSetup(dataclasses.replace(SHAPES["1b"], **_JANUS_PRO_PIXELS), JANUS_PRO_VOCAB, prompts=8),
    # 16 images: six 14 GB copies (policy, gradients, two AdamW states, reference, sampler) leave ~50 GB
    "7b": StepSetup(
        dataclasses.replace(SHAPES["7b"], **_JANUS_PRO_PIXELS), JANUS_PRO_VOCAB, prompts=2, micro_batch=4, timed_steps=1
    ),
    # the CPU dry run and the unit test: the tiny model, short texts, a learning rate that visibly moves it
    "tiny": StepSetup(
        SHAPES["tiny"],
        None,
        prompts=2,
        group=4,
        cot_prompt_tokens=20,
        prompt_tokens=6,
        cot_tokens=8,
        micro_batch=4,
        lr=1e-2,
        timed_steps=1,
    ),
}
IMAGE = ImageSamplingConfig(cfg_weight=5.0)  # T2I-R1: CFG 5, temperature 1, all codes
COT = TextSamplingConfig(engine="transformers", temperature=1.0, top_k=50, top_p=1.0)  # T2I-R1's (max tokens below)


# --------------------------------------------------------------------------------------------------- models


@dataclass
class Models:
    """The policy (trains), its frozen reference and the sampler's own copy, plus the optimiser, on one device."""

    policy: torch.nn.Module
    reference: torch.nn.Module
    sampler_model: torch.nn.Module
    ids: SpecialIds
    trainable: list[str]
    optimizer: torch.optim.Optimizer
    device: torch.device

    @classmethod
    def build(cls, setup: StepSetup, device: str) -> Models:
        policy, ids = build(setup.shape, device, setup.vocab_size)
        trainable = set_trainable(policy, ModelConfig().trainable)  # T2I-R1: the LLaMA backbone and lm_head
        reference, sampler_model = copy.deepcopy(policy), copy.deepcopy(policy)
        for m in (reference, sampler_model):
            m.requires_grad_(False)
        params = [p for p in policy.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=setup.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        return cls(policy, reference, sampler_model, ids, trainable, optimizer, torch.device(device))

    def trainable_pairs(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(sampler tensor, policy tensor) of every trainable parameter, by name."""
        sampler = dict(named_trainable_parameters(self.sampler_model, ModelConfig().trainable))
        for name, p in named_trainable_parameters(self.policy, ModelConfig().trainable):
            yield sampler[name], p

    def resident_gib(self) -> float:
        """Parameters of the three models plus the optimiser's states, in GiB."""
        tensors = [p for m in (self.policy, self.reference, self.sampler_model) for p in m.parameters()]
        tensors += [t for s in self.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors) / 2**30


# --------------------------------------------------------------------------------------------------- a step


@dataclass
class Prompts:
    """One step's prompts as token ids: the CoT prompt and the raw prompt (for the image prompt) of each."""

    cot: list[list[int]]
    raw: list[list[int]]

    @classmethod
    def random(cls, setup: StepSetup, ids: SpecialIds, seed: int) -> Prompts:
        g = torch.Generator().manual_seed(seed)
        draw = lambda n: torch.randint(0, 250, (n,), generator=g).tolist()  # noqa: E731 (byte ids of the tokenizer)
        return cls(
            [[ids.bos] + draw(setup.cot_prompt_tokens - 1) for _ in range(setup.prompts)],
            [draw(setup.prompt_tokens) for _ in range(setup.prompts)],
        )


@dataclass
class Rollout:
    """The samples of one step (prompt-major: sample k is prompt k // G, member k % G)."""

    cot_prompts: list[list[int]]
    cots: list[list[int]]
    image_prompts: list[list[int]]
    images: torch.Tensor  # [S, N] image tokens
    cot_logprobs: Optional[list[list[float]]] = None  # behaviour log-probs (ours records them)
    image_logprobs: Optional[torch.Tensor] = None  # [S, N], conditional row (the loss's image mode)


@dataclass
class StepReport:
    seconds: dict[str, float]  # per stage
    wall_s: float
    images: int
    loss: float
    peak_gib: Optional[float]  # None off CUDA
    rewards: list[float] = field(default_factory=list)


class StageClock:
    """Seconds per named stage, the device synchronised at each edge."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        synchronize(self.device)
        t = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t


def image_prompt(raw: list[int], cot: list[int], ids: SpecialIds) -> list[int]:
    """BOS + raw prompt + CoT (up to EOS, which the image prompt never holds) + <begin_of_image>."""
    cot = cot[: cot.index(ids.eos)] if ids.eos in cot else cot
    return [ids.bos] + raw + cot + [ids.boi]


def stand_in_reward(pixels: torch.Tensor) -> torch.Tensor:
    """Mean redness of each image ``[B, H, W, 3]`` (pixels in [-1, 1]) on its device: ``[B]`` float32."""
    p = pixels.float()
    return (p[..., 0] - 0.5 * (p[..., 1] + p[..., 2])).mean(dim=(1, 2))


@torch.no_grad()
def decode(model, images: torch.Tensor, chunk: int) -> torch.Tensor:
    """VQ decode on the device, ``chunk`` images at a time: pixels ``[S, H, W, 3]`` in about [-1, 1]."""
    return torch.cat([model.decode_image_tokens(c) for c in images.split(chunk)])


class Step:
    """What ours and the baseline share: decode, reward, advantages, the learner update."""

    name: str
    logprobs_cls: type[PolicyLogProbs]

    def __init__(self, models: Models, setup: StepSetup):
        self.models, self.setup = models, setup
        self.n = int(models.policy.config.vision_config.num_image_tokens)
        self.loss_cfg = LossConfig()  # T2I-R1: beta 0.01, clip 0.2, token_mean over both levels, conditional image

    def rollout(self, prompts: Prompts, seed: int, clock: StageClock) -> Rollout:
        raise NotImplementedError

    def after_update(self, clock: StageClock) -> None:
        """What follows the optimiser step (ours: the weight copy into the sampler's model)."""

    def decoder_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def run(self, prompts: Prompts, seed: int) -> StepReport:
        dev = self.models.device
        clock = StageClock(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        synchronize(dev)
        t0 = time.perf_counter()
        r = self.rollout(prompts, seed, clock)
        with clock("decode"):
            pixels = decode(self.decoder_model(), r.images.to(dev), IMAGE.max_batch)
        with clock("reward"):
            rewards = stand_in_reward(pixels).cpu()
            g = self.setup.group
            adv = torch.cat(
                [
                    torch.from_numpy(group_advantages(rewards[i : i + g].tolist(), AdvantageConfig()))
                    for i in range(0, len(rewards), g)
                ]
            ).float()
        del pixels
        loss = self.update(r, adv, clock)
        self.after_update(clock)
        synchronize(dev)
        wall = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
        return StepReport(clock.seconds, wall, len(r.images), loss, peak, rewards.tolist())

    def _micro_batches(self, r: Rollout, adv: torch.Tensor) -> list[tuple[dict, dict, torch.Tensor]]:
        """(levels, behaviour log-probs or {}, advantages) per micro-batch, on the device."""
        pad, dev, mb = self.models.ids.pad, self.models.device, self.setup.micro_batch
        out = []
        for i in range(0, len(r.images), mb):
            idx = range(i, min(i + mb, len(r.images)))
            images = [r.images[k].tolist() for k in idx]
            levels = {
                "semantic": pack_level([r.cot_prompts[k] for k in idx], [r.cots[k] for k in idx], pad),
                "token": pack_level([r.image_prompts[k] for k in idx], images, pad, target_pad=0),
            }
            behaviour = {}
            if r.cot_logprobs is not None:
                behaviour["semantic"] = pack_values(
                    [r.cot_logprobs[k] for k in idx], levels["semantic"].targets.shape[1]
                )
                behaviour["token"] = r.image_logprobs[list(idx)].float()
            out.append(
                (
                    {k: v.to(dev) for k, v in levels.items()},
                    {k: v.to(dev) for k, v in behaviour.items()},
                    adv[list(idx)].to(dev),
                )
            )
        return out

    def update(self, r: Rollout, adv: torch.Tensor, clock: StageClock) -> float:
        """Reference log-probs, then one optimiser step over all micro-batches. Returns the mean loss."""
        m = self.models
        batches = self._micro_batches(r, adv)
        with clock("reference"), torch.no_grad():
            ref_module = self.logprobs_cls(m.reference)
            refs = [ref_module(levels) for levels, _, _ in batches]
        losses = []
        with clock("train"):
            policy_module = self.logprobs_cls(m.policy)
            for (levels, behaviour, a), ref in zip(batches, refs):
                logps = policy_module(levels)
                terms = {
                    name: LevelTerms(
                        logp=logps[name],
                        old_logp=logps[name].detach(),
                        mask=levels[name].target_mask,
                        ref_logp=ref[name],
                        behaviour_logp=behaviour.get(name),
                    )
                    for name in LEVELS
                }
                loss, _ = grpo_loss(terms, a, self.loss_cfg)
                (loss / len(batches)).backward()
                losses.append(float(loss.detach()))
            torch.nn.utils.clip_grad_norm_([p for p in m.policy.parameters() if p.requires_grad], 1.0)
            m.optimizer.step()
            m.optimizer.zero_grad(set_to_none=True)
        return statistics.fmean(losses)


class OursStep(Step):
    name = "ours"
    logprobs_cls = PolicyLogProbs

    def __init__(self, models: Models, setup: StepSetup):
        super().__init__(models, setup)
        self.text_engine = HFTextEngine(models.sampler_model, models.ids)
        self.sampler = build_image_sampler(models.sampler_model, models.ids, cuda_graphs=True)
        self.image_params = dataclasses.replace(IMAGE, max_batch=setup.samples)
        self.cot_params = dataclasses.replace(COT, max_new_tokens=setup.cot_tokens)

    def decoder_model(self) -> torch.nn.Module:
        return self.models.sampler_model

    def rollout(self, prompts: Prompts, seed: int, clock: StageClock) -> Rollout:
        g, ids = self.setup.group, self.models.ids
        with clock("cot"):
            seeds = [seed * 1000 + i for i in range(len(prompts.cot))]
            completions = self.text_engine.generate(prompts.cot, g, seeds, self.cot_params)
        cots = [c.token_ids for group in completions for c in group]
        image_prompts = [image_prompt(prompts.raw[k // g], cot, ids) for k, cot in enumerate(cots)]
        with clock("image"):
            seeds = [seed * 1000 + k for k in range(len(image_prompts))]
            sample = self.sampler.sample(image_prompts, self.image_params, seeds, return_logprobs=True)
        return Rollout(
            [prompts.cot[k // g] for k in range(len(cots))],
            cots,
            image_prompts,
            sample.tokens,
            [c.logprobs for group in completions for c in group],
            sample.cond_logprobs,
        )

    @torch.no_grad()
    def after_update(self, clock: StageClock) -> None:
        with clock("sync"):
            for dst, src in self.models.trainable_pairs():
                dst.copy_(src)


class T2IR1Step(Step):
    name = "baseline"
    logprobs_cls = T2IR1LogProbs

    def decoder_model(self) -> torch.nn.Module:
        return self.models.policy

    def rollout(self, prompts: Prompts, seed: int, clock: StageClock) -> Rollout:
        m, g, ids = self.models, self.setup.group, self.models.ids
        cot_rows = [p for p in prompts.cot for _ in range(g)]  # equal lengths: no padding needed
        with clock("cot"), torch.no_grad():
            torch.manual_seed(seed)
            x = torch.tensor(cot_rows, device=m.device)
            config = GenerationConfig(
                do_sample=True,
                max_new_tokens=self.setup.cot_tokens,
                temperature=1.0,
                top_k=50,
                eos_token_id=ids.eos,
                pad_token_id=ids.pad,
                bos_token_id=ids.bos,
                guidance_scale=1.0,
            )  # not the image mode's CFG from the model's config
            out = GenerationMixin.generate(m.policy, x, attention_mask=torch.ones_like(x), generation_config=config)
        new = out[:, x.shape[1] :].tolist()
        cots = [row[: row.index(ids.eos) + 1] if ids.eos in row else row for row in new]
        image_prompts = [image_prompt(prompts.raw[k // g], cot, ids) for k, cot in enumerate(cots)]
        with clock("image"):
            # the reference loop takes equal lengths; a CoT that stopped early is left-padded (attended: the
            # loop has no mask), which costs the same
            longest = max(map(len, image_prompts))
            padded = [[ids.pad] * (longest - len(p)) + p for p in image_prompts]
            images = t2i_r1_loop(m.policy, ids, padded, IMAGE.cfg_weight).cpu()
        return Rollout(cot_rows, cots, image_prompts, images)


# --------------------------------------------------------------------------------------------------- benchmark


def run() -> list[Entry]:
    if not torch.cuda.is_available():
        print("   bench_gpu_step: no CUDA device, nothing measured")
        return []
    return measure("1b")


def _median_stages(reports: list[StepReport]) -> dict[str, float]:
    return {k: round(statistics.median(r.seconds[k] for r in reports), 3) for k in reports[0].seconds}


def measure(
    name: str, setup: Optional[StepSetup] = None, device: str = "cuda", log: Callable[[str], None] = print
) -> list[Entry]:
    """``gpu_step_images_per_s_{name}`` and ``gpu_step_peak_mem_gib_{name}``, at ``SETUPS[name]`` unless ``setup``
    is given: one warm-up step of each (graph capture, kernel compilation, allocator), then ``timed_steps`` of each,
    alternated."""
    setup = setup or SETUPS[name]
    models = Models.build(setup, device)
    log(f"   {name}: models built, {models.resident_gib():.1f} GiB resident")
    steps = [OursStep(models, setup), T2IR1Step(models, setup)]
    prompts = Prompts.random(setup, models.ids, seed=0)
    reports: dict[str, list[StepReport]] = {s.name: [] for s in steps}
    for i in range(1 + setup.timed_steps):
        for s in steps:
            r = s.run(prompts, seed=i)
            log(
                f"   {name} {s.name} step {i}{' (warm-up)' if i == 0 else ''}: {r.wall_s:.2f} s, "
                f"{r.images / r.wall_s:.2f} images/s, loss {r.loss:.4g}, "
                + ", ".join(f"{k} {v:.2f}" for k, v in r.seconds.items())
            )
            if i > 0:
                reports[s.name].append(r)
    ours, base = reports["ours"], reports["baseline"]
    ips = {k: statistics.median(r.images / r.wall_s for r in v) for k, v in reports.items()}
    shape = setup.shape
    n = int(models.policy.config.vision_config.num_image_tokens)
    side = shape.image_grid * 2**shape.vq_upsamples
    dtype = str(next(models.policy.parameters()).dtype).removeprefix("torch.")
    common = {
        "device": device_name(device),
        "model": f"random Janus, LLaMA hidden {shape.hidden_size} x {shape.num_layers} layers, {shape.num_heads} "
        f"heads, FFN {shape.intermediate_size}, vocabulary {models.policy.config.text_config.vocab_size}, "
        f"codebook {shape.codebook_size}, {dtype}",
        "batch": f"{setup.prompts} prompts x group {setup.group} = {setup.samples} images of {n} tokens per step, "
        f"CoT prompt {setup.cot_prompt_tokens} tokens, CoT {setup.cot_tokens} new tokens (T2I-R1: up to "
        f"1024), learner micro-batch {setup.micro_batch}",
    }
    stages = {
        **common,
        "ours": "HF text engine (batched generate) -> ImageSampler (CUDA graphs, fused sampling kernel) -> "
        "VQ decode -> reward -> advantages -> PolicyLogProbs (reference, policy) -> grpo_loss -> AdamW -> "
        "in-place weight copy into the sampler's model",
        "baseline": f"T2I-R1: one HF generate over all CoT rows -> eager {n}-step DynamicCache loop on the policy "
        "-> same decode, reward, advantages -> full forwards with both heads over every position "
        "(reference, policy) -> same loss and AdamW, no weight copy",
        "optimizer": f"torch AdamW, {dtype} parameters and states (no DeepSpeed, no fp32 master weights), lr "
        f"{setup.lr}, grad clip 1.0, one step per batch",
        "reward": "stand-in: mean redness of the decoded pixels, on the device (not T2I-R1's reward models)",
        "vq_decoder": f"the tiny model's (64 channels) at {side} px, not Janus-Pro's wider decoder",
        "ours_stage_s": _median_stages(ours),
        "baseline_stage_s": _median_stages(base),
        "ours_step_s": [round(r.wall_s, 3) for r in ours],
        "baseline_step_s": [round(r.wall_s, 3) for r in base],
        "ours_loss": [round(r.loss, 5) for r in ours],
        "timed_steps": setup.timed_steps,
        "resident_gib": round(models.resident_gib(), 1),
        "targets": "ours >= 10x the baseline's images/s; >= 20 images/s/GPU at 1B shapes, >= 4 at 7B",
    }
    entries = [
        Entry(
            f"gpu_step_images_per_s_{name}",
            round(ips["ours"], 3),
            round(ips["baseline"], 3),
            "images/s per GPU",
            target=10.0,
            details=stages,
        )
    ]
    if device_name(device) != "cpu":
        peak = {k: max(r.peak_gib for r in v) for k, v in reports.items()}
        entries.append(
            Entry(
                f"gpu_step_peak_mem_gib_{name}",
                round(peak["ours"], 2),
                round(peak["baseline"], 2),
                "GiB",
                higher_is_better=False,
                details={
                    **common,
                    "measure": "torch.cuda.max_memory_allocated over a step, the three "
                    "models and the optimiser states (resident_gib of the images/s entry) "
                    "included",
                },
            )
        )
    return entries
