"""From per-image results to the numbers a benchmark reports.

Each selected category has one metric: the evaluator passes (evaluation/passes.py) an image needs and how their
scores make the image's score (one pass, or CompBench's complex 3-in-1 over up to three); a category's number is the
mean over its images; a benchmark's overall number is the official aggregate (CompBench: the mean of T2I-R1's six
categories; GenEval: the unweighted mean of the tags; WISE: the protocol's weighted sum).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from evaluation.base import EvalItem, Fidelity
from evaluation.catalog import COMPBENCH, GENEVAL
from evaluation.compbench.three_in_one import ComplexSubsets, combine
from evaluation.config import EvalConfig, Scoring
from evaluation.geneval.rules import summarize as geneval_summary
from evaluation.passes import complex_subsets
from evaluation.plan import ImageJob
from evaluation.wise.scoring import summarize as wise_summary
from evaluation.wise.variants import variant as wise_variant

# The six categories of T2I-R1's T2I-CompBench table; their mean is its last column.
COMPBENCH_TABLE = ("color", "shape", "texture", "spatial", "non_spatial", "complex")
FIDELITY_ORDER = (Fidelity.exact, Fidelity.same_weights, Fidelity.substitute, Fidelity.proxy)


@dataclass(frozen=True)
class CategoryMetric:
    name: str  # as the report names it, e.g. "blip_vqa", "complex@gdino"
    passes: Callable[[EvalItem], tuple[str, ...]]  # the evaluator passes an image needs
    combine: Callable[[EvalItem, dict[str, float]], float]  # their scores -> the image's score


def single(pass_name: str) -> CategoryMetric:
    return CategoryMetric(pass_name, lambda item: (pass_name,), lambda item, scores: scores[pass_name])


COMPLEX_PARTS = {
    "spatial": ("blip_vqa", "spatial_complex@gdino"),
    "action": ("blip_vqa", "clipscore_complex"),
    "all": ("blip_vqa", "spatial_complex@gdino", "clipscore_complex"),
}


def complex_metric(subsets: ComplexSubsets) -> CategoryMetric:
    """T2I-CompBench complex: BLIP-VQA with the spatial score, the complex CLIPScore or both, by sub-list."""

    def combined(item: EvalItem, s: dict[str, float]) -> float:
        return combine(
            subsets.kind(item.prompt),
            s["blip_vqa"],
            s.get("spatial_complex@gdino", 0.0),
            s.get("clipscore_complex", 0.0),
        )

    return CategoryMetric("complex@gdino", lambda item: COMPLEX_PARTS[subsets.kind(item.prompt)], combined)


OFFICIAL_PASS = {
    "color": "blip_vqa",
    "shape": "blip_vqa",
    "texture": "blip_vqa",
    "non_spatial": "clipscore",
    "spatial": "spatial@gdino",
    "3d_spatial": "spatial3d@gdino",
    "numeracy": "numeracy@gdino",
}
COLOR_CATEGORIES = {(COMPBENCH, "color"), (GENEVAL, "colors"), (GENEVAL, "color_attr")}


def category_metric(
    cfg: EvalConfig, benchmark: str, category: str, subsets: Callable[[], ComplexSubsets]
) -> CategoryMetric:
    """The metric of one category under ``eval.scoring``; ``subsets`` loads the complex sub-lists when needed."""
    if cfg.scoring == Scoring.embedded:
        return single("color@embedded" if (benchmark, category) in COLOR_CATEGORIES else "objects@embedded")
    if benchmark == COMPBENCH:
        return complex_metric(subsets()) if category == "complex" else single(OFFICIAL_PASS[category])
    if benchmark == GENEVAL:
        return single("geneval_mask2former")
    return single(wise_variant(cfg.wise_protocol).metric)


def worst_fidelity(tags: list[str]) -> str:
    """A metric built from several evaluators is only as close to the benchmark as its furthest part."""
    return max(tags, key=lambda t: FIDELITY_ORDER.index(Fidelity(t))) if tags else ""


def benchmark_overall(cfg: EvalConfig, benchmark: str, images: list[tuple[EvalItem, float]]) -> dict:
    """The benchmark's aggregate over the scored images: ``{"name", "value" (None when the selection lacks a
    category it needs), "complete"}``."""
    if benchmark == COMPBENCH:
        means = {}
        for cat in COMPBENCH_TABLE:
            scores = [s for it, s in images if it.category == cat]
            if scores:
                means[cat] = float(np.mean(scores))
        value = float(np.mean(list(means.values()))) if len(means) == len(COMPBENCH_TABLE) else None
        return {"name": "mean of the 6 T2I-R1 categories", "value": value, "complete": value is not None}
    if benchmark == GENEVAL:
        s = geneval_summary([it.category for it, _ in images], [v for _, v in images])
        return {"name": "overall (mean of the tags)", "value": s["overall"], "complete": s["complete"]}
    variant = wise_variant(cfg.wise_protocol)
    s = wise_summary(variant, [it.prompt_index for it, _ in images], [v for _, v in images])
    return {
        "name": f"overall ({variant.metric}, weighted)",
        "value": s["overall"],
        "complete": s["complete"],
        "unparsed": s["unparsed"],
    }


def category_mean(scores: list[float]) -> Optional[float]:
    """Mean over the scored images (a WISE answer that did not parse is NaN and left out, as officially)."""
    kept = [s for s in scores if not np.isnan(s)]
    return float(np.mean(kept)) if kept else None


def metrics_for(cfg: EvalConfig, jobs: list[ImageJob]) -> dict[tuple[str, str], CategoryMetric]:
    """The metric of every (benchmark, category) the jobs hold."""
    subsets = lru_cache(maxsize=1)(lambda: complex_subsets(cfg))
    return {
        (j.item.benchmark, j.item.category): category_metric(cfg, j.item.benchmark, j.item.category, subsets)
        for j in jobs
    }


def passes_needed(jobs: list[ImageJob], metrics: dict[tuple[str, str], CategoryMetric]) -> set[str]:
    return {p for j in jobs for p in metrics[(j.item.benchmark, j.item.category)].passes(j.item)}
