"""Prompt files: T2I-R1's JSON-lines format (or the same columns in Parquet), row by row into PromptRecords.

The training loop's per-step batches are cluster/data.py's; rollout.generate and the reward tools read prompt
files too, hence this base module. ``data.*`` (:class:`DataConfig`) says which file and what to do with a bad row.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Optional

from core.config import require
from core.records import PromptRecord

log = logging.getLogger(__name__)

BUILTIN_PROMPTS = Path(__file__).parent / "data" / "prompts.jsonl"


class DataError(ValueError):
    """A prompt file or row is malformed; the message names the file and the line."""


class OnMalformed(StrEnum):
    error = "error"  # raise one DataError naming every unusable line
    skip = "skip"  # drop such rows; a run lists them in its logs/skipped_rows.txt


@dataclass
class DataConfig:
    path: Optional[str] = None  # JSON lines in T2I-R1's format, or Parquet; None = the built-in prompt set
    shuffle: bool = True
    on_malformed: OnMalformed = OnMalformed.error

    def validate(self) -> None:
        if self.path is not None:
            f = Path(os.path.expanduser(self.path))
            require(f.is_file(), "path", f"file {str(f)!r} does not exist (JSON lines or Parquet expected)")


@dataclass
class PromptSet:
    records: list[PromptRecord]
    source: str
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason) of skipped rows


def _str_list(row: dict[str, Any], key: str, required: bool) -> Optional[list[str]]:
    v = row.get(key)
    if v is None:
        if required:
            raise ValueError(f"missing field {key!r}")
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError(f"field {key!r} must be a non-empty list of strings, got {v!r}")
    return list(v)


def parse_row(row: Any, index: int) -> PromptRecord:
    """Validate one row of T2I-R1's format. Raises ValueError with the reason."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("missing or empty field 'prompt'")
    task_type = row.get("task_type", "")
    if not isinstance(task_type, str):
        raise ValueError(f"field 'task_type' must be a string, got {task_type!r}")
    spatial = row.get("spatial_info")
    if spatial is not None:
        if not isinstance(spatial, dict) or not all(
            isinstance(spatial.get(k), str) for k in ("obj1", "obj2", "locality")
        ):
            raise ValueError(f"field 'spatial_info' must have string obj1, obj2, locality; got {spatial!r}")
        spatial = {k: spatial[k] for k in ("obj1", "obj2", "locality")}
    numeracy = row.get("numeracy_info")
    if numeracy is not None:
        ok = (
            isinstance(numeracy, list)
            and numeracy
            and all(
                isinstance(x, dict)
                and isinstance(x.get("obj_name"), str)
                and isinstance(x.get("num"), int)
                and not isinstance(x.get("num"), bool)
                for x in numeracy
            )
        )
        if not ok:
            raise ValueError(f"field 'numeracy_info' must be a list of {{obj_name: str, num: int}}; got {numeracy!r}")
        numeracy = [{"obj_name": x["obj_name"], "num": int(x["num"])} for x in numeracy]
    return PromptRecord(
        prompt=prompt.strip(),
        task_type=task_type,
        nouns=_str_list(row, "nouns", required=False) or [],
        attr_nouns=_str_list(row, "attr_nouns", required=False),
        spatial_info=spatial,
        numeracy_info=numeracy,
        index=index,
    )


def _rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed row or the exception) for JSON lines; (row number, dict) for Parquet."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "prompt" not in table.column_names:
            raise DataError(f"{path}: Parquet file has no 'prompt' column (columns: {table.column_names})")
        return [(i + 1, {k: v for k, v in r.items() if v is not None}) for i, r in enumerate(table.to_pylist())]
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                out.append((n, json.loads(line)))
            except json.JSONDecodeError as e:
                out.append((n, e))
    return out


# How many unusable rows an error message lists (all of them are counted).
LISTED_ROWS = 10

RowCheck = Callable[[PromptRecord], list[str]]


def load_prompts(
    path: Optional[str] = None, on_malformed: OnMalformed = OnMalformed.error, row_check: Optional[RowCheck] = None
) -> PromptSet:
    """Read a prompt file (JSON lines or .parquet); None reads the built-in prompt set.

    ``row_check`` adds the caller's own needs (e.g. what the enabled reward scorers read): the problems it returns
    for a well-formed row make that row unusable too. Every row is checked before anything is decided:
    on_malformed ``error`` raises one DataError listing the unusable rows (the first LISTED_ROWS, with the count);
    ``skip`` drops them and records (line number, reason) in ``skipped``.
    """
    p = BUILTIN_PROMPTS if path is None else Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"prompt file {str(p)!r} does not exist (JSON lines or Parquet in T2I-R1's format expected)")
    records, bad = [], []
    for n, row in _rows(p):
        try:
            if isinstance(row, Exception):
                raise ValueError(f"invalid JSON ({row.msg})")
            record = parse_row(row, index=len(records))
            problems = row_check(record) if row_check is not None else []
            if problems:
                raise ValueError("; ".join(problems))
            records.append(record)
        except ValueError as e:
            bad.append((n, str(e)))
    if bad and on_malformed == OnMalformed.error:
        raise DataError(_bad_rows_message(p, bad))
    if bad:
        log.warning(
            "%s: skipped %d unusable rows of %d (first: line %d: %s)", p, len(bad), len(bad) + len(records), *bad[0]
        )
    if not records:
        raise DataError(f"{p}: no usable prompts")
    return PromptSet(records=records, source=str(p), skipped=bad)


def _bad_rows_message(path: Path, bad: list[tuple[int, str]]) -> str:
    if len(bad) == 1:
        return f"{path}: line {bad[0][0]}: {bad[0][1]}. Fix the row, or set data.on_malformed=skip to skip such rows"
    listed = "".join(f"\n  line {n}: {reason}" for n, reason in bad[:LISTED_ROWS])
    more = f"\n  ... and {len(bad) - LISTED_ROWS} more" if len(bad) > LISTED_ROWS else ""
    return (
        f"{path}: {len(bad)} unusable rows{f' (the first {LISTED_ROWS} below)' if more else ''}; fix them, or "
        f"set data.on_malformed=skip to skip such rows:{listed}{more}"
    )
