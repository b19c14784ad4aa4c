"""What the scorers built on a transformers model share: a local HF-format directory, checked before anything
loads, holding the model, its tokenizer and its image processor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Optional

from transformers import AutoTokenizer

from rewards.base import Scorer
from rewards.config import ScorerConfig
from rewards.scorers.common import PROCESSOR_FILES, TOKENIZER_FILES, WEIGHT_FILES, model_dir, scorer_device

# What every such directory holds (alternatives: one of them must be present).
PRETRAINED_FILES = (("config.json",), PROCESSOR_FILES, TOKENIZER_FILES, WEIGHT_FILES)


class PretrainedScorer(Scorer):
    """A scorer around a transformers model, its tokenizer and its image processor, all from the directory
    ``rewards.<name>.path``. A subclass names its model and processor classes, the files and how to get them."""

    model_class: ClassVar[type]
    processor_class: ClassVar[type]
    files: ClassVar[tuple[tuple[str, ...], ...]] = PRETRAINED_FILES
    how_to_get: ClassVar[str]

    def __init__(self, model, tokenizer, image_processor, batch_size: int = 8):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.batch_size = batch_size
        self.device = next(model.parameters()).device

    @classmethod
    def model_path(cls, cfg: ScorerConfig) -> Path:
        """``cfg.path``, checked: raises rewards.scorers.common.ModelDirError naming what is missing."""
        return model_dir(cfg.path, cls.name, cls.files, cls.how_to_get)

    @classmethod
    def load_model(cls, path: Path, device: str):
        return cls.model_class.from_pretrained(path, local_files_only=True)

    @classmethod
    def load_parts(cls, path: Path, device: str = "cpu", model: Optional[Any] = None) -> tuple[Any, Any, Any]:
        """(model on ``device``, tokenizer, image processor) from ``path``; the model only unless given."""
        model = cls.load_model(path, device) if model is None else model
        return (
            model.to(device),
            AutoTokenizer.from_pretrained(path, local_files_only=True),
            cls.processor_class.from_pretrained(path, local_files_only=True),
        )

    @classmethod
    def load(cls, path: Path, batch_size: int = 8, device: str = "cpu", model: Optional[Any] = None):
        return cls(*cls.load_parts(path, device, model), batch_size)

    @classmethod
    def from_config(cls, cfg: ScorerConfig):
        return cls.load(cls.model_path(cfg), cfg.batch_size, scorer_device(cfg))
