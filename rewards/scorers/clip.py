"""CLIPScore (T2I-CompBench's non-spatial metric): cosine of the normalised CLIP image and text features.

Loads a transformers ``CLIPModel`` from a local HF-format directory (e.g. ``openai/clip-vit-base-patch32``,
which T2I-CompBench uses). HPS v2.1 is the same computation on a fine-tuned ViT-H-14 (rewards/scorers/hps.py).
The prompt is encoded once per group; images go through the vision tower ``batch_size`` at a time. Their pixel
values (rewards/scorers/pixel_values.py: the image processor's, bit for bit) are the scorer's per-image
``prepare_image`` step, which a server runs off its model thread.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import CLIPImageProcessorPil, CLIPModel

from core.records import PromptRecord
from rewards.base import ImageScore, PreparedScorer, check_image
from rewards.scorers.common import batches
from rewards.scorers.pixel_values import PixelValues
from rewards.scorers.pretrained import PretrainedScorer

CLIP_HOW_TO_GET = (
    "Download an HF-format CLIP on a machine with network access, e.g. `huggingface-cli download "
    "openai/clip-vit-base-patch32 --local-dir /models/clip-vit-base-patch32`, copy it here and set "
    "rewards.clip.path to it."
)


class CLIPScorer(PretrainedScorer, PreparedScorer):
    name = "clip"
    version = "1"
    model_class = CLIPModel
    processor_class = CLIPImageProcessorPil
    how_to_get = CLIP_HOW_TO_GET

    def __init__(self, model: CLIPModel, tokenizer, image_processor, batch_size: int = 8):
        super().__init__(model, tokenizer, image_processor, batch_size)
        self.max_text_len = int(model.config.text_config.max_position_embeddings)
        self.pixel_values = PixelValues(image_processor)

    @torch.no_grad()
    def text_features(self, text: str) -> torch.Tensor:
        tok = self.tokenizer([text], padding=True, truncation=True, max_length=self.max_text_len, return_tensors="pt")
        out = self.model.get_text_features(
            input_ids=tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device)
        )
        return torch.nn.functional.normalize(out.pooler_output.float(), dim=-1)[0]

    @torch.no_grad()
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        feats = []
        for chunk in batches(pixel_values, self.batch_size):
            out = self.model.get_image_features(pixel_values=chunk.to(self.device, self.model.dtype))
            feats.append(torch.nn.functional.normalize(out.pooler_output.float(), dim=-1))
        return torch.cat(feats)

    def prepare_image(self, prompt: PromptRecord, image: np.ndarray) -> np.ndarray:
        """The image's pixel values, [3, h, w]."""
        check_image(image)
        return self.pixel_values.image(image)

    def score_prepared(self, prompt: PromptRecord, prepared: list[np.ndarray]) -> list[ImageScore]:
        cos = self.image_features(torch.from_numpy(np.stack(prepared))) @ self.text_features(prompt.prompt)
        return [ImageScore(float(c)) for c in cos.cpu()]
