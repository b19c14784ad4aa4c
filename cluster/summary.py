"""The block `python -m cluster.run` prints at the end of a run: did it learn, how fast, where everything is, what
to run next (resume, evaluate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cluster.config import Config
from cluster.output_writer import PLOT_FILE
from cluster.outputs import RunOutputs
from cluster.plots import scorer_names


@dataclass
class RewardChange:
    first: float  # mean over the first quarter of the steps
    last: float  # mean over the last quarter

    @property
    def ratio(self) -> float:
        return self.last / self.first if self.first else float("nan")


@dataclass
class RunSummary:
    steps: int  # metrics rows
    quarter: int  # steps in a quarter (at least 1)
    reward: RewardChange  # the combined reward
    per_scorer: dict[str, RewardChange]
    images: int
    images_per_s: float  # every image over every step's seconds (start-up and output writing not counted)


def summarize(rows: list[dict[str, Any]]) -> RunSummary:
    """From a run's metrics rows (sorted by step). Raises ValueError on no rows."""
    if not rows:
        raise ValueError("no metrics rows: the run finished no step")
    q = max(1, len(rows) // 4)

    def change(key: str) -> RewardChange:
        first = [r[key] for r in rows[:q] if r.get(key) is not None]
        last = [r[key] for r in rows[-q:] if r.get(key) is not None]
        mean = lambda v: sum(v) / len(v) if v else float("nan")
        return RewardChange(mean(first), mean(last))

    images = sum(int(r["images"]) for r in rows)
    seconds = sum(float(r["step_s"]) for r in rows)
    return RunSummary(
        steps=len(rows),
        quarter=q,
        reward=change("reward_mean"),
        per_scorer={name: change(f"reward_{name}_mean") for name in scorer_names(rows)},
        images=images,
        images_per_s=images / seconds if seconds else float("nan"),
    )


def _line(label: str, c: RewardChange) -> str:
    return f"  {label:<10} {c.first:.4f} -> {c.last:.4f}  ({c.last - c.first:+.4f}, x{c.ratio:.2f})"


def summary_text(s: RunSummary, paths: dict[str, Any], resume: str, evaluate: str) -> str:
    """The printed block. ``paths``: what -> where, in print order; ``resume``/``evaluate``: commands."""
    lines = [
        f"summary: {s.steps} steps, {s.images} images, {s.images_per_s:.2f} images/s",
        f"reward, mean of the first {s.quarter} steps -> mean of the last {s.quarter}:",
        _line("total", s.reward),
    ]
    lines += [_line(name, c) for name, c in s.per_scorer.items()]
    width = max(len(k) for k in paths)
    lines.append("outputs:")
    lines += [f"  {what:<{width}}  {where}" for what, where in paths.items()]
    lines += [f"resume:   {resume}", f"evaluate: {evaluate}"]
    return "\n".join(lines)


def end_of_run(cfg: Config, out: RunOutputs) -> str:
    """The summary block of a finished run, from its metrics rows and its config."""
    root = out.root
    hf = out.checkpoints / "hf"
    paths = {"metrics": out.metrics_path, "plot": root / PLOT_FILE, "rollouts": out.rollouts, "image grids": out.images}
    if cfg.logging.tensorboard:
        paths["tensorboard"] = f"{root / 'tensorboard'}  (tensorboard --logdir {root / 'tensorboard'})"
    paths.update({"checkpoints": out.checkpoints, "policy (HF)": hf, "logs": out.logs, "config": root / "config.yaml"})
    return summary_text(
        summarize(out.metric_rows()),
        paths,
        resume=f"python -m cluster.run output_dir={root} resume=true",
        # the trained policy beside the initial one, the model's shape read from the run's config
        evaluate=f"python -m evaluation.run --config {root / 'config.yaml'} 'eval.policies=[model,{root}]'",
    )
