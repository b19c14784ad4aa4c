"""The benchmarks the harness knows: their categories, official images per prompt, and how a selection such as
``t2i_compbench/color`` or ``geneval`` is read (unknown names get a "did you mean").

Light on purpose (no torch): the config section (evaluation/config.py) validates against it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from evaluation.geneval.prompts import TAGS as GENEVAL_TAGS
from evaluation.wise.variants import CATEGORIES as WISE_CATEGORIES

COMPBENCH = "t2i_compbench"
GENEVAL = "geneval"
WISE = "wise"

# T2I-CompBench(++) categories, named after their prompt files ({category}_val.txt).
COMPBENCH_CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "numeracy", "3d_spatial")

CATEGORIES: dict[str, tuple[str, ...]] = {
    COMPBENCH: COMPBENCH_CATEGORIES,
    GENEVAL: tuple(GENEVAL_TAGS),
    WISE: tuple(WISE_CATEGORIES),
}

# Images per prompt of each benchmark's own generation script (EVAL.md sections 1-3).
OFFICIAL_IMAGES_PER_PROMPT = {COMPBENCH: 10, GENEVAL: 4, WISE: 1}


class SelectionError(ValueError):
    """An unknown benchmark or category; the message suggests the closest name."""


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}? " if close else ""


def parse_selection(entries: Sequence[str]) -> dict[str, list[str]]:
    """``["t2i_compbench/color", "geneval"]`` -> ``{"t2i_compbench": ["color"], "geneval": [every tag]}``, in the
    catalog's order, without repeats."""
    chosen: dict[str, set[str]] = {}
    for entry in entries:
        bench, _, category = str(entry).strip().partition("/")
        if bench not in CATEGORIES:
            raise SelectionError(
                f"unknown benchmark {bench!r} in {entry!r}; {_did_you_mean(bench, list(CATEGORIES))}"
                f"(benchmarks: {', '.join(CATEGORIES)})"
            )
        if category and category not in CATEGORIES[bench]:
            raise SelectionError(
                f"unknown {bench} category {category!r} in {entry!r}; "
                f"{_did_you_mean(category, CATEGORIES[bench])}"
                f"(categories: {', '.join(CATEGORIES[bench])})"
            )
        chosen.setdefault(bench, set()).update([category] if category else CATEGORIES[bench])
    if not chosen:
        raise SelectionError(f"no benchmark selected; name at least one of {', '.join(CATEGORIES)}")
    return {b: [c for c in CATEGORIES[b] if c in chosen[b]] for b in CATEGORIES if b in chosen}
