"""``metrics.png``: a run's metrics rows at a glance, refreshed every ``logging.plot_every`` steps.

Six panels over the steps: the reward (total and per scorer; each step's value faint, a trailing mean over
``smooth_window`` steps solid), the KL to the reference policy (and per level), the loss, the seconds per stage,
the images per second and the policy-version lag. Drawn with matplotlib's object API on the Agg canvas (no pyplot
state), so the background writer thread can draw while the loop runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PANELS = ("reward", "KL", "loss", "seconds per stage", "images / s", "policy-version lag")
STAGES = ("rollout_s", "reward_s", "learner_s", "rollout_wait_s", "sync_s", "step_s")
SCORER_MEAN = re.compile(r"^reward_(\w+?)_mean$")


def smooth_window(n: int) -> int:
    """Steps in the trailing mean: a tenth of the run, at least 3."""
    return max(3, n // 10)


def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """out[i] = mean of values[max(0, i - window + 1) .. i] (NaNs, e.g. steps without the column, skipped)."""
    out = np.full(len(values), np.nan)
    for i in range(len(values)):
        part = values[max(0, i - window + 1) : i + 1]
        part = part[np.isfinite(part)]
        if len(part):
            out[i] = part.mean()
    return out


def column(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    """A metrics column as floats; NaN where a row lacks it."""
    return np.array([float(r[key]) if r.get(key) is not None else np.nan for r in rows])


def scorer_names(rows: list[dict[str, Any]]) -> list[str]:
    """The reward scorers whose mean is in the rows (``reward_<name>_mean``), in first-seen order."""
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            m = SCORER_MEAN.match(k)
            if m:
                names[m.group(1)] = None
    return list(names)


def metrics_figure(rows: list[dict[str, Any]], window: Optional[int] = None) -> Figure:
    """The figure of :data:`PANELS` for ``rows`` (metrics rows, sorted by step)."""
    window = window or smooth_window(len(rows))
    steps = column(rows, "step")
    fig = Figure(figsize=(15, 8), dpi=80, layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for ax, title in zip(axes, PANELS):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)

    def draw(ax, key: str, label: str, smoothed: bool, **style) -> None:
        values = column(rows, key)
        if not np.isfinite(values).any():
            return
        if smoothed:
            (line,) = ax.plot(steps, values, alpha=0.3, linewidth=1, color=style.get("color"))
            ax.plot(
                steps,
                trailing_mean(values, window),
                linewidth=2,
                label=f"{label} (mean of {window})",
                **{"color": line.get_color(), **style},
            )
        else:
            ax.plot(steps, values, label=label)

    reward, kl, loss, stages, speed, lag = axes
    for name in scorer_names(rows):
        draw(reward, f"reward_{name}_mean", name, smoothed=True)
    # the total last, dashed and black: with one scorer it equals that scorer's line
    draw(reward, "reward_mean", "total", smoothed=True, color="black", linestyle="--")
    draw(kl, "kl", "kl", smoothed=True)
    for level in ("semantic", "token"):
        draw(kl, f"{level}/kl", level, smoothed=False)
    draw(loss, "loss", "loss", smoothed=True)
    for key in STAGES:
        draw(stages, key, key[:-2], smoothed=False)
    draw(speed, "images_per_s", "images/s", smoothed=True)
    draw(lag, "version_lag_mean", "mean", smoothed=False)
    draw(lag, "version_lag_max", "max", smoothed=False)
    for ax in axes:
        if ax.get_lines():
            ax.legend(fontsize="small")
    return fig


def write_metrics_plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Draw :func:`metrics_figure` to ``path`` (PNG), replacing it whole (a viewer never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    metrics_figure(rows).savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
