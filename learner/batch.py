"""What the learner trains on: lean per-sample records (no images) and their packing into padded tensors.

A :class:`TrainSample` is a :class:`core.records.RolloutSample` without the pixels, plus its advantage; it is
what crosses from the driver to the learner ranks. :func:`pack_level` lays one level (semantic CoT or image
tokens) of a micro-batch out as context left-padded to a common length followed by targets right-padded to a
common length, so the targets of every row sit in the same columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch

from core.records import ImageLogprobMode, RolloutGroup, RolloutSample

LEVELS = ("semantic", "token")  # semantic = text CoT tokens (lm_head), token = image tokens (generation head)


@dataclass
class TrainSample:
    cot_prompt_ids: list[int]
    cot_ids: list[int]
    image_prompt_ids: list[int]
    image_ids: list[int]
    advantage: float
    cot_logprobs: Optional[list[float]] = None  # behaviour log-probs (None: the rollout did not record them)
    image_logprobs: Optional[list[float]] = None
    image_logprob_mode: ImageLogprobMode = ImageLogprobMode.conditional
    policy_version: int = 0

    @classmethod
    def from_rollout(cls, s: RolloutSample, advantage: float) -> TrainSample:
        return cls(
            cot_prompt_ids=list(s.cot_prompt_ids),
            cot_ids=list(s.cot_ids),
            image_prompt_ids=list(s.image_prompt_ids),
            image_ids=list(s.image_ids),
            advantage=float(advantage),
            cot_logprobs=None if s.cot_logprobs is None else list(s.cot_logprobs),
            image_logprobs=None if s.image_logprobs is None else list(s.image_logprobs),
            image_logprob_mode=s.image_logprob_mode,
            policy_version=int(s.policy_version),
        )

    def context(self, level: str) -> list[int]:
        return self.cot_prompt_ids if level == "semantic" else self.image_prompt_ids

    def targets(self, level: str) -> list[int]:
        return self.cot_ids if level == "semantic" else self.image_ids

    def behaviour_logprobs(self, level: str) -> Optional[list[float]]:
        return self.cot_logprobs if level == "semantic" else self.image_logprobs


def train_samples(groups: Sequence[RolloutGroup], advantages: Sequence[Sequence[float]]) -> list[TrainSample]:
    """Flatten groups into train samples, attaching each sample's advantage (same nesting as ``groups``)."""
    if len(groups) != len(advantages):
        raise ValueError(f"{len(groups)} groups but {len(advantages)} advantage groups")
    out = []
    for g, adv in zip(groups, advantages):
        if len(g.samples) != len(adv):
            raise ValueError(
                f"group of prompt {g.prompt.prompt!r} has {len(g.samples)} samples but {len(adv)} advantages"
            )
        out.extend(TrainSample.from_rollout(s, a) for s, a in zip(g.samples, adv))
    return out


@dataclass
class LevelInputs:
    """One level of a micro-batch: ``[context (left-padded to P) | targets (right-padded to T)]`` per row."""

    context_ids: torch.Tensor  # [B, P] long
    context_mask: torch.Tensor  # [B, P] long, 0 on left padding
    targets: torch.Tensor  # [B, T] long, the pad id beyond each row's length
    target_mask: torch.Tensor  # [B, T] bool

    @property
    def num_tokens(self) -> int:
        return int(self.target_mask.sum())

    def to(self, device: torch.device | str) -> LevelInputs:
        return LevelInputs(
            *(t.to(device) for t in (self.context_ids, self.context_mask, self.targets, self.target_mask))
        )


def pack_level(
    contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]], pad_id: int, target_pad: Optional[int] = None
) -> LevelInputs:
    """``target_pad`` fills the target columns beyond a row's length (default ``pad_id``; image targets need a
    valid code). There is always at least one target column, so every rank runs the same forwards (ZeRO-3
    gathers parameters collectively) even when a micro-batch has no targets at all."""
    if len(contexts) != len(targets) or not contexts:
        raise ValueError(
            f"pack_level needs as many contexts as targets, at least one (got {len(contexts)}, {len(targets)})"
        )
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every sample needs a non-empty context (at least BOS) to predict its first target from")
    b, p, t = len(contexts), max(len(c) for c in contexts), max(1, max(len(x) for x in targets))
    ctx = torch.full((b, p), pad_id, dtype=torch.long)
    cmask = torch.zeros((b, p), dtype=torch.long)
    tgt = torch.full((b, t), pad_id if target_pad is None else target_pad, dtype=torch.long)
    tmask = torch.zeros((b, t), dtype=torch.bool)
    for i, (c, x) in enumerate(zip(contexts, targets)):
        ctx[i, p - len(c) :] = torch.tensor(c, dtype=torch.long)
        cmask[i, p - len(c) :] = 1
        if x:
            tgt[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            tmask[i, : len(x)] = True
    return LevelInputs(ctx, cmask, tgt, tmask)


def pack_values(rows: Sequence[Sequence[float]], width: int) -> torch.Tensor:
    """Per-token floats (e.g. behaviour log-probs) right-padded with zeros to ``width``, float32 [B, width]."""
    out = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        if len(r) > width:
            raise ValueError(f"row {i} has {len(r)} values for {width} target columns")
        if r:
            out[i, : len(r)] = torch.tensor(list(r), dtype=torch.float32)
    return out
