"""Reading the judge's answer and aggregating WISE scores, as the official scripts do.

* answer clean-up (``vllm_eval.py`` l.198-201): drop ``<think>...</think>`` blocks and stray ``</think>``, strip;
* WISE_Verified (``vllm_eval.py`` l.64-74): ``\\*{0,2}Score\\*{0,2}\\s*[:]?\\s*([01])\\b``, case-insensitive;
  otherwise a lone ``0``/``1`` line when there is exactly one;
* legacy (``WISE_legacy/gpt_eval.py`` l.56-76): every ``(Consistency|Realism|Aesthetic Quality)`` followed by
  an optional colon and a digit, case-insensitive, the last one of each name winning; otherwise the first three
  lone ``0``-``2`` lines in that order; WiScore = (0.7 C + 0.2 R + 0.1 A) / 2 (``Calculate.py`` l.6-8);
* summary: per category the mean over the parsed images, the overall score the variant's weighted sum when
  every category has at least one (``calculate_verified.py`` l.212-247, ``Calculate.py`` l.206-241).

The official colon class is ``[::]`` in both scripts, i.e. ASCII ``:`` only; a full-width colon does not parse
there either. An answer that does not parse is retried up to three times officially and the prompt left out
after that; a greedy judge would repeat the same answer, so here it is reported as unparsed (score NaN) and
left out of the means.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from evaluation.wise.variants import CATEGORIES, WiseVariant

_THINK_BLOCK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)
_THINK_END = re.compile(r"</think>\s*")
_SCORE = re.compile(r"\*{0,2}Score\*{0,2}\s*[:]?\s*([01])\b", re.IGNORECASE)
_LONE_BINARY = re.compile(r"(?m)^\s*([01])\s*$")
_ASPECTS = re.compile(r"\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*[:]?\s*(\d)", re.IGNORECASE)
_LONE_TERNARY = re.compile(r"(?m)^\s*([0-2])\s*$")
ASPECTS = ("consistency", "realism", "aesthetic_quality")


def strip_think(text: str) -> str:
    return _THINK_END.sub("", _THINK_BLOCK.sub("", text)).strip()


def parse_verified(text: str) -> float | None:
    """The binary WISE_Verified score of a judge answer, or None."""
    m = _SCORE.search(text)
    if m:
        return float(m.group(1))
    lone = _LONE_BINARY.findall(text)
    return float(lone[0]) if len(lone) == 1 else None


def parse_legacy(text: str) -> dict[str, float] | None:
    """The three 0-2 legacy scores of a judge answer (keys ASPECTS), or None when any is missing."""
    scores = {name.lower().replace(" ", "_"): float(v) for name, v in _ASPECTS.findall(text)}
    if not scores:
        lone = _LONE_TERNARY.findall(text)
        if len(lone) >= 3:
            scores = dict(zip(ASPECTS, map(float, lone)))
    return scores if all(a in scores for a in ASPECTS) else None


def wiscore(consistency: float, realism: float, aesthetic_quality: float) -> float:
    return (0.7 * consistency + 0.2 * realism + 0.1 * aesthetic_quality) / 2


def summarize(variant: WiseVariant, prompt_ids: Sequence[int], scores: Sequence[float]) -> dict:
    """Category means and the weighted overall of per-image scores (NaN = unparsed, left out).

    ``complete`` is true when every prompt 1-1000 has a parsed score, the official scripts' condition for
    reporting the overall score of a full run; on a subset the overall is still given when every category
    has a score.
    """
    if len(prompt_ids) != len(scores):
        raise ValueError(f"{len(prompt_ids)} prompt ids but {len(scores)} scores")
    per_cat: dict[str, list[float]] = {c: [] for c in CATEGORIES}
    unparsed = []
    for pid, s in zip(prompt_ids, scores):
        if math.isnan(s):
            unparsed.append(int(pid))
        else:
            per_cat[variant.category(int(pid))].append(float(s))
    means = {c: sum(v) / len(v) for c, v in per_cat.items() if v}
    overall = sum(variant.weights[c] * means[c] for c in CATEGORIES) if len(means) == len(CATEGORIES) else None
    scored = {int(p) for p, s in zip(prompt_ids, scores) if not math.isnan(s)}
    return {
        "metric": variant.metric,
        "categories": means,
        "images": {c: len(v) for c, v in per_cat.items() if v},
        "unparsed": sorted(unparsed),
        "overall": overall,
        "complete": scored >= set(range(1, 1001)),
    }
