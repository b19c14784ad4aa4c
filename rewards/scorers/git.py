"""GIT-VQA reward (T2I-R1): ask GIT (microsoft/git-large-vqav2) ``"{phrase}?"`` about each attribute-noun phrase
and score p(yes) / (p(yes) + p(no)) of the next token; rules in rewards/vqa_rules.py.

Input ids are ``[CLS] + tokens(question)`` as in T2I-R1. A group is scored in batches of ``batch_size`` images;
within a batch every question is asked of every image in one forward: GIT tiles the image features over the text
rows (row r reads image r mod n_images), so each image goes through the vision tower once, and the questions
are right-padded (text attention in GIT is causal, so a row's last real token never sees the padding after it).
The images' pixel values are the scorer's per-image ``prepare_image`` step, which a server runs off its model
thread.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from transformers import CLIPImageProcessorPil, GitForCausalLM

from core.records import PromptRecord
from rewards.base import ImageScore, PreparedScorer, check_image
from rewards.scorers.common import batches
from rewards.scorers.pixel_values import PixelValues
from rewards.scorers.pretrained import PretrainedScorer
from rewards.vqa_rules import vqa_phrases, vqa_question, vqa_score, yes_ratio_from_logits

GIT_HOW_TO_GET = (
    "Download GIT-large VQAv2 on a machine with network access, e.g. `huggingface-cli download "
    "microsoft/git-large-vqav2 --local-dir /models/git-large-vqav2`, copy it here and set rewards.git.path to it."
)


class GitVQAScorer(PretrainedScorer, PreparedScorer):
    name = "git"
    version = "1"
    model_class = GitForCausalLM
    processor_class = CLIPImageProcessorPil
    how_to_get = GIT_HOW_TO_GET

    def __init__(self, model: GitForCausalLM, tokenizer, image_processor, batch_size: int = 8):
        super().__init__(model, tokenizer, image_processor, batch_size)
        self.yes_id, self.no_id = (tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no"))
        if tokenizer.unk_token_id in (self.yes_id, self.no_id):
            raise ValueError("the GIT tokenizer has no 'yes' / 'no' token; is this a VQA checkpoint's tokenizer?")
        self.pixel_values = PixelValues(image_processor)

    def question_ids(self, phrases: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """[Q, L] right-padded ``[CLS] + tokens`` of each question, and each row's length."""
        rows = [
            [self.tokenizer.cls_token_id] + self.tokenizer(vqa_question(p), add_special_tokens=False).input_ids
            for p in phrases
        ]
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, lengths

    @torch.no_grad()
    def yes_ratios(self, pixel_values: torch.Tensor, phrases: list[str]) -> torch.Tensor:
        """[n_images, n_phrases] p(yes) / (p(yes) + p(no))."""
        ids, lengths = self.question_ids(phrases)
        q, width = ids.shape
        out = []
        for pix in batches(pixel_values, self.batch_size):
            b = len(pix)
            rows = ids.repeat_interleave(b, dim=0)  # question-major: row r = question r // b, image r % b
            mask = (torch.arange(width)[None, :] < lengths.repeat_interleave(b)[:, None]).long()
            logits = self.model(
                input_ids=rows.to(self.device),
                attention_mask=mask.to(self.device),
                pixel_values=pix.to(self.device, self.model.dtype),
                logits_to_keep=width,
            ).logits
            last = logits[torch.arange(q * b), lengths.repeat_interleave(b) - 1]  # [q * b, V]
            out.append(yes_ratio_from_logits(last, self.yes_id, self.no_id).cpu().view(q, b).T)
        return torch.cat(out)

    def prepare_image(self, prompt: PromptRecord, image: np.ndarray) -> Optional[np.ndarray]:
        """The image's pixel values [3, h, w]; None when the task type is not scored by VQA."""
        check_image(image)
        return None if vqa_phrases(prompt.metadata()) is None else self.pixel_values.image(image)

    def score_prepared(self, prompt: PromptRecord, prepared: list[Optional[np.ndarray]]) -> list[ImageScore]:
        phrases = vqa_phrases(prompt.metadata())
        if phrases is None:
            skipped = f"task_type {prompt.task_type!r} is not scored by VQA"
            return [ImageScore(0.0, {"skipped": skipped}) for _ in prepared]
        questions = [vqa_question(p) for p in phrases]
        return [
            ImageScore(vqa_score(r.tolist()), {"questions": questions, "yes_ratio": [round(float(x), 6) for x in r]})
            for r in self.yes_ratios(torch.from_numpy(np.stack(prepared)), phrases)
        ]
