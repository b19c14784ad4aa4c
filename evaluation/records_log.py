"""Append-only JSON-lines files that survive a kill: the manifest of generated images and the per-image scores.

A row is appended and flushed as soon as its work is done, so a run killed at any point keeps every finished row.
A kill in the middle of a write leaves at most one partial last line; reading drops it (and truncates the file
back to its last complete line before the next append), so the work of that row is simply redone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def atomic_write(path: Path, data: bytes) -> None:
    """Write a whole file or nothing (a killed write leaves the old file, or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class RecordsLogError(ValueError):
    """A line that is not JSON in the middle of a log: the file was edited or damaged."""


class RecordsLog:
    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        """Every complete row; a partial last line (a write cut short by a kill) is cut off the file."""
        if not self.path.is_file():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            log.warning(
                "%s: dropping a partial last line (%d bytes) left by an interrupted write", self.path, len(data) - end
            )
            with open(self.path, "r+b") as f:
                f.truncate(end)
        rows = []
        for n, line in enumerate(data[:end].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise RecordsLogError(
                    f"{self.path}, line {n}: not JSON ({e}); the file was edited or damaged, delete it to redo its work"
                ) from None
        return rows

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in rows)
        if not text:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def rewrite(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace the whole file (atomically), e.g. to drop rows of redone work."""
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in rows).encode())
