"""Records that cross process boundaries: prompt records in, rollout records out.

Plain dataclasses of Python lists and numpy arrays (no torch tensors), so that Ray serialises them cheaply
and every stage (rewards, learner, Parquet logging) can read them without the model code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Optional

import numpy as np


class ImageLogprobMode(StrEnum):
    """Under which distribution image-token log-probs are taken (the learner's ``loss.image_logprob``)."""

    conditional = "conditional"  # T2I-R1: the conditional row alone, temperature 1, no filtering
    guided = "guided"  # the distribution the sampler drew from (CFG, temperature, top-k, top-p)


@dataclass
class PromptRecord:
    """One training prompt with the metadata the rewards need (T2I-R1's JSON-lines format)."""

    prompt: str
    task_type: str = ""
    nouns: list[str] = field(default_factory=list)
    attr_nouns: Optional[list[str]] = None
    spatial_info: Optional[dict[str, str]] = None  # {obj1, obj2, locality}
    numeracy_info: Optional[list[dict[str, Any]]] = None  # [{obj_name, num}]
    index: int = -1  # position in the data set (identifies the prompt for exactly-once accounting)

    def metadata(self) -> dict[str, Any]:
        """The reward-side fields, as in the training file."""
        out: dict[str, Any] = {"task_type": self.task_type, "nouns": list(self.nouns)}
        if self.attr_nouns is not None:
            out["attr_nouns"] = list(self.attr_nouns)
        if self.spatial_info is not None:
            out["spatial_info"] = dict(self.spatial_info)
        if self.numeracy_info is not None:
            out["numeracy_info"] = [dict(x) for x in self.numeracy_info]
        return out


@dataclass
class RolloutSample:
    """One sample of a group: a semantic CoT and the image drawn from it, with what the learner needs."""

    prompt: PromptRecord
    group_index: int  # which sample of the prompt's group (0 .. G-1)
    cot_prompt_ids: list[int]  # CoT context (BOS + chat string), as fed to the text engine
    cot_ids: list[int]  # sampled CoT tokens (EOS included when the engine stopped on it)
    cot_text: str
    image_prompt_ids: list[int]  # image context: BOS + "User: {prompt}. {cot}\n\nAssistant:" + <begin_of_image>
    image_ids: list[int]  # sampled image tokens (Janus-Pro: 576)
    image: np.ndarray  # uint8 RGB, H x W x 3
    cot_logprobs: Optional[list[float]] = None  # behaviour log-probs of cot_ids (raw model distribution)
    image_logprobs: Optional[list[float]] = None  # behaviour log-probs of image_ids (see image_logprob_mode)
    image_logprob_mode: ImageLogprobMode = ImageLogprobMode.conditional
    policy_version: int = 0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, shared by the batch
    memory_mib: dict[str, float] = field(default_factory=dict)  # peak memory per stage (core.memory), likewise


@dataclass
class RolloutGroup:
    """The G samples of one prompt: the unit the reward servers score and the advantage normalises."""

    prompt: PromptRecord
    samples: list[RolloutSample]

    @property
    def images(self) -> list[np.ndarray]:
        return [s.image for s in self.samples]
