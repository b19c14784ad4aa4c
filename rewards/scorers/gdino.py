"""GroundingDINO reward (T2I-R1): open-vocabulary detection of the prompt's nouns, scored by the object /
spatial / numeracy rules of rewards/detection_rules.py.

The detector is transformers' ``GroundingDinoForObjectDetection`` loaded from a local HF-format directory
(IDEA-Research/grounding-dino-tiny is the HF port of T2I-R1's Swin-T OGC checkpoint). As in T2I-R1, the text is
``"noun1 . noun2 ."``-style (``" . ".join(phrases) + "."``) and a query's score for a phrase is the mean of its
per-token probabilities over the phrase's tokens (a normalised positive map); a query is a box of the phrase
when that score is above ``box_threshold``. T2I-R1 averages over the tokens of the phrase's first and last
words only (``make_detection_prompt`` gives those two character spans), which ``rewards.t2i_r1_compat``
reproduces; by default every token of the phrase counts ("big red apple": big, red and apple). All images of a
group share one caption and go through the model ``batch_size`` at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from transformers import GroundingDinoForObjectDetection, GroundingDinoImageProcessorPil

from core.records import PromptRecord
from rewards.base import ImageScore, ScorerInputError, check_images
from rewards.config import GdinoScorerConfig
from rewards.detection_rules import PhraseBoxes, RuleParams, detection_score, detector_phrases
from rewards.scorers.common import batches, scorer_device, to_pil
from rewards.scorers.pretrained import PretrainedScorer

GDINO_HOW_TO_GET = (
    "Download the HF port of GroundingDINO Swin-T on a machine with network access, e.g. `huggingface-cli "
    "download IDEA-Research/grounding-dino-tiny --local-dir /models/grounding-dino-tiny`, copy it here and set "
    "rewards.gdino.path to it."
)


def caption_and_spans(phrases: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """T2I-R1's detector caption and each phrase's character span in it."""
    spans, pos = [], 0
    for p in phrases:
        spans.append((pos, pos + len(p)))
        pos += len(p) + 3  # " . "
    return " . ".join(phrases) + ".", spans


def first_and_last_word_spans(phrase: str, start: int) -> list[tuple[int, int]]:
    """T2I-R1's character spans of a phrase that starts at ``start`` in the caption: its first word, and its last
    word when it has more than one (grpo.py ``make_detection_prompt``, same arithmetic)."""
    words = phrase.strip().split(" ")
    first = (start, start + len(words[0]))
    if len(words) == 1:
        return [first]
    return [first, (start + len(phrase) - len(words[-1]), start + len(phrase))]


def phrase_token_mask(offsets: torch.Tensor, spans: list[list[tuple[int, int]]]) -> torch.Tensor:
    """[n_phrases, n_tokens] boolean: the tokens whose characters lie inside one of each phrase's character
    spans (special tokens have empty offsets and never do)."""
    start, end = offsets[:, 0], offsets[:, 1]
    nonempty = end > start
    return torch.stack([torch.stack([nonempty & (start >= s) & (end <= e) for s, e in sp]).any(0) for sp in spans])


def phrase_weights(offsets: torch.Tensor, phrases: list[str], t2i_r1_compat: bool = False) -> torch.Tensor:
    """[n_phrases, n_tokens] weights that average the per-token probabilities of each phrase of the caption
    built by :func:`caption_and_spans` (``offsets``: its tokens' character offsets). Default: over every token
    of the phrase. ``t2i_r1_compat``: over the tokens of its first and last words, normalised as GroundingDINO's
    ``create_positive_map_from_span`` does (sum + 1e-6). Raises ScorerInputError for a phrase without tokens."""
    _, spans = caption_and_spans(phrases)
    if t2i_r1_compat:
        mask = phrase_token_mask(offsets, [first_and_last_word_spans(p, s) for p, (s, _) in zip(phrases, spans)])
    else:
        mask = phrase_token_mask(offsets, [[span] for span in spans])
    empty = [p for p, m in zip(phrases, mask) if not m.any()]
    if empty:
        raise ScorerInputError(f"phrases {empty!r} produce no tokens for the detector")
    counts = mask.sum(-1, keepdim=True).float()
    return mask.float() / (counts + 1e-6 if t2i_r1_compat else counts)


class GdinoScorer(PretrainedScorer):
    name = "gdino"
    version = "1"
    model_class = GroundingDinoForObjectDetection
    processor_class = GroundingDinoImageProcessorPil
    how_to_get = GDINO_HOW_TO_GET

    def __init__(
        self,
        model: GroundingDinoForObjectDetection,
        tokenizer,
        image_processor,
        box_threshold: float = 0.3,
        params: Optional[RuleParams] = None,
        batch_size: int = 8,
    ):
        super().__init__(model, tokenizer, image_processor, batch_size)
        self.box_threshold = box_threshold
        self.params = params = params or RuleParams()
        if params.t2i_r1_compat:
            self.version = "1-t2i_r1_compat"

    @classmethod
    def load(cls, path: Path, cfg: GdinoScorerConfig, t2i_r1_compat: bool = False) -> GdinoScorer:
        params = RuleParams(
            nms_iou=cfg.nms_iou,
            spatial_iou=cfg.spatial_iou,
            near_distance=cfg.near_distance,
            t2i_r1_compat=t2i_r1_compat,
        )
        return cls(*cls.load_parts(path, scorer_device(cfg)), cfg.box_threshold, params, cfg.batch_size)

    @classmethod
    def from_config(cls, cfg: GdinoScorerConfig, t2i_r1_compat: bool = False) -> GdinoScorer:
        return cls.load(cls.model_path(cfg), cfg, t2i_r1_compat)

    def encode_caption(self, phrases: list[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The caption's model inputs and the [P, T] weights of :func:`phrase_weights`."""
        caption, _ = caption_and_spans(phrases)
        enc = self.tokenizer([caption], return_tensors="pt", return_offsets_mapping=True)
        max_len = int(self.model.config.max_text_len)
        if enc.input_ids.shape[1] > max_len:
            raise ScorerInputError(
                f"detector caption {caption!r} has {enc.input_ids.shape[1]} tokens; the model "
                f"reads at most {max_len}: use fewer or shorter nouns"
            )
        weights = phrase_weights(enc.pop("offset_mapping")[0], phrases, self.params.t2i_r1_compat)
        return dict(enc), weights

    @torch.no_grad()
    def detect(self, images: list[np.ndarray], phrases: list[str]) -> list[dict[str, PhraseBoxes]]:
        """Per image: the boxes (normalised cx, cy, w, h) and scores of each phrase above the box threshold."""
        text, weights = self.encode_caption(phrases)
        out = []
        for chunk in batches(images, self.batch_size):
            px = self.image_processor(images=[to_pil(im) for im in chunk], return_tensors="pt")
            b = len(chunk)
            res = self.model(
                pixel_values=px.pixel_values.to(self.device),
                pixel_mask=px.pixel_mask.to(self.device),
                **{k: v.to(self.device).expand(b, -1) for k, v in text.items()},
            )
            n_tok = weights.shape[1]
            prob = res.logits[..., :n_tok].float().sigmoid().cpu()  # [b, Q, T]
            phrase_scores = prob @ weights.T  # [b, Q, P]
            boxes = res.pred_boxes.float().cpu()
            for i in range(b):
                dets = {}
                for j, phrase in enumerate(phrases):
                    keep = phrase_scores[i, :, j] > self.box_threshold
                    dets[phrase] = PhraseBoxes(boxes[i][keep], phrase_scores[i, keep, j])
                out.append(dets)
        return out

    def score(self, prompt: PromptRecord, images: list[np.ndarray]) -> list[ImageScore]:
        check_images(images)
        meta = prompt.metadata()
        phrases = detector_phrases(meta)  # validates the metadata before any model work
        results = []
        for dets in self.detect(images, phrases):
            score, details = detection_score(meta, dets, self.params)
            details["boxes"] = _boxes_detail(dets)
            results.append(ImageScore(float(score), details))
        return results


def _boxes_detail(dets: dict[str, PhraseBoxes]) -> dict[str, Any]:
    """Per phrase: [cx, cy, w, h, score] of each box, rounded (JSON-friendly diagnostics)."""
    return {p: [[round(float(v), 4) for v in (*box, s)] for box, s in zip(d.boxes, d.scores)] for p, d in dets.items()}
