"""A user's local WISE checkout: its prompt files and judge rubric (see evaluation/wise/variants.py for which
files each protocol reads). WISE has no licence; nothing of it is copied into this project or its tests.

Each prompt record has ``prompt_id`` (1-1000), ``Prompt``, ``Explanation``, ``Category``, ``Subcategory``. The
category used for scoring is the one of the id range (as the official scripts do), not the record's field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.base import EvalItem
from evaluation.local_files import require_files
from evaluation.wise.rubric import Rubric, read_rubric
from evaluation.wise.variants import WiseVariant

WISE_HINT = (
    "Clone https://github.com/PKU-YuanGroup/WISE (this reader follows the layout of commit eb51174) on a "
    "machine with network access, copy the clone here and give its path; the repository has no licence, "
    "so this project does not ship its files."
)


class WiseDataError(ValueError):
    """A WISE prompt file does not hold what the official scripts expect."""


@dataclass(frozen=True)
class WisePrompt:
    prompt_id: int
    category: str  # by id range of the variant
    record: dict[str, Any]  # the file's record, as the judge rubric reads it

    @property
    def prompt(self) -> str:
        return self.record["Prompt"]


def checkout_dir(path, variant: WiseVariant) -> Path:
    return require_files(
        path,
        f"the WISE checkout (for WISE {variant.name})",
        [(f,) for f in (*variant.prompt_files, variant.rubric_file)],
        WISE_HINT,
    )


def load_prompts(path, variant: WiseVariant) -> list[WisePrompt]:
    """Every prompt of the variant, by prompt_id."""
    root = checkout_dir(path, variant)
    prompts: dict[int, WisePrompt] = {}
    for rel in variant.prompt_files:
        try:
            records = json.loads((root / rel).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise WiseDataError(f"{root / rel}: not JSON ({e})") from e
        if not isinstance(records, list):
            raise WiseDataError(f"{root / rel}: expected a JSON list of prompt records")
        for rec in records:
            missing = [k for k in ("prompt_id", "Prompt", "Explanation") if k not in rec]
            if missing or not isinstance(rec["prompt_id"], int):
                raise WiseDataError(f"{root / rel}: record {rec!r} lacks {missing or ['an integer prompt_id']}")
            pid = rec["prompt_id"]
            if pid in prompts:
                raise WiseDataError(f"{root / rel}: prompt_id {pid} appears twice in WISE {variant.name}")
            prompts[pid] = WisePrompt(prompt_id=pid, category=variant.category(pid), record=dict(rec))
    return [prompts[k] for k in sorted(prompts)]


def load_rubric(path, variant: WiseVariant) -> Rubric:
    return read_rubric(checkout_dir(path, variant) / variant.rubric_file)


def eval_items(prompts: Sequence[WisePrompt]) -> list[EvalItem]:
    """One item per prompt (WISE scores one image each, named ``{prompt_id}.png``)."""
    return [
        EvalItem(
            benchmark="wise",
            category=p.category,
            prompt=p.prompt,
            prompt_index=i,
            sample_index=0,
            metadata=dict(p.record),
        )
        for i, p in enumerate(prompts)
    ]
