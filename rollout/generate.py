"""Draw images from a policy for prompts given on the command line or in a file:

    python -m rollout.generate [--config FILE] [--checkpoint DIR] [--prompt TEXT ...] [--prompts-file FILE]
                               [--images N] [--seed S] [--out DIR] [key=value ...]

The policy is ``--checkpoint`` (a training run's output_dir, whose trained policy `python -m cluster.run` exports
to ``checkpoints/hf/``, that export itself, or any HF-format Janus directory) or else ``model.path`` (default: the
tiny random Janus). Each image gets its own semantic CoT first, as T2I-R1 draws (``rollout.prompt.use_cot=false``
draws from the prompt alone, the Janus-Pro baseline); sampling settings are ``rollout.cot.*`` and
``rollout.image.*``. The config is the run's (a preset, a YAML file, a run's ``config.yaml``), of which this reads
``seed``, ``output_dir``, ``model.*`` and ``rollout.*``.

Image k of every prompt is drawn with seed S + k (S: ``--seed``, default the config's ``seed``), on its own random
stream: ``--seed S+k --images 1`` redraws exactly that image, whatever else was drawn with it.

Writes to ``--out`` (default ``{output_dir}/generate``): ``images/{prompt:04d}_{k:02d}.png``, ``generations.jsonl``
(one row per image: prompt, file, seed, CoT text, policy) and ``grid.png`` (one row per prompt, one column per
image, each captioned with its prompt and CoT).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from core.config import ConfigError, load_config
from core.images import caption_grid, encode_png
from core.prompt_file import DataError, load_prompts
from core.records import PromptRecord, RolloutSample
from policy.config import ModelConfig, find_model_dir
from rollout.config import RolloutConfig
from rollout.worker import RolloutWorker

DEFAULT_IMAGES = 4
DEFAULT_BATCH = 16


@dataclass
class GenerateConfig:
    """The sections of the run's config this command reads (the others in a file are ignored)."""

    seed: int = 0
    output_dir: str = "outputs/run"
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m rollout.generate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m rollout.generate --checkpoint outputs/run "
        "--prompt 'a red apple on a blue plate' --images 4 --seed 1",
    )
    ap.add_argument("--config", default=None, help="preset name (tiny, janus-pro-1b, ...) or YAML file")
    ap.add_argument(
        "--checkpoint",
        default=None,
        help="policy: a run's output_dir, its checkpoints/hf, or any HF-format Janus directory (default: model.path)",
    )
    ap.add_argument("--prompt", action="append", default=[], help="a prompt (repeat for several)")
    ap.add_argument(
        "--prompts-file",
        default=None,
        help="more prompts: a .txt file (one per line) or JSON lines / Parquet in T2I-R1's format",
    )
    ap.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"images per prompt (default {DEFAULT_IMAGES})")
    ap.add_argument("--seed", type=int, default=None, help="seed of each prompt's first image (default: seed)")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="images per rollout call")
    ap.add_argument("--out", default=None, help="output directory (default: {output_dir}/generate)")
    ap.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = ap.parse_intermixed_args(argv)
    if args.images < 1 or args.batch < 1:
        ap.error("--images and --batch must be >= 1")
    if not args.prompt and not args.prompts_file:
        ap.error("no prompts: give --prompt TEXT (repeatable) and/or --prompts-file FILE")
    return args


def read_prompts(texts: list[str], path: Optional[str]) -> list[PromptRecord]:
    """The command line's prompts, then the file's: a .txt file has one prompt per line, anything else is a
    prompt file in T2I-R1's format (core.prompt_file)."""
    prompts = [t.strip() for t in texts if t.strip()]
    records = [PromptRecord(prompt=t) for t in prompts]
    if path is not None:
        p = Path(path).expanduser()
        if p.suffix == ".txt":
            if not p.is_file():
                raise DataError(f"prompt file {str(p)!r} does not exist")
            records += [
                PromptRecord(prompt=line.strip()) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()
            ]
        else:
            records += load_prompts(str(p)).records
    if not records:
        raise DataError("no prompts: every given prompt is empty")
    return [dataclasses.replace(r, index=i) for i, r in enumerate(records)]


def requests(prompts: list[PromptRecord], images: int, seed: int) -> list[tuple[PromptRecord, int, int]]:
    """(prompt, k, seed) of every image: image k of a prompt is drawn with seed ``seed + k``."""
    return [(p, k, seed + k) for p in prompts for k in range(images)]


def draw_all(worker: RolloutWorker, todo: list[tuple[PromptRecord, int, int]], batch: int) -> list[RolloutSample]:
    """One sample per request, in order, ``batch`` requests per rollout call."""
    samples: list[RolloutSample] = []
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        samples += worker.draw([p for p, _, _ in chunk], [s for _, _, s in chunk])
    return samples


def write_outputs(
    todo: list[tuple[PromptRecord, int, int]], samples: list[RolloutSample], out: Path, policy: str, columns: int
) -> Path:
    """The images, ``generations.jsonl`` and ``grid.png``; returns the grid's path."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for (prompt, k, seed), s in zip(todo, samples):
        name = Path("images") / f"{prompt.index:04d}_{k:02d}.png"
        (out / name).write_bytes(encode_png(s.image))
        rows.append(
            {
                "prompt": prompt.prompt,
                "file": str(name),
                "seed": seed,
                "cot": s.cot_text,
                "policy": policy,
                "policy_version": s.policy_version,
            }
        )
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    captions = [f"{s.prompt.prompt} || CoT: {s.cot_text}" if s.cot_ids else s.prompt.prompt for s in samples]
    grid = out / "grid.png"
    caption_grid([s.image for s in samples], captions, columns=columns).save(grid)
    return grid


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(GenerateConfig, args.config, args.overrides, partial=True)
        if args.checkpoint is not None:
            cfg.model.path = str(find_model_dir(args.checkpoint))
        prompts = read_prompts(args.prompt, args.prompts_file)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    todo = requests(prompts, args.images, cfg.seed if args.seed is None else args.seed)
    out = (Path(args.out) if args.out else Path(cfg.output_dir) / "generate").expanduser()
    worker = RolloutWorker(cfg.model, cfg.rollout)
    try:
        samples = draw_all(worker, todo, args.batch)
        engine = worker.text_engine.name if worker.text_engine is not None else "none (no CoT)"
        policy = str(worker.policy.path)
    finally:
        worker.close()
    grid = write_outputs(todo, samples, out, policy, args.images)
    asked = cfg.rollout.cot.engine
    note = (
        f" (asked for {asked}; it could not load, see the warning)"
        if cfg.rollout.prompt.use_cot and engine != asked
        else ""
    )
    print(
        f"wrote {len(samples)} images of {len(prompts)} prompts to {out} (grid: {grid}, CoTs: "
        f"{out / 'generations.jsonl'}); policy {policy}, text engine {engine}{note}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
