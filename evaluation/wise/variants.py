"""The two WISE evaluation protocols: where their files live in a WISE checkout, their category id ranges and
the weights of the overall score (PKU-YuanGroup/WISE@eb51174).

* ``verified`` (WISE_Verified, the benchmark's current protocol): ``data_verified/*_verified.json``, the binary
  rubric of ``vllm_eval.py`` judged by Qwen3.5-35B-A3B, ranges and weights of ``calculate_verified.py``
  (l.65-76, 246-247).
* ``legacy`` (what the WISE paper and T2I-R1 report): ``WISE_legacy/data/*.json`` (not the ``*_rewrite.json``
  variants), the 0-2 Consistency / Realism / Aesthetic Quality rubric of ``WISE_legacy/gpt_eval.py`` judged by
  GPT-4o-2024-05-13, ranges and weights of ``WISE_legacy/Calculate.py`` (l.6-8, 59-70, 240-241). Offline it runs
  on the Qwen3.5 judge and is a different metric (``wiscore_legacy@qwen3.5``), never comparable to GPT-4o numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

CATEGORIES = ("Culture", "Time", "Space", "Biology", "Physics", "Chemistry")


@dataclass(frozen=True)
class WiseVariant:
    name: str
    metric: str  # the evaluator's name in reports
    prompt_files: tuple[str, ...]  # relative to the checkout root
    rubric_file: str  # the judge script whose build_evaluation_messages holds the rubric
    ranges: tuple[tuple[str, int, int], ...]  # (category, first prompt_id, last prompt_id)
    weights: dict[str, float]

    def category(self, prompt_id: int) -> str:
        for name, first, last in self.ranges:
            if first <= prompt_id <= last:
                return name
        raise ValueError(f"WISE {self.name}: prompt_id {prompt_id} is outside 1-1000")


VERIFIED = WiseVariant(
    name="verified",
    metric="wise_verified@qwen3.5",
    prompt_files=(
        "data_verified/cultural_common_sense_verified.json",
        "data_verified/spatio-temporal_reasoning_verified.json",
        "data_verified/natural_science_verified.json",
    ),
    rubric_file="vllm_eval.py",
    ranges=(
        ("Culture", 1, 400),
        ("Time", 401, 520),
        ("Space", 521, 640),
        ("Biology", 641, 760),
        ("Physics", 761, 880),
        ("Chemistry", 881, 1000),
    ),
    weights={"Culture": 0.40, "Time": 0.12, "Space": 0.12, "Biology": 0.12, "Physics": 0.12, "Chemistry": 0.12},
)

LEGACY = WiseVariant(
    name="legacy",
    metric="wiscore_legacy@qwen3.5",
    prompt_files=(
        "WISE_legacy/data/cultural_common_sense.json",
        "WISE_legacy/data/spatio-temporal_reasoning.json",
        "WISE_legacy/data/natural_science.json",
    ),
    rubric_file="WISE_legacy/gpt_eval.py",
    ranges=(
        ("Culture", 1, 400),
        ("Time", 401, 567),
        ("Space", 568, 700),
        ("Biology", 701, 800),
        ("Physics", 801, 900),
        ("Chemistry", 901, 1000),
    ),
    weights={"Culture": 0.4, "Time": 0.167, "Space": 0.133, "Biology": 0.1, "Physics": 0.1, "Chemistry": 0.1},
)

VARIANTS = {v.name: v for v in (VERIFIED, LEGACY)}


def variant(name: str) -> WiseVariant:
    if name not in VARIANTS:
        raise ValueError(f"unknown WISE variant {name!r}, expected one of {sorted(VARIANTS)}")
    return VARIANTS[name]
