"""One learner rank: the policy inside a DeepSpeed engine, the frozen reference, and the BiCoT-GRPO update.

Each of the K ranks runs one :class:`PolicyTrainer` in its own process, after the default process group of the
K ranks exists (learner/actor.py sets it up). The global batch (``trainer.prompts_per_step x rollout.group_size``
samples) is cut into consecutive micro-batches of ``learner.micro_batch_size``; rank r trains on the r-th
contiguous share, with DeepSpeed accumulating gradients over its micro-batches and averaging over ranks. The set
of micro-batches is the same for any K, and the loss is normalised per micro-batch (T2I-R1), so every K takes
the same optimizer step on the same global batch.

On CPU: gloo, fp32 or bf16, a torch AdamW (DeepSpeed's own optimizers would JIT-compile C++ ops), and
DeepSpeed's shared-memory all-reduce op is switched off (it too would compile, ~40 s on every fresh machine).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch

from learner.batch import LevelInputs, TrainSample, pack_level, pack_values
from learner.config import LearnerDtype, LearnerSetup, lr_schedule
from learner.logprobs import PolicyLogProbs, chunks_for
from learner.loss import LevelTerms, active_levels, combine_stats, grpo_loss
from policy.model import Policy, load_policy, set_trainable


def import_deepspeed():
    """Import DeepSpeed with its JIT-compiled shared-memory comm op disabled (gloo does the all-reduce)."""
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if torch.cuda.is_available() else "cpu")
    import deepspeed

    # `import deepspeed.comm.torch` resolves to the torch module, hence importlib (environment.md section 3).
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
    return deepspeed


def grad_accumulation_steps(setup: LearnerSetup, world_size: int) -> int:
    lc = setup.learner
    batch = setup.global_batch
    per_step = lc.micro_batch_size * world_size
    if batch % per_step:
        raise ValueError(
            f"the global batch (trainer.prompts_per_step x rollout.group_size = {batch} samples) must be a multiple of "
            f"learner.micro_batch_size x learner.ranks = {lc.micro_batch_size} x {world_size}; change one of them"
        )
    return batch // per_step


def deepspeed_config(setup: LearnerSetup, world_size: int) -> dict[str, Any]:
    lc = setup.learner
    zero: dict[str, Any] = {"stage": lc.zero_stage}
    if lc.zero_stage == 3:
        # let save_16bit_model / consolidated state dicts gather full weights on rank 0
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        zero["stage3_param_persistence_threshold"] = lc.zero3_persistence_threshold
    return {
        "train_batch_size": setup.global_batch,
        "train_micro_batch_size_per_gpu": lc.micro_batch_size,
        "gradient_accumulation_steps": grad_accumulation_steps(setup, world_size),
        "zero_optimization": zero,
        "bf16": {"enabled": lc.dtype == LearnerDtype.bfloat16},
        "gradient_clipping": float(lc.optim.grad_clip),
        "zero_allow_untested_optimizer": True,  # a plain torch AdamW (no JIT-built DeepSpeed op)
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


@dataclass
class MicroBatch:
    levels: dict[str, LevelInputs]
    advantages: torch.Tensor  # [B]
    behaviour: dict[str, torch.Tensor]  # the rollout engines' log-probs per level, [B, T] (NaN rows: none recorded)
    old: dict[str, torch.Tensor]  # proximal log-probs per level (filled before the updates when there are several)
    ref: dict[str, torch.Tensor]  # reference log-probs per level (filled before the updates)

    def to(self, device) -> MicroBatch:
        def move(tensors: dict[str, Any]) -> dict[str, Any]:
            return {k: v.to(device) for k, v in tensors.items()}

        return MicroBatch(
            move(self.levels), self.advantages.to(device), move(self.behaviour), move(self.old), move(self.ref)
        )


class PolicyTrainer:
    """The learner of one rank. ``version`` = optimizer steps taken (the policy version rollouts are stamped
    with; 0 = the initial weights, which the rollout workers load too)."""

    def __init__(self, setup: LearnerSetup, logprobs: type[PolicyLogProbs] = PolicyLogProbs):
        """``logprobs``: the module that scores each level (benchmarks/bench_learner.py swaps in T2I-R1's way)."""
        import torch.distributed as dist

        if not dist.is_initialized():
            raise RuntimeError("PolicyTrainer needs torch.distributed initialised (learner.actor does it)")
        deepspeed = import_deepspeed()
        from deepspeed.accelerator import get_accelerator

        self.setup = setup
        lc = setup.learner
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        deepspeed.init_distributed(dist_backend=dist.get_backend())  # adopts the existing default group
        self.device = torch.device(get_accelerator().current_device_name())
        self.active = active_levels(lc.loss)

        self.policy: Policy = load_policy(setup.model, dtype=lc.dtype, device=self.device)
        model = self.policy.model
        self.trainable = set_trainable(model, setup.model.trainable)
        if lc.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        o = lc.optim
        optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
        scheduler = lr_schedule(optimizer, o, setup.optimizer_steps)
        self._logprobs_cls = logprobs
        module = logprobs(
            model,
            lc.loss.image_logprob,
            setup.image_sampling,
            self.policy.ids,
            lc.logprob_chunk_tokens,
            share_contexts=lc.zero_stage != 3,
        )
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(setup, self.world_size)
        )
        self.ref = self._build_reference(deepspeed) if lc.loss.beta > 0 else None
        # ZeRO-3 gathers full parameters about this many elements at a time (the same on every rank)
        self.gather_numel = max(1, lc.sync_bucket_mb * 2**20 // 4)

    # ----------------------------------------------------------------------------------------------- reference

    def _build_reference(self, deepspeed) -> Optional[torch.nn.Module]:
        lc = self.setup.learner
        ref_policy = load_policy(self.setup.model, dtype=lc.dtype, device="cpu")
        for p in ref_policy.model.parameters():
            p.requires_grad_(False)
        module = self._logprobs_cls(
            ref_policy.model,
            lc.loss.image_logprob,
            self.setup.image_sampling,
            ref_policy.ids,
            lc.logprob_chunk_tokens,
            share_contexts=lc.zero_stage != 3,
        )
        self.ref_device = torch.device("cpu")
        if lc.ref_on_cpu:
            return module.eval()
        self.ref_device = self.device
        if lc.zero_stage == 3:
            # sharded like the policy, inference only (no optimizer)
            config = {
                "train_batch_size": self.setup.global_batch,
                "train_micro_batch_size_per_gpu": lc.micro_batch_size,
                "gradient_accumulation_steps": grad_accumulation_steps(self.setup, self.world_size),
                "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": lc.zero3_persistence_threshold},
                "bf16": {"enabled": lc.dtype == LearnerDtype.bfloat16},
                "steps_per_print": 2**31 - 1,
            }
            engine, *_ = deepspeed.initialize(model=module, config=config)
            engine.eval()
            return engine
        return module.to(self.device).eval()

    # ----------------------------------------------------------------------------------------------- state

    @property
    def version(self) -> int:
        return int(self.engine.global_steps)

    @property
    def model(self):
        """The Janus model being trained (under ZeRO-3 its parameters are shards; see weight_sync)."""
        return self.engine.module.policy

    def named_trainable_parameters(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        names = set(self.trainable)
        return ((n, p) for n, p in self.model.named_parameters() if n in names)

    def full_parameter_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, full shape) of the trainable parameters (ZeRO-3 holds shards; ds_shape is the full shape)."""
        return [(n, tuple(getattr(p, "ds_shape", p.shape))) for n, p in self.named_trainable_parameters()]

    def iter_full_parameters(self, group_numel: int) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, full tensor) of the trainable parameters, in order. Under ZeRO-3 every rank must consume this
        in step: parameters are gathered (collectively) about ``group_numel`` elements at a time, and a yielded
        tensor is valid only until the next one is requested."""
        params = list(self.named_trainable_parameters())
        if self.setup.learner.zero_stage != 3:
            for n, p in params:
                yield n, p.detach()
            return
        from deepspeed.runtime.zero import GatheredParameters

        chunk: list[tuple[str, torch.nn.Parameter]] = []
        size = 0
        for i, (n, p) in enumerate(params):
            chunk.append((n, p))
            size += int(p.ds_numel)
            if size >= max(group_numel, 1) or i == len(params) - 1:
                with GatheredParameters([q for _, q in chunk]):
                    for name, q in chunk:
                        yield name, q.detach()
                chunk, size = [], 0

    # ----------------------------------------------------------------------------------------------- batches

    def _share(self, samples: Sequence[TrainSample]) -> list[TrainSample]:
        expected = self.setup.global_batch
        if len(samples) != expected:
            raise ValueError(
                f"train_batch got {len(samples)} samples; the configured global batch is {expected} "
                f"(trainer.prompts_per_step x rollout.group_size)"
            )
        per_rank = expected // self.world_size
        return list(samples[self.rank * per_rank : (self.rank + 1) * per_rank])

    def _micro_batch(self, samples: Sequence[TrainSample]) -> MicroBatch:
        pad = self.policy.ids.pad
        levels, behaviour = {}, {}
        for name in self.active:
            level = pack_level(
                [s.context(name) for s in samples],
                [s.targets(name) for s in samples],
                pad,
                target_pad=0 if name == "token" else None,
            )
            levels[name] = level
            rows = []
            for s in samples:
                lp = s.behaviour_logprobs(name)
                if name == "token" and s.image_logprob_mode != self.setup.learner.loss.image_logprob:
                    lp = None  # recorded under another distribution than the loss uses: no correction (weight 1)
                rows.append(lp)
            values = pack_values([r or [] for r in rows], level.targets.shape[1])
            values[[i for i, r in enumerate(rows) if r is None]] = float("nan")
            behaviour[name] = values
        adv = torch.tensor([s.advantage for s in samples], dtype=torch.float32)
        return MicroBatch(levels, adv, behaviour, {}, {})

    def _validate(self, samples: Sequence[TrainSample]) -> None:
        """Checks of the whole global batch (every rank runs them on the same data, so all raise together)."""
        for i, s in enumerate(samples):
            if not s.image_ids or not s.image_prompt_ids:
                raise ValueError(f"sample {i} has an empty image or image prompt")
            if "semantic" in self.active and not s.cot_prompt_ids:
                raise ValueError(
                    f"sample {i} has no CoT prompt, so its semantic level cannot be trained (a rollout "
                    f"without a semantic CoT, rollout.prompt.use_cot=false, trains the image tokens "
                    f"alone: set learner.loss.levels=token)"
                )
            for name in self.active:
                lp = s.behaviour_logprobs(name)
                if lp is not None and len(lp) != len(s.targets(name)):
                    raise ValueError(
                        f"sample {i} has {len(lp)} {name} behaviour log-probs for {len(s.targets(name))} tokens"
                    )

    def _semantic_chunks(self, samples: Sequence[TrainSample]) -> int:
        """The number of lm_head chunks of every micro-batch of the batch: what its largest CoT level needs (the
        same on every rank, as ZeRO-3 gathers lm_head collectively at each call)."""
        m, chunk = self.setup.learner.micro_batch_size, self.setup.learner.logprob_chunk_tokens
        return max(
            chunks_for(sum(len(s.cot_ids) for s in samples[i : i + m]), chunk) for i in range(0, len(samples), m)
        )

    @torch.no_grad()
    def _prepare(self, micro_batches: list[MicroBatch], chunks: int) -> None:
        """Before the first update: reference log-probs and, with several updates per batch, the proximal (old)
        log-probs, one no-grad forward of the current policy. (With one update the loss's own forward provides
        them.) Every rank runs the same forwards, as ZeRO-3 gathers parameters collectively."""
        several = self.setup.learner.updates_per_batch > 1
        for mb in micro_batches:
            if several:
                mb.old = {k: v.float().cpu() for k, v in self.engine(mb.levels, semantic_chunks=chunks).items()}
            if self.ref is not None:
                out = self.ref({k: v.to(self.ref_device) for k, v in mb.levels.items()}, semantic_chunks=chunks)
                mb.ref = {k: v.float().cpu() for k, v in out.items()}

    def train_batch(self, samples: Sequence[TrainSample]) -> dict[str, float]:
        """All ``updates_per_batch`` optimizer steps on one global batch (every rank gets the whole batch and
        trains on its share). The loss's proximal log-probs are the learner's own before the first update; the
        samples' recorded (behaviour) log-probs enter as truncated importance weights (learner/loss.py), and a
        sample without them, or with image log-probs of another mode, gets weight 1. Returns this rank's
        statistics (means over its micro-batches, maxima for ``*_max``)."""
        lc = self.setup.learner
        mine = self._share(samples)
        self._validate(samples)
        m = lc.micro_batch_size
        micro_batches = [self._micro_batch(mine[i : i + m]) for i in range(0, len(mine), m)]
        chunks = self._semantic_chunks(samples)
        self._prepare(micro_batches, chunks)
        self.engine.train()
        per_micro_batch: list[dict[str, float]] = []
        for _ in range(lc.updates_per_batch):
            for mb in micro_batches:
                mb = mb.to(self.device)
                logps = self.engine(mb.levels, semantic_chunks=chunks)
                # one update per batch: the proximal log-probs are this forward's own, detached (ratio exactly 1)
                old = mb.old or {name: v.detach() for name, v in logps.items()}
                terms = {
                    name: LevelTerms(
                        logp=logps[name],
                        old_logp=old[name],
                        mask=mb.levels[name].target_mask,
                        ref_logp=mb.ref.get(name),
                        behaviour_logp=mb.behaviour[name],
                    )
                    for name in self.active
                }
                loss, stats = grpo_loss(terms, mb.advantages, lc.loss)
                self.engine.backward(loss)
                self.engine.step()
                per_micro_batch.append(stats)
        out = combine_stats(per_micro_batch)
        out["lr"] = float(self.scheduler.get_last_lr()[0])
        norm = self.engine.get_global_grad_norm()
        if norm is not None:
            out["grad_norm"] = float(norm)
        out["version"] = float(self.version)
        return out
