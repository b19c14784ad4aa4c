"""What a user finds in ``output_dir``: metrics.parquet, rollouts/, images/, checkpoints/, config.yaml.

Every step's outputs are written under the step's own name and replaced as a whole, so a run resumed from a
checkpoint at step s simply rewrites steps after s: no rollout or metric row is ever counted twice. Steps count
from 1 (the ``step`` column, ``step_000001.*``), as in the console.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core.images import caption_grid, encode_png
from core.records import RolloutGroup


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    """Every column any row has, in order of first appearance; a row without one holds null there.
    (``pa.Table.from_pylist`` alone takes the columns of the first row and drops the others.)"""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in columns})


def _write_parquet(path: Path, rows: list[dict[str, Any]], types: Optional[dict[str, pa.DataType]] = None) -> None:
    """``types``: columns whose type must not depend on the values (a column of nulls is still a string column)."""
    table = _table(rows)
    for name, type_ in (types or {}).items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, table[name].cast(type_))
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    _atomic_write(path, buf.getvalue().to_pybytes())


class RunOutputs:
    def __init__(self, output_dir: str | os.PathLike):
        self.root = Path(output_dir).expanduser().resolve()
        self.rollouts = self.root / "rollouts"
        self.images = self.root / "images"
        self.checkpoints = self.root / "checkpoints"
        self.logs = self.root / "logs"
        for d in (self.root, self.rollouts, self.images, self.checkpoints, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self._metrics_log = self.root / "metrics.jsonl"  # source of truth, one JSON row per step
        self.metrics_path = self.root / "metrics.parquet"

    # ------------------------------------------------------------------ metrics
    def metric_rows(self) -> list[dict[str, Any]]:
        if not self._metrics_log.is_file():
            return []
        return [json.loads(l) for l in self._metrics_log.read_text().splitlines() if l.strip()]

    def write_metrics(self, row: dict[str, Any]) -> None:
        """Add (or replace) the row of ``row['step']`` and rewrite metrics.parquet."""
        rows = [r for r in self.metric_rows() if r["step"] != row["step"]] + [row]
        self._write_metric_rows(sorted(rows, key=lambda r: r["step"]))

    def _write_metric_rows(self, rows: list[dict[str, Any]]) -> None:
        _atomic_write(self._metrics_log, "".join(json.dumps(r) + "\n" for r in rows).encode())
        _write_parquet(self.metrics_path, rows)

    def truncate_after(self, step: int) -> None:
        """On resume from the checkpoint of ``step``: forget every output of later steps."""
        rows = [r for r in self.metric_rows() if r["step"] <= step]
        if self._metrics_log.is_file():
            self._write_metric_rows(rows)
        for f in list(self.rollouts.glob("step_*.parquet")) + list(self.images.glob("step_*.png")):
            if int(f.stem.split("_")[1]) > step:
                f.unlink()
        for d in self.rollouts.glob("images_step_*"):
            if int(d.name.rsplit("_", 1)[1]) > step:
                for f in d.iterdir():
                    f.unlink()
                d.rmdir()
        for f in self.root.rglob(".*.tmp*"):  # half-written files of a writer that was killed mid-write
            if f.is_file():
                f.unlink()

    # ------------------------------------------------------------------ rollouts
    def write_rollouts(
        self,
        step: int,
        groups: list[RolloutGroup],
        rewards: np.ndarray,
        per_scorer: dict[str, np.ndarray],
        advantages: np.ndarray,
        sample_images: bool = True,
    ) -> Path:
        """One Parquet file per step: prompt, CoT, image file, each scorer's reward, advantage, version.
        Without ``sample_images`` no PNG is written and ``image_file`` is null."""
        img_dir = self.rollouts / f"images_step_{step:06d}"
        if sample_images:
            img_dir.mkdir(exist_ok=True)
        rows, k = [], 0
        for g in groups:
            for s in g.samples:
                name = f"p{g.prompt.index:06d}_g{s.group_index:02d}.png"
                if sample_images:
                    _atomic_write(img_dir / name, encode_png(s.image))
                row = {
                    "step": step,
                    "prompt_index": g.prompt.index,
                    "group_index": s.group_index,
                    "prompt": g.prompt.prompt,
                    "task_type": g.prompt.task_type,
                    "cot": s.cot_text,
                    "cot_tokens": len(s.cot_ids),
                    "image_file": str((img_dir / name).relative_to(self.root)) if sample_images else None,
                    "reward": float(rewards[k]),
                    "advantage": float(advantages[k]),
                    "policy_version": s.policy_version,
                }
                row.update({f"reward_{n}": float(v[k]) for n, v in per_scorer.items()})
                rows.append(row)
                k += 1
        path = self.rollouts / f"step_{step:06d}.parquet"
        _write_parquet(path, rows, {"image_file": pa.string()})
        return path

    def write_grid(self, step: int, groups: list[RolloutGroup], rewards: np.ndarray, limit: int) -> Path:
        images, captions, k = [], [], 0
        for g in groups:
            for s in g.samples:
                if len(images) < limit:
                    images.append(s.image)
                    captions.append(f"[{rewards[k]:.3f}] {g.prompt.prompt} | CoT: {s.cot_text}")
                k += 1
        path = self.images / f"step_{step:06d}.png"
        grid = caption_grid(images, captions)
        tmp = path.with_name(f".{path.name}.tmp.png")
        grid.save(tmp)
        os.replace(tmp, path)
        return path
