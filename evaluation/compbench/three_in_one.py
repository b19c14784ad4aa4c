"""T2I-CompBench's complex score (3_in_1_eval/3_in_1.py): each complex prompt combines the BLIP-VQA attribute
score with the 2D spatial score, the complex-mode CLIPScore, or both, by which sub-list the prompt is in.

The script pairs scores by position, assuming 10 images per prompt in file order (l.55-69); here every image
carries its prompt, so any number of images per prompt combines the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from evaluation.compbench.files import read_lines

Kind = Literal["spatial", "action", "all"]


def complex_key(line: str) -> str:
    """How the script matches a prompt to the sub-lists: the text before the first '.', lowercased (l.47-53)."""
    return line.strip("\n").split(".")[0].lower()


@dataclass(frozen=True)
class ComplexSubsets:
    """The keys of ``complex_val_spatial.txt`` (spatial relation + attributes) and ``complex_val_action.txt``
    (action relation + attributes); a prompt in neither has all three."""

    spatial: frozenset[str]
    action: frozenset[str]

    @classmethod
    def load(cls, spatial_path: str | os.PathLike, action_path: str | os.PathLike) -> ComplexSubsets:
        return cls(
            frozenset(
                complex_key(x) for x in read_lines(spatial_path, "complex spatial sub-list (complex_val_spatial.txt)")
            ),
            frozenset(
                complex_key(x) for x in read_lines(action_path, "complex action sub-list (complex_val_action.txt)")
            ),
        )

    def kind(self, prompt: str) -> Kind:
        key = complex_key(prompt)
        if key in self.spatial:
            return "spatial"
        if key in self.action:
            return "action"
        return "all"


def combine(kind: Kind, attribute: float, spatial: float, action: float) -> float:
    """spatial -> (spatial + attribute) / 2; action -> (clip + attribute) / 2; all -> mean of the three."""
    if kind == "spatial":
        return (spatial + attribute) * 0.5
    if kind == "action":
        return (action + attribute) * 0.5
    return (attribute + spatial + action) / 3
