"""Which images an evaluation draws: every selected prompt's images, each with its file in the benchmark's official
layout (so the official scripts could read the folder too) and its seed.

Layouts, under a policy's folder (EVAL.md sections 1-3):
- T2I-CompBench: ``t2i_compbench/{category}/samples/{prompt}_{k:06d}.png``, ``k`` a counter over the category in
  prompt order (prompt i owns ``k = n*i .. n*i + n-1`` for n images per prompt, as the generation script's
  ``base_count`` gives them and the 3-in-1 script assumes);
- GenEval: ``geneval/{index:05d}/metadata.jsonl`` (the prompt's record) and ``geneval/{index:05d}/samples/{s:05d}.png``,
  ``index`` the prompt's line in ``evaluation_metadata.jsonl``;
- WISE: ``wise/{prompt_id}.png``.

``max_prompts`` keeps the first N prompts of each category (file order; WISE: by prompt_id). Image s of a prompt is
drawn with seed ``seed + s`` on its own random stream (rollout.worker.RolloutWorker.draw), so a prompt's images
never depend on what else is drawn, and a killed run redraws exactly the missing ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from evaluation.base import EvalItem
from evaluation.catalog import COMPBENCH, GENEVAL, OFFICIAL_IMAGES_PER_PROMPT, WISE
from evaluation.compbench.files import COMPBENCH_REPO, read_lines
from evaluation.geneval.prompts import load_metadata
from evaluation.wise.checkout import load_prompts as load_wise_prompts
from evaluation.wise.variants import variant as wise_variant

MAX_NAME_BYTES = 240  # a file name, with its counter and suffix, must fit the usual 255-byte limit


class PlanError(ValueError):
    """A prompt cannot be laid out as its benchmark names files; the message says which and why."""


@dataclass(frozen=True)
class ImageJob:
    item: EvalItem
    file: str  # relative to the policy's folder
    seed: int


def images_per_prompt(benchmark: str, override: Optional[int]) -> int:
    return override or OFFICIAL_IMAGES_PER_PROMPT[benchmark]


def compbench_prompts(folder: Path, category: str) -> list[str]:
    """The prompts of ``{category}_val.txt``, read as the generation script reads them (text before a tab)."""
    lines = read_lines(
        folder / f"{category}_val.txt",
        f"T2I-CompBench {category} prompts",
        f"{COMPBENCH_REPO} examples/dataset/{category}_val.txt (MIT)",
    )
    prompts = [line.split("\t")[0].strip() for line in lines]
    for p in prompts:
        if "/" in p or "\0" in p or len(p.encode()) > MAX_NAME_BYTES:
            raise PlanError(
                f"T2I-CompBench {category} prompt {p!r} cannot be a file name ({{prompt}}_{{k:06d}}.png): "
                "it has a '/' or is too long"
            )
    return prompts


def _compbench_jobs(folder: Path, category: str, n: int, limit: Optional[int], seed: int) -> list[ImageJob]:
    jobs = []
    for i, prompt in enumerate(compbench_prompts(folder, category)[:limit]):
        for s in range(n):
            item = EvalItem(COMPBENCH, category, prompt, prompt_index=i, sample_index=s)
            jobs.append(ImageJob(item, f"{COMPBENCH}/{category}/samples/{prompt}_{n * i + s:06d}.png", seed + s))
    return jobs


def _geneval_jobs(folder: Path, tags: list[str], n: int, limit: Optional[int], seed: int) -> list[ImageJob]:
    rows = load_metadata(folder)
    jobs = []
    for tag in tags:
        indices = [i for i, row in enumerate(rows) if row["tag"] == tag][:limit]
        for index in indices:
            for s in range(n):
                item = EvalItem(
                    GENEVAL, tag, rows[index]["prompt"], prompt_index=index, sample_index=s, metadata=dict(rows[index])
                )
                jobs.append(ImageJob(item, f"{GENEVAL}/{index:05d}/samples/{s:05d}.png", seed + s))
    return jobs


def _wise_jobs(
    checkout: Optional[Path], categories: list[str], protocol: str, limit: Optional[int], seed: int
) -> list[ImageJob]:
    prompts = load_wise_prompts(checkout, wise_variant(protocol))
    jobs = []
    for category in categories:
        for p in [p for p in prompts if p.category == category][:limit]:
            item = EvalItem(WISE, category, p.prompt, prompt_index=p.prompt_id, sample_index=0, metadata=dict(p.record))
            jobs.append(ImageJob(item, f"{WISE}/{p.prompt_id}.png", seed))
    return jobs


def plan(
    selection: dict[str, list[str]],
    folders: dict[str, Optional[Path]],
    n_override: Optional[int],
    max_prompts: Optional[int],
    seed: int,
    wise_protocol: str = "verified",
) -> list[ImageJob]:
    """Every image of the selection, benchmark by benchmark, category by category, prompt by prompt."""
    jobs: list[ImageJob] = []
    for bench, categories in selection.items():
        n = images_per_prompt(bench, n_override)
        if bench == COMPBENCH:
            folder = folders[COMPBENCH]
            for category in categories:
                jobs += _compbench_jobs(folder, category, n, max_prompts, seed)
        elif bench == GENEVAL:
            jobs += _geneval_jobs(folders[GENEVAL], categories, n, max_prompts, seed)
        elif bench == WISE:
            if n != 1:
                raise PlanError(f"WISE scores one image per prompt ({{prompt_id}}.png); got {n} images per prompt")
            jobs += _wise_jobs(folders[WISE], categories, wise_protocol, max_prompts, seed)
    return jobs


def side_files(jobs: list[ImageJob]) -> dict[str, bytes]:
    """Files the layout needs besides the images: GenEval's ``{index:05d}/metadata.jsonl`` per prompt."""
    out = {}
    for job in jobs:
        if job.item.benchmark == GENEVAL:
            record = (json.dumps(job.item.metadata) + "\n").encode()
            out[f"{GENEVAL}/{job.item.prompt_index:05d}/metadata.jsonl"] = record
    return out
