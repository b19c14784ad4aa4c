"""Stage 1, generation: every planned image that a policy's folder does not hold yet, drawn by rollout actors (the
rollout stage's own workers, several in parallel, each given one batch at a time), written in the benchmark's
layout (evaluation/plan.py), and recorded in ``manifest.jsonl``.

Resumable: an image counts as done when the manifest has its row and its file decodes to the bytes the row's sha1
names. A killed run loses at most the batches in flight; a missing or corrupt file is drawn again (with its own
seed, so it comes out the same) and its manifest row replaced; at the end the manifest is rewritten with exactly one
row per file, in plan order. ``generation.json`` records what drew the folder's images (policy weights, CoT or not,
sampling settings, seeds): a rerun with other settings is refused with the list of differences, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from core.images import decode_png, encode_png
from core.records import PromptRecord
from evaluation.plan import ImageJob, side_files
from evaluation.records_log import RecordsLog, atomic_write
from rollout.config import RolloutConfig

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
SETTINGS = "generation.json"


class GenerationMismatch(RuntimeError):
    """A folder holds images drawn with other settings; the message lists the differences."""


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def generation_settings(
    identity: dict[str, Any], rollout: RolloutConfig, seed: int, images_per_prompt: dict[str, int]
) -> dict[str, Any]:
    """Everything that decides which image a (prompt, seed) gets. Batch sizes, engine memory and CUDA graphs do
    not (the text engine does: vLLM and transformers draw from different random streams)."""
    image = asdict(rollout.image)
    cot = asdict(rollout.cot)
    for k in ("max_batch", "cuda_graphs"):
        image.pop(k)
    for k in ("vllm_kv_cache_gib", "vllm_gpu_memory_utilization"):
        cot.pop(k)
    return {
        "policy": identity,
        "prompt": {k: str(v) for k, v in asdict(rollout.prompt).items()},
        "cot": {k: str(v) for k, v in cot.items()},
        "image": image,
        "seed": seed,
        "images_per_prompt": images_per_prompt,
    }


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def check_settings(folder: Path, settings: dict[str, Any]) -> None:
    """Record the settings in a new folder; refuse a folder whose images were drawn otherwise."""
    path = folder / SETTINGS
    if not path.is_file():
        atomic_write(path, json.dumps(settings, indent=1).encode())
        return
    old, new = _flat(json.loads(path.read_text())), _flat(settings)
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise GenerationMismatch(
            f"{folder} holds images drawn with other settings ({path}); this run would mix "
            f"them: {'; '.join(diffs)}. Use another eval.output_dir, or delete {folder} to "
            f"draw its images again."
        )


@dataclass
class GenerationResult:
    drawn: int  # images drawn by this call
    kept: int  # images already in the folder
    redrawn: list[str]  # files that were in the manifest but missing or corrupt


def _kept(folder: Path, jobs: list[ImageJob], rows: dict[str, dict]) -> tuple[set[str], list[str]]:
    """Files of ``jobs`` already done, and those the manifest lists but whose file is missing or corrupt."""
    done, bad = set(), []
    for job in jobs:
        row = rows.get(job.file)
        if row is None:
            continue
        path = folder / job.file
        try:
            data = path.read_bytes()
            decode_png(data)
            ok = sha1(data) == row.get("sha1")
        except (OSError, ValueError):
            ok = False
        (done.add if ok else bad.append)(job.file)
    return done, bad


def _row(job: ImageJob, sample, png: bytes, version: Optional[int]) -> dict[str, Any]:
    it = job.item
    return {
        "benchmark": it.benchmark,
        "category": it.category,
        "prompt": it.prompt,
        "prompt_index": it.prompt_index,
        "sample_index": it.sample_index,
        "file": job.file,
        "seed": job.seed,
        "cot": sample.cot_text,
        "policy_version": sample.policy_version if version is None else version,
        "sha1": sha1(png),
    }


@dataclass
class FolderState:
    """What a policy's folder holds of a plan, once its settings are checked."""

    folder: Path
    jobs: list[ImageJob]
    rows: dict[str, dict[str, Any]]  # manifest rows by file
    done: set[str]
    redrawn: list[str]  # listed in the manifest, but missing or corrupt

    @property
    def pending(self) -> list[ImageJob]:
        return [j for j in self.jobs if j.file not in self.done]


