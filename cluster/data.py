"""The prompts of each training step.

Batches are a pure function of (seed, step): epoch e uses permutation(seed, e) of the data set, and step t (steps
count from 1, as everywhere a user sees them) takes the t-th ``prompts_per_step`` records of that endless
sequence. Resuming at step t therefore continues with
exactly the data order an uninterrupted run would have seen. Prompt files are read by core/prompt_file.py.
"""

from __future__ import annotations

import numpy as np

from core.prompt_file import DataError
from core.records import PromptRecord


class PromptSchedule:
    """The prompts of each step: seeded shuffling per epoch, deterministic in (seed, step)."""

    def __init__(self, records: list[PromptRecord], prompts_per_step: int, seed: int, shuffle: bool = True):
        if not records:
            raise DataError("no prompts to schedule")
        self.records = records
        self.per_step = prompts_per_step
        self.seed = seed
        self.shuffle = shuffle
        self._perms: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            n = len(self.records)
            rng = np.random.default_rng([self.seed, epoch])
            self._perms = {epoch: rng.permutation(n) if self.shuffle else np.arange(n)}
        return self._perms[epoch]

    def epoch_of(self, step: int) -> int:
        return ((step - 1) * self.per_step) // len(self.records)

    def batch(self, step: int) -> list[PromptRecord]:
        """The prompts of ``step`` (1 is the first step)."""
        if step < 1:
            raise ValueError(f"steps count from 1, got {step}")
        n = len(self.records)
        out = []
        for k in range((step - 1) * self.per_step, step * self.per_step):
            out.append(self.records[int(self._order(k // n)[k % n])])
        return out
