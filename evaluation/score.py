"""Stage 2, scoring: every generated image through the evaluator passes its category's metric needs, one evaluator
model at a time, each on its own Ray actor (``eval.scorer``: CPU/GPU share, images per call), all policies' images
in one pass (the model loads once).

Per-image results go to ``{policy folder}/scores/{pass}.jsonl`` (file, sha1 of the scored PNG, score, details:
questions and answers, detections, the judge's answer ...), appended batch by batch, so a killed run keeps what it
scored; an image counts as scored when a row names its file and current sha1, so an image drawn again is scored
again and nothing else is. ``scores/{pass}.json`` records the evaluator's name, fidelity tag and the reason.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from core.images import decode_png
from evaluation.base import EvalItem
from evaluation.config import EvalConfig
from evaluation.generate import read_manifest, sha1
from evaluation.metrics import CategoryMetric
from evaluation.passes import PASSES
from evaluation.plan import ImageJob
from evaluation.ray_session import connect
from evaluation.records_log import RecordsLog, atomic_write

log = logging.getLogger(__name__)

SCORES = "scores"
IN_FLIGHT = 2  # batches queued at the actor, so that it never waits for the driver to read images


class ScoringError(RuntimeError):
    """Images that cannot be scored as they are (not generated, changed since), or an evaluator that failed."""


class EvaluatorActor:
    """Body of the Ray actor hosting one evaluator pass."""

    def __init__(self, pass_name: str, cfg: EvalConfig, device: str):
        self.evaluator = PASSES[pass_name].build(cfg, device, cfg.scorer.batch_size)

    def describe(self) -> dict[str, str]:
        e = self.evaluator
        return {"name": e.name, "fidelity": str(e.fidelity), "note": e.fidelity_note}

    def score(self, pngs: list[bytes], items: list[EvalItem]) -> list[tuple[float, dict[str, Any]]]:
        return [(float(r.score), r.details) for r in self.evaluator.score([decode_png(b) for b in pngs], items)]


@dataclass
class Target:
    """One policy's folder and the planned images in it."""

    folder: Path
    jobs: list[ImageJob]


def scores_log(folder: Path, pass_name: str) -> RecordsLog:
    return RecordsLog(folder / SCORES / f"{pass_name}.jsonl")


def read_scores(folder: Path, pass_name: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(file, sha1) -> result row of a pass (the last row wins)."""
    return {(r["file"], r["sha1"]): r for r in scores_log(folder, pass_name).read()}


def read_meta(folder: Path, pass_name: str) -> dict[str, str] | None:
    path = folder / SCORES / f"{pass_name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pending(
    targets: list[Target], metric_of: Callable[[EvalItem], CategoryMetric]
) -> dict[str, list[tuple[Target, ImageJob, str]]]:
    """Per pass, in a fixed order: the (target, job, sha1) still to score. Raises ScoringError for a planned image
    that was never generated."""
    work: dict[str, list[tuple[Target, ImageJob, str]]] = {}
    for t in targets:
        manifest = read_manifest(t.folder)
        missing = [j.file for j in t.jobs if j.file not in manifest]
        if missing:
            raise ScoringError(
                f"{t.folder}: {len(missing)} planned image(s) were not generated (e.g. {missing[0]}); "
                "run the generate stage first (eval.stages includes generate)"
            )
        done = {}
        for job in t.jobs:
            for p in metric_of(job.item).passes(job.item):
                if p not in done:
                    done[p] = read_scores(t.folder, p)
                sha = manifest[job.file]["sha1"]
                if (job.file, sha) not in done[p]:
                    work.setdefault(p, []).append((t, job, sha))
    return {p: work[p] for p in PASSES if p in work}


def _read_png(t: Target, job: ImageJob, sha: str) -> bytes:
    data = (t.folder / job.file).read_bytes()
    if sha1(data) != sha:
        raise ScoringError(
            f"{t.folder / job.file} changed since it was generated (its sha1 is not the manifest's); "
            "run the generate stage to draw it again"
        )
    return data


def run_pass(pass_name: str, work: list[tuple[Target, ImageJob, str]], cfg: EvalConfig) -> None:
    """Score ``work`` with one evaluator on its own actor, ``cfg.scorer.batch_size`` images per call."""
    import ray

    connect(cfg.ray_address)
    device = "cuda" if cfg.scorer.num_gpus > 0 else "cpu"
    actor = (
        ray.remote(EvaluatorActor)
        .options(num_cpus=cfg.scorer.num_cpus, num_gpus=cfg.scorer.num_gpus)
        .remote(pass_name, cfg, device)
    )
    try:
        try:
            meta = ray.get(actor.describe.remote())
        except ray.exceptions.RayActorError as e:
            raise ScoringError(f"evaluator {pass_name!r} failed to load: {e}") from None
        for folder in {t.folder for t, _, _ in work}:
            atomic_write(folder / SCORES / f"{pass_name}.json", json.dumps(meta, indent=1).encode())
        size = cfg.scorer.batch_size
        queue = deque(work[i : i + size] for i in range(0, len(work), size))
        running: deque = deque()
        done = 0
        while queue or running:
            while queue and len(running) < IN_FLIGHT:
                batch = queue.popleft()
                pngs = [_read_png(t, job, sha) for t, job, sha in batch]
                running.append((actor.score.remote(pngs, [job.item for _, job, _ in batch]), batch))
            future, batch = running.popleft()
            results = ray.get(future)
            by_folder: dict[Path, list[dict[str, Any]]] = {}
            for (t, job, sha), (score, details) in zip(batch, results):
                by_folder.setdefault(t.folder, []).append(
                    {"file": job.file, "sha1": sha, "score": score, "details": details}
                )
            for folder, rows in by_folder.items():
                scores_log(folder, pass_name).append(rows)
            done += len(batch)
            log.info("%s: %d/%d images scored", pass_name, done, len(work))
    finally:
        ray.kill(actor)


def score(targets: list[Target], metric_of: Callable[[EvalItem], CategoryMetric], cfg: EvalConfig) -> dict[str, int]:
    """Every pass with work left, one after the other; returns the images scored per pass."""
    counts = {}
    for pass_name, work in pending(targets, metric_of).items():
        log.info("scoring %d image(s) with %s", len(work), pass_name)
        run_pass(pass_name, work, cfg)
        counts[pass_name] = len(work)
    return counts


@dataclass
class Scored:
    """One planned image of a policy and its score (None until every pass it needs has scored it)."""

    job: ImageJob
    cot: str
    score: Optional[float]


def scored_images(folder: Path, jobs: list[ImageJob], metric_of: Callable[[EvalItem], CategoryMetric]) -> list[Scored]:
    manifest = read_manifest(folder)
    cache: dict[str, dict] = {}
    out = []
    for job in jobs:
        row = manifest.get(job.file)
        if row is None:
            out.append(Scored(job, "", None))
            continue
        metric = metric_of(job.item)
        parts = {}
        for p in metric.passes(job.item):
            if p not in cache:
                cache[p] = read_scores(folder, p)
            result = cache[p].get((job.file, row["sha1"]))
            if result is not None:
                parts[p] = float(result["score"])
        complete = len(parts) == len(metric.passes(job.item))
        out.append(Scored(job, row["cot"], metric.combine(job.item, parts) if complete else None))
    return out
