"""T2I-CompBench non-spatial (and the complex action part): CLIPScore, CLIPScore_eval/CLIP_similarity.py, on
transformers' ``CLIPModel`` (openai/clip-vit-base-patch32 holds the weights of the original's ``clip`` ViT-B/32).

Score = cosine of the L2-normalised image and text features (no x100, no clamp). In complex mode the text is the
prompt with spaCy's ADJ tokens removed (prompt_rules.without_adjectives). Images go through OpenAI CLIP's
preprocess (preprocess.clip_pixels), each distinct text through the text tower once per batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, CLIPModel

from evaluation.base import EvalItem, Evaluator, Fidelity, ImageResult
from evaluation.compbench import spacy_parse
from evaluation.compbench.inputs import check_batch, chunks
from evaluation.compbench.preprocess import clip_pixels
from evaluation.compbench.prompt_rules import without_adjectives
from evaluation.models import CLIP_B32


class ClipScoreEvaluator(Evaluator):
    fidelity = Fidelity.exact

    def __init__(
        self,
        model: CLIPModel,
        tokenizer,
        complex_text: bool = False,
        batch_size: int = 32,
        parse: Callable[[str], spacy_parse.ParsedPrompt] = spacy_parse.parse,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.complex_text = complex_text
        self.batch_size = batch_size
        self.parse = parse
        self.device = next(model.parameters()).device
        self.image_size = int(model.config.vision_config.image_size)
        self.max_text_len = int(model.config.text_config.max_position_embeddings)
        self.name = "clipscore_complex" if complex_text else "clipscore"
        self.fidelity_note = (
            "same weights and preprocessing as the original; it runs CLIP in fp16 on GPU, this in the loaded "
            "model's dtype (fp32 by default), a difference of about 1e-3 in the cosine; prompts longer than 77 "
            "tokens are truncated where the original raises"
            + ("; adjectives from spaCy 3.8 (the original pins 3.5)" if complex_text else "")
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike | None, complex_text: bool = False, device: str = "cpu", batch_size: int = 32
    ) -> ClipScoreEvaluator:
        """From a local copy of openai/clip-vit-base-patch32."""
        p = CLIP_B32.require(path)
        if complex_text:
            spacy_parse.load_spacy()
        model = CLIPModel.from_pretrained(p, local_files_only=True).to(device)
        return cls(model, AutoTokenizer.from_pretrained(p, local_files_only=True), complex_text, batch_size)

    def text(self, prompt: str) -> str:
        return without_adjectives(self.parse(prompt).tokens) if self.complex_text else prompt

    @torch.no_grad()
    def image_features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        pixels = clip_pixels(images, self.image_size).to(self.device, self.model.dtype)
        feats = self.model.get_image_features(pixel_values=pixels).pooler_output
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_text_len, return_tensors="pt"
        ).to(self.device)
        feats = self.model.get_text_features(input_ids=tok.input_ids, attention_mask=tok.attention_mask).pooler_output
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        check_batch(images, items)
        texts = [self.text(it.prompt) for it in items]
        results = []
        for s in chunks(len(images), self.batch_size):
            distinct = list(dict.fromkeys(texts[s]))
            text_feats = self.text_features(distinct)
            rows = torch.tensor([distinct.index(t) for t in texts[s]], device=text_feats.device)
            cos = (self.image_features(images[s]) * text_feats[rows]).sum(-1)
            results += [ImageResult(float(c), {"text": t}) for c, t in zip(cos.tolist(), texts[s])]
        return results
