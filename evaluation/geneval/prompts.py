"""GenEval's prompt metadata and class names, read from a directory the user gives.

``evaluation_metadata.jsonl`` holds one JSON object per prompt (``tag``, ``include``, optional ``exclude``,
``prompt``); ``object_names.txt`` the 80 COCO class names in the detector's class order. Both come from GenEval's
``prompts/`` folder (MIT). The metadata dict of a prompt is what the official evaluator reads from each
``{index:05d}/metadata.jsonl``; it travels in :class:`EvalItem.metadata` unchanged and is parsed here into
typed requirements.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluation.base import EvalItem
from evaluation.local_files import require_files

METADATA_FILE = "evaluation_metadata.jsonl"
OBJECT_NAMES_FILE = "object_names.txt"
PROMPT_FILES_HINT = (
    f"Both files are in GenEval's prompts/ folder (https://github.com/djghosh13/geneval, MIT): "
    f"copy {METADATA_FILE} and {OBJECT_NAMES_FILE} into one directory and give its path."
)

# The six tags, in the order of GenEval's summary table.
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATIONS = ("left of", "right of", "above", "below")


class GenevalMetadataError(ValueError):
    """A GenEval metadata record does not have the shape the official evaluator expects."""


@dataclass(frozen=True)
class Requirement:
    """One ``include`` or ``exclude`` clause: ``count`` objects of ``cls`` (of ``color``; ``position`` relative to
    the objects of an earlier include clause, by its index)."""

    cls: str
    count: int
    color: str | None = None
    position: tuple[str, int] | None = None


@dataclass(frozen=True)
class GenevalPrompt:
    tag: str
    prompt: str
    include: tuple[Requirement, ...]
    exclude: tuple[Requirement, ...] = ()

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], class_names: Sequence[str]) -> GenevalPrompt:
        """Parse and check one metadata record; ``class_names`` are the detector's classes."""
        try:
            tag, prompt = meta["tag"], meta["prompt"]
            include = tuple(_requirement(r, class_names, i) for i, r in enumerate(meta["include"]))
            exclude = tuple(_requirement(r, class_names, None) for r in meta.get("exclude", []))
        except (KeyError, TypeError) as e:
            raise GenevalMetadataError(f"GenEval metadata {dict(meta)!r}: missing or malformed field {e}") from e
        if tag not in TAGS:
            raise GenevalMetadataError(f"GenEval metadata {dict(meta)!r}: unknown tag {tag!r}, expected one of {TAGS}")
        return cls(tag=tag, prompt=prompt, include=include, exclude=exclude)


def _requirement(raw: Mapping[str, Any], class_names: Sequence[str], index: int | None) -> Requirement:
    if raw["class"] not in class_names:
        raise GenevalMetadataError(f"class {raw['class']!r} is not one of the detector's {len(class_names)} classes")
    if int(raw["count"]) < 1:
        raise GenevalMetadataError(f"count {raw['count']!r} of {raw['class']!r} must be >= 1")
    color = raw.get("color")
    if color is not None and color not in COLORS:
        raise GenevalMetadataError(f"colour {color!r} of {raw['class']!r} is not one of {COLORS}")
    position = raw.get("position")
    if position is not None:
        relation, target = position
        if index is None or relation not in RELATIONS or not 0 <= int(target) < index:
            raise GenevalMetadataError(
                f"position {position!r} of {raw['class']!r}: expected [relation, index of an "
                f"earlier include clause] with relation one of {RELATIONS}"
            )
        position = (relation, int(target))
    return Requirement(cls=raw["class"], count=int(raw["count"]), color=color, position=position)


def prompts_dir(path) -> Path:
    return require_files(
        path, "the GenEval prompts directory", [(METADATA_FILE,), (OBJECT_NAMES_FILE,)], PROMPT_FILES_HINT
    )


def load_object_names(path) -> list[str]:
    """The detector's class names, in class-index order (``object_names.txt`` of the prompts directory)."""
    text = (prompts_dir(path) / OBJECT_NAMES_FILE).read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def load_metadata(path) -> list[dict[str, Any]]:
    """The raw metadata records of ``evaluation_metadata.jsonl``, in file order (prompt index = position)."""
    root = prompts_dir(path)
    names = load_object_names(root)
    rows = []
    for n, line in enumerate((root / METADATA_FILE).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise GenevalMetadataError(f"{root / METADATA_FILE}, line {n}: not JSON ({e})") from e
        GenevalPrompt.from_metadata(row, names)  # fail at load time, not when the first image is scored
        rows.append(row)
    return rows


def eval_items(metadata: Sequence[Mapping[str, Any]], images_per_prompt: int) -> list[EvalItem]:
    """The items of GenEval's image set: ``images_per_prompt`` samples of every prompt, in file order."""
    return [
        EvalItem(
            benchmark="geneval",
            category=meta["tag"],
            prompt=meta["prompt"],
            prompt_index=index,
            sample_index=sample,
            metadata=dict(meta),
        )
        for index, meta in enumerate(metadata)
        for sample in range(images_per_prompt)
    ]
