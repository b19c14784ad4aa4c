"""Helpers every scorer shares: splitting a group into model batches, and checking a local weights directory
before loading it."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Optional, TypeVar

import numpy as np
import torch
from PIL import Image

T = TypeVar("T")


class ModelDirError(FileNotFoundError):
    """A scorer's weights directory is missing or incomplete. The message names the directory, the files
    expected in it and how to obtain them."""


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (the model batch of a scorer)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def model_dir(path: Optional[str], scorer: str, expected: Sequence[Sequence[str]], how_to_get: str) -> Path:
    """Resolve and check ``rewards.<scorer>.path``.

    ``expected`` lists file requirements; each is a tuple of glob alternatives of which one must be present
    (e.g. ``("model.safetensors", "pytorch_model*.bin", "model-*.safetensors")``). Raises ModelDirError naming
    the directory, what is missing and ``how_to_get``.
    """
    key = f"rewards.{scorer}.path"
    wanted = "; ".join(" or ".join(alts) for alts in expected)
    if not path:
        raise ModelDirError(
            f"{key} is not set: scorer {scorer!r} loads its weights from a local directory "
            f"holding {wanted}. {how_to_get}"
        )
    p = Path(os.path.expanduser(path))
    if not p.is_dir():
        raise ModelDirError(f"{key}: directory {str(p)!r} does not exist; it should hold {wanted}. {how_to_get}")
    names = [f.name for f in p.iterdir()]
    missing = [" or ".join(alts) for alts in expected if not any(fnmatch.filter(names, pattern) for pattern in alts)]
    if missing:
        raise ModelDirError(f"{key}: directory {str(p)!r} is incomplete, missing {'; '.join(missing)}. {how_to_get}")
    return p


# File requirements shared by the transformers-based scorers (alternatives: one of them must be present).
WEIGHT_FILES = ("model.safetensors", "model-*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model")
# Image-processor settings: preprocessor_config.json (hub checkpoints, older transformers) or the nested
# processor_config.json that transformers 5 writes when a whole processor is saved.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def scorer_device(cfg) -> str:
    """CUDA when the scorer was given a GPU share and one is visible, else the CPU."""
    return "cuda" if cfg.num_gpus > 0 and torch.cuda.is_available() else "cpu"


def to_pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image, "RGB")
