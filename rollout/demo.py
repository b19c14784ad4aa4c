"""Rollout demo: one batch of prompts through a rollout worker, once per text engine, as captioned image grids.

    python -m rollout.demo [--config FILE] [key=value ...] [--out DIR] [--engines vllm,transformers] [--prompts N]

The config is the run's (a preset, a YAML file, a run's config.yaml), of which the demo reads ``seed``,
``output_dir``, ``model.*``, ``rollout.*`` and ``data.*``; ``key=value`` overrides those.

Each engine run writes ``grid_<engine>.png`` (one row per prompt, one column per sample of its group, captioned
with the prompt and the CoT) and ``rollouts_<engine>.jsonl`` (the full CoT texts and timings) to the output
directory (default: ``{output_dir}/rollout_demo``). Without a CoT (``rollout.prompt.use_cot=false``) there is
no text engine and a single ``grid_no_cot.png``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from core.config import ConfigError, load_config
from core.images import caption_grid
from core.prompt_file import DataConfig, DataError, load_prompts
from core.records import RolloutGroup
from policy.config import ModelConfig
from rollout.config import RolloutConfig, TextEngineName
from rollout.worker import RolloutWorker

ENGINES = tuple(e.value for e in TextEngineName)
DEFAULT_PROMPTS = 4


@dataclass
class DemoConfig:
    """The sections of the run's config the demo reads (the others in a file are ignored)."""

    seed: int = 0
    output_dir: str = "outputs/run"
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    data: DataConfig = field(default_factory=DataConfig)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rollout.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=None, help="preset name (tiny, janus-pro-1b, ...) or YAML file")
    ap.add_argument("--out", default=None, help="output directory (default: {output_dir}/rollout_demo)")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated text engines to run")
    ap.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS, help=f"number of prompts (default {DEFAULT_PROMPTS})")
    ap.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = ap.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in args.engines if e not in ENGINES]
    if unknown or not args.engines:
        ap.error(f"--engines: expected a comma-separated subset of {', '.join(ENGINES)}; got {args.engines}")
    return args


def write_outputs(groups: list[RolloutGroup], out: Path, label: str, columns: int) -> Path:
    images = [s.image for g in groups for s in g.samples]
    captions = [f"{g.prompt.prompt} || CoT: {s.cot_text}" if s.cot_ids else g.prompt.prompt
                for g in groups for s in g.samples]
    grid = out / f"grid_{label}.png"
    caption_grid(images, captions, columns=columns).save(grid)
    with open(out / f"rollouts_{label}.jsonl", "w", encoding="utf-8") as f:
        for g in groups:
            for s in g.samples:
                f.write(json.dumps({"prompt": g.prompt.prompt, "group_index": s.group_index, "cot_text": s.cot_text,
                                    "policy_version": s.policy_version, "timings": s.timings}) + "\n")
    return grid


def run(cfg: DemoConfig, engines: list[str], out: Path, n_prompts: int) -> list[Path]:
    prompts = load_prompts(cfg.data.path, cfg.data.on_malformed).records[:n_prompts]
    out.mkdir(parents=True, exist_ok=True)
    runs = engines if cfg.rollout.prompt.use_cot else ["no_cot"]
    written = []
    for engine in runs:
        run_cfg = copy.deepcopy(cfg)
        if engine != "no_cot":
            run_cfg.rollout.cot.engine = TextEngineName(engine)
        worker = RolloutWorker(run_cfg.model, run_cfg.rollout)
        try:
            groups = worker.rollout(prompts, seed=cfg.seed)
        finally:
            worker.close()  # one vLLM engine per process: close before the next run starts one
        label = worker.text_engine.name if worker.text_engine is not None else "no_cot"
        grid = write_outputs(groups, out, label, columns=cfg.rollout.group_size)
        t = groups[0].samples[0].timings
        note = "" if label in (engine, "no_cot") else f" (asked for {engine}; it could not load, see the warning)"
        print(f"wrote {grid}: {len(prompts)} prompts x {cfg.rollout.group_size} samples, text engine {label}{note}; "
              f"seconds: CoT {t['cot']:.2f}, image tokens {t['image']:.2f}, VQ decode {t['decode']:.2f}", flush=True)
        written.append(grid)
    return written


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(DemoConfig, args.config, args.overrides, partial=True)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(cfg.output_dir) / "rollout_demo"
    try:
        run(cfg, args.engines, out.expanduser(), args.prompts)
    except DataError as e:
        print(f"data error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