def open_folder(folder: Path, jobs: list[ImageJob], settings: dict[str, Any]) -> FolderState:
    """Check the folder's settings, write the layout's side files, drop what a kill left half-written, and find
    which images are done (no actor needed: a finished folder costs no model load)."""
    folder.mkdir(parents=True, exist_ok=True)
    check_settings(folder, settings)
    for rel, data in side_files(jobs).items():
        if not (folder / rel).is_file() or (folder / rel).read_bytes() != data:
            atomic_write(folder / rel, data)
    for parent in {(folder / j.file).parent for j in jobs}:
        for stale in parent.glob(".*.tmp*"):  # a write cut short by a kill
            stale.unlink()
    rows = {r["file"]: r for r in RecordsLog(folder / MANIFEST).read()}
    done, bad = _kept(folder, jobs, rows)
    if bad:
        log.warning(
            "%s: %d image(s) listed in the manifest are missing or corrupt and are drawn again: %s%s",
            folder,
            len(bad),
            ", ".join(bad[:5]),
            " ..." if len(bad) > 5 else "",
        )
    return FolderState(folder, jobs, rows, done, bad)


def draw(state: FolderState, actors: list, batch_size: int, version: Optional[int] = None) -> GenerationResult:
    """Draw the folder's pending images on ``actors`` (rollout actors: ``draw.remote``), one batch per actor at a
    time. ``version``: the policy version to record (default: the one each sample reports)."""
    import ray

    folder, rows = state.folder, state.rows
    manifest = RecordsLog(folder / MANIFEST)
    pending = state.pending
    queue = deque(pending[i : i + batch_size] for i in range(0, len(pending), batch_size))
    running: dict[Any, tuple[Any, list[ImageJob]]] = {}

    def submit(actor) -> None:
        batch = queue.popleft()
        prompts = [PromptRecord(prompt=j.item.prompt, index=j.item.prompt_index) for j in batch]
        running[actor.draw.remote(prompts, [j.seed for j in batch])] = (actor, batch)

    for actor in actors[: len(queue)]:
        submit(actor)
    drawn = 0
    while running:
        (ready,), _ = ray.wait(list(running), num_returns=1)
        actor, batch = running.pop(ready)
        new_rows = []
        for job, sample in zip(batch, ray.get(ready)):
            png = encode_png(sample.image)
            atomic_write(folder / job.file, png)
            new_rows.append(_row(job, sample, png, version))
        manifest.append(new_rows)  # after the files: a row always names a complete image
        rows.update((r["file"], r) for r in new_rows)
        drawn += len(batch)
        log.info("%s: %d/%d images drawn", folder.name, drawn, len(pending))
        if queue:
            submit(actor)
    planned = [j.file for j in state.jobs]
    # images of an earlier, larger plan: kept (not redrawn, not scored now)
    extra = [f for f in rows if f not in set(planned) and (folder / f).is_file()]
    manifest.rewrite([rows[f] for f in planned + extra])
    return GenerationResult(drawn=drawn, kept=len(state.done), redrawn=state.redrawn)


def generate(
    folder: Path,
    jobs: list[ImageJob],
    actors: list,
    batch_size: int,
    settings: dict[str, Any],
    version: Optional[int] = None,
) -> GenerationResult:
    """:func:`open_folder` then :func:`draw`, for callers that hold their actors already (training)."""
    return draw(open_folder(folder, jobs, settings), actors, batch_size, version)


def read_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    return {r["file"]: r for r in RecordsLog(folder / MANIFEST).read()}
