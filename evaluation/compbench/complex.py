"""T2I-CompBench complex: the 3-in-1 score (three_in_one.py) of BLIP-VQA, the complex-mode 2D spatial score and
the complex-mode CLIPScore, each from its own evaluator.

Only the parts a prompt's sub-list uses are computed (its spatial sub-list needs no CLIP, its action sub-list no
detector), each sub-evaluator once per call on the images that need it. A harness that loads one model at a time
can instead score with the three evaluators separately and call three_in_one.combine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from evaluation.base import EvalItem, Evaluator, ImageResult
from evaluation.compbench.blip_vqa import BlipVqaEvaluator
from evaluation.compbench.clipscore import ClipScoreEvaluator
from evaluation.compbench.detector import FIDELITY, FIDELITY_NOTE
from evaluation.compbench.inputs import check_batch
from evaluation.compbench.spatial import Spatial2DEvaluator
from evaluation.compbench.three_in_one import ComplexSubsets, combine


class ComplexEvaluator(Evaluator):
    name = "complex@gdino"
    fidelity = FIDELITY
    fidelity_note = (
        "the spatial part (58 + 30 of the 300 val prompts) uses GroundingDINO for UniDet: "
        + FIDELITY_NOTE
        + "; the 212 action prompts use only BLIP-VQA and CLIP (same weights)"
    )

    def __init__(
        self, blip: BlipVqaEvaluator, clip: ClipScoreEvaluator, spatial: Spatial2DEvaluator, subsets: ComplexSubsets
    ):
        if not clip.complex_text or not spatial.complex_parse:
            raise ValueError(
                "the complex score needs the complex-mode CLIPScore (complex_text=True) and 2D spatial "
                "(complex_parse=True) evaluators"
            )
        self.blip, self.clip, self.spatial, self.subsets = blip, clip, spatial, subsets

    @classmethod
    def load(
        cls,
        blip_path: str | os.PathLike | None,
        clip_path: str | os.PathLike | None,
        gdino_path: str | os.PathLike | None,
        labels_path: str | os.PathLike,
        spatial_list_path: str | os.PathLike,
        action_list_path: str | os.PathLike,
        device: str = "cpu",
        batch_size: int = 4,
    ) -> ComplexEvaluator:
        subsets = ComplexSubsets.load(spatial_list_path, action_list_path)
        return cls(
            BlipVqaEvaluator.load(blip_path, device, batch_size),
            ClipScoreEvaluator.load(clip_path, complex_text=True, device=device, batch_size=batch_size),
            Spatial2DEvaluator.load(gdino_path, labels_path, complex_parse=True, device=device, batch_size=batch_size),
            subsets,
        )

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        check_batch(images, items)
        kinds = [self.subsets.kind(it.prompt) for it in items]
        parts = {
            "attribute": (self.blip, range(len(items))),
            "spatial": (self.spatial, [i for i, k in enumerate(kinds) if k != "action"]),
            "action": (self.clip, [i for i, k in enumerate(kinds) if k != "spatial"]),
        }
        scored: dict[str, dict[int, ImageResult]] = {}
        for part, (evaluator, idx) in parts.items():
            res = evaluator.score([images[i] for i in idx], [items[i] for i in idx]) if idx else []
            scored[part] = dict(zip(idx, res))
        results = []
        for i, kind in enumerate(kinds):
            got = {part: scored[part].get(i) for part in parts}
            score = combine(kind, *(got[p].score if got[p] else 0.0 for p in ("attribute", "spatial", "action")))
            details = {"kind": kind, **{p: {"score": r.score, **r.details} for p, r in got.items() if r}}
            results.append(ImageResult(score, details))
        return results
