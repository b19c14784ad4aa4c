"""T2I-CompBench colour / shape / texture (and the complex attribute part): BLIP-VQA, BLIPvqa_eval/BLIP_vqa.py and
models/blip_vqa.py (``vqa_prob``), on transformers' ``BlipForQuestionAnswering``.

Per image: one question ``"{noun phrase}?"`` per spaCy noun chunk of the prompt (prompt_rules.blip_questions);
each question's answer p = P(yes) / (P(yes) + P(no)) from the first decoder step; the image's score is the product
over its questions (1 for a prompt without a noun chunk). As in the original, each answer is written with four
decimals before the product is taken in float32, and the product is written with four decimals (BLIP_vqa.py:104-117).

The forward is the original's, not transformers' ``forward`` / ``generate`` (which keep [CLS] as the question's
first token): the vision tower at 480 px, the question with its first token replaced by [ENC] through the
text encoder cross-attending to the image, and the text decoder fed the single token [DEC]. Token ids are the
original's hard-coded ones (bert-base-uncased + BLIP's two added tokens).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, BlipForQuestionAnswering

from evaluation.base import EvalItem, Evaluator, Fidelity, ImageResult
from evaluation.compbench import spacy_parse
from evaluation.compbench.inputs import check_batch, chunks
from evaluation.compbench.preprocess import BLIP_IMAGE_SIZE, blip_pixels
from evaluation.compbench.prompt_rules import blip_questions
from evaluation.models import BLIP_VQA

DEC_ID, ENC_ID = 30522, 30523  # BLIP's [DEC] (bos) and [ENC] (models/blip.py init_tokenizer)
YES_ID, NO_ID = 2748, 2053  # models/blip_vqa.py:145-146
MAX_QUESTION_TOKENS = 35  # models/blip_vqa.py:44

SAME_WEIGHTS_NOTE = (
    "same weights as the original model_base_vqa_capfilt_large.pth, but the hub checkpoint was converted at 384 px "
    "(position embedding resampled 30x30 -> 24x24) and is re-interpolated (bicubic) to 30x30 to run at 480 px as "
    "the original does: a small, unmeasured deviation; noun chunks from spaCy 3.8 (the original pins 3.5)"
)
EXACT_NOTE = (
    "weights converted from the original checkpoint at 480 px (no position-embedding resampling); noun "
    "chunks from spaCy 3.8 (the original pins 3.5)"
)


class BlipVqaEvaluator(Evaluator):
    name = "blip_vqa"

    def __init__(
        self,
        model: BlipForQuestionAnswering,
        tokenizer,
        image_size: int = BLIP_IMAGE_SIZE,
        batch_size: int = 8,
        parse: Callable[[str], spacy_parse.ParsedPrompt] = spacy_parse.parse,
    ):
        vocab = model.config.text_config.vocab_size
        if vocab <= ENC_ID:
            raise ValueError(
                f"BLIP text vocab_size is {vocab}; BLIP-VQA needs its [DEC]={DEC_ID} and [ENC]={ENC_ID} "
                f"tokens (vocab_size 30524, as in {BLIP_VQA.hub_id})"
            )
        got = tokenizer.convert_tokens_to_ids(["yes", "no"])
        if got != [YES_ID, NO_ID]:
            raise ValueError(
                f"the tokenizer maps yes/no to {got}, not the bert-base-uncased ids {[YES_ID, NO_ID]} "
                "that BLIP-VQA reads its answer at"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.batch_size = batch_size
        self.parse = parse
        self.device = next(model.parameters()).device
        native = model.config.vision_config.image_size == image_size
        self.fidelity = Fidelity.exact if native else Fidelity.same_weights
        self.fidelity_note = EXACT_NOTE if native else SAME_WEIGHTS_NOTE

    @classmethod
    def load(
        cls, path: str | os.PathLike | None, device: str = "cpu", batch_size: int = 8, image_size: int = BLIP_IMAGE_SIZE
    ) -> BlipVqaEvaluator:
        """From a local copy of Salesforce/blip-vqa-capfilt-large (or a conversion of the original checkpoint)."""
        p = BLIP_VQA.require(path)
        spacy_parse.load_spacy()
        model = BlipForQuestionAnswering.from_pretrained(p, local_files_only=True).to(device)
        return cls(model, AutoTokenizer.from_pretrained(p, local_files_only=True), image_size, batch_size)

    def questions(self, prompt: str) -> list[str]:
        return blip_questions(self.parse(prompt).noun_chunks)

    @torch.no_grad()
    def answer(self, images: Sequence[np.ndarray], questions: Sequence[Sequence[str]]) -> list[list[float]]:
        """P(yes) / (P(yes) + P(no)) of each image's questions: one vision and one text-encoder forward for the
        whole batch, one (single-token) decoder forward per question length."""
        pairs = [(i, q) for i, qs in enumerate(questions) for q in qs]
        if not pairs:
            return [[] for _ in images]
        pixels = blip_pixels(images, self.image_size).to(self.device, self.model.dtype)
        image_embeds = self.model.vision_model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state
        image_embeds = image_embeds[torch.tensor([i for i, _ in pairs], device=self.device)]
        q = self.tokenizer(
            [q for _, q in pairs],
            padding="longest",
            truncation=True,
            max_length=MAX_QUESTION_TOKENS,
            return_tensors="pt",
        ).to(self.device)
        q.input_ids[:, 0] = ENC_ID
        question_states = self.model.text_encoder(
            input_ids=q.input_ids,
            attention_mask=q.attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device),
        ).last_hidden_state
        # transformers 5.19's BLIP text cross-attention drops encoder_attention_mask (BlipTextAttention never
        # passes it on), so a padded question would leak its padding into the decoder, which the original masks.
        # Questions of each token length therefore go through the decoder together, unpadded.
        lengths = q.attention_mask.sum(1)
        p = torch.empty(len(pairs))
        for n in lengths.unique().tolist():
            rows = (lengths == n).nonzero().squeeze(1)
            logits = self.model.text_decoder(
                input_ids=torch.full((len(rows), 1), DEC_ID, device=self.device),
                encoder_hidden_states=question_states[rows, :n],
                encoder_attention_mask=q.attention_mask[rows, :n],
            ).logits[:, 0, :]
            prob = torch.softmax(logits.float(), dim=1)
            p[rows.cpu()] = (prob[:, YES_ID] / (prob[:, YES_ID] + prob[:, NO_ID])).cpu()
        p = p.tolist()
        out: list[list[float]] = [[] for _ in images]
        for (i, _), value in zip(pairs, p):
            out[i].append(value)
        return out

    def score(self, images: Sequence[np.ndarray], items: Sequence[EvalItem]) -> list[ImageResult]:
        check_batch(images, items)
        questions = [self.questions(it.prompt) for it in items]
        results = []
        for s in chunks(len(images), self.batch_size):
            for qs, ps in zip(questions[s], self.answer(images[s], questions[s])):
                answers = [four_decimals(p) for p in ps]
                product = np.float32(1.0)
                for a in answers:  # in order, in float32, as the original's reward tensor
                    product = product * np.float32(a)
                results.append(ImageResult(four_decimals(float(product)), {"questions": qs, "p_yes": answers}))
        return results


def four_decimals(x: float) -> float:
    """The original stores every BLIP answer as the string '{:.4f}' and reads it back."""
    return float(f"{x:.4f}")
