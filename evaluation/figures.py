"""The report's pictures: a bar chart of a benchmark's categories (our policies beside the published rows) and a
captioned grid of sample images per category."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Optional

import numpy as np

from core.images import caption_grid
from evaluation.records_log import atomic_write


def bar_chart(
    path: Path, title: str, categories: list[str], series: dict[str, list[Optional[float]]], note: str = ""
) -> Path:
    """Grouped bars: one group per category, one bar per series (None: no value, no bar)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(categories) + 2), 4.2))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for i, (name, values) in enumerate(series.items()):
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, labels=["" if v is None else f"{v:.2f}" for v in values], fontsize=6, padding=1)
    ax.set_xticks(x, categories, rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout(rect=(0, 0.05 if note else 0, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write(path, buf.getvalue())
    return path


def sample_grid(path: Path, rows: list[list[tuple[np.ndarray, str]]]) -> Path:
    """One row per policy of (image, caption) pairs."""
    columns = max(len(r) for r in rows)
    images, captions = [], []
    for r in rows:
        for k in range(columns):
            image, caption = r[k] if k < len(r) else (np.full_like(r[0][0], 255), "")
            images.append(image)
            captions.append(caption)
    buf = io.BytesIO()
    caption_grid(images, captions, columns=columns).save(buf, format="PNG")
    atomic_write(path, buf.getvalue())
    return path
