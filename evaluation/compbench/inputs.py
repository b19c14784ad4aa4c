"""Checking what an evaluator is given and cutting it into model batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from evaluation.base import EvalItem


def check_batch(images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> None:
    """One item per image; every image a non-empty uint8 H x W x 3 RGB array."""
    if len(images) != len(items):
        raise ValueError(f"got {len(images)} images but {len(items)} items: one item per image")
    for i, im in enumerate(images):
        if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3 or 0 in im.shape:
            desc = f"{im.dtype} {im.shape}" if isinstance(im, np.ndarray) else type(im).__name__
            raise ValueError(f"image {i} ({items[i].prompt!r}): expected a uint8 H x W x 3 RGB array, got {desc}")


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` of range(n): one model forward each."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))
