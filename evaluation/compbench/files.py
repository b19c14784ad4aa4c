"""The benchmark data files the T2I-CompBench evaluators read (prompt sub-lists, object names, UniDet's label
list), each checked before use with an error that names the path, the files expected and where to obtain them.
(Their model directories are listed in evaluation/models.py and checked by evaluation/local_files.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

COMPBENCH_REPO = "https://github.com/Karine-Huang/T2I-CompBench"


class BenchmarkFileError(FileNotFoundError):
    """A benchmark data file is missing or malformed."""


def _read_text(path: str | os.PathLike, what: str, source: str) -> str:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise BenchmarkFileError(f"{what}: file {str(p)!r} not found. Get it from {source}.")
    return p.read_text(encoding="utf-8")


def read_lines(path: str | os.PathLike, what: str, source: str = f"{COMPBENCH_REPO} examples/dataset/") -> list[str]:
    """Non-empty lines of a benchmark text file, without their newline (the files' last line has none)."""
    return [line for line in _read_text(path, what, source).splitlines() if line.strip()]


def load_unidet_labels(path: str | os.PathLike) -> list[str]:
    """UniDet's 722 class names (``detection_features.pt['labels']``, e.g. ``"table, desk"``) as a JSON list."""
    source = (
        f"the label list of {COMPBENCH_REPO} UniDet_eval/dataset/detection_features.pt "
        "(torch.load(...)['labels'] written as a JSON list of 722 strings)"
    )
    text = _read_text(path, "UniDet label list", source)
    try:
        labels = json.loads(text)
    except json.JSONDecodeError as e:
        raise BenchmarkFileError(
            f"UniDet label list {str(path)!r} is not valid JSON ({e}); expected a JSON list "
            f"of 722 strings, from {source}"
        ) from e
    if not isinstance(labels, list) or len(labels) != 722 or not all(isinstance(x, str) for x in labels):
        size = f" of length {len(labels)}" if isinstance(labels, list) else ""
        raise BenchmarkFileError(
            f"UniDet label list {str(path)!r} must be a JSON list of 722 strings; got {type(labels).__name__}{size}"
        )
    return labels


def load_new_objects(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``new_objects.txt``: ``singular - plural`` per line -> (singulars, plurals), lowercased and stripped as the
    numeracy script reads them (numeracy_eval.py:23-25)."""
    singular, plural = [], []
    for i, line in enumerate(read_lines(path, "numeracy object names (new_objects.txt)")):
        parts = line.split(" - ")
        if len(parts) < 2:
            raise BenchmarkFileError(f"{str(path)!r} line {i + 1}: expected 'singular - plural', got {line!r}")
        singular.append(parts[0].strip().lower())
        plural.append(parts[1].strip().lower())
    return singular, plural
