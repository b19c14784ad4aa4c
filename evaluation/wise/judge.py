"""The WISE judge: Qwen3.5 (``Qwen/Qwen3.5-35B-A3B``) through transformers' ``Qwen3_5MoeForConditionalGeneration``.

The official WISE_Verified run serves the same weights with vLLM and sends, per image, the rubric chat with
``temperature=0``, ``max_tokens=500`` and ``chat_template_kwargs={"enable_thinking": False}`` (``vllm_eval.py``
l.180-201). Here: the model's own chat template with ``enable_thinking=False`` and the generation prompt, greedy
decoding of at most 500 new tokens, special tokens dropped, ``<think>`` blocks stripped (scoring.strip_think).

The inputs are assembled as transformers' ``Qwen3VLProcessor`` does (that class cannot be built without
torchvision, which it needs for its video processor): the image through ``Qwen2VLImageProcessorPil``, the single
image placeholder token of the rendered chat repeated once per merged patch, and ``mm_token_type_ids`` marking
the image tokens for the multimodal RoPE. Conversations of one batch are left-padded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen3_5MoeForConditionalGeneration

from evaluation.local_files import MissingFilesError
from evaluation.models import QWEN_JUDGE
from evaluation.wise.scoring import strip_think

JUDGE_HINT = QWEN_JUDGE.how_to_get()
MAX_NEW_TOKENS = 500


def judge_dir(path) -> Path:
    return QWEN_JUDGE.require(path)


def chat_template(root: Path, tokenizer) -> str:
    """The model's chat template: the tokenizer's (tokenizer_config.json or chat_template.jinja), else the
    processor's chat_template.json."""
    if tokenizer.chat_template:
        return tokenizer.chat_template
    processor_file = root / "chat_template.json"
    if processor_file.is_file():
        return json.loads(processor_file.read_text())["chat_template"]
    raise MissingFilesError(
        f"the WISE judge model directory {str(root)!r} has no chat template (chat_template.jinja, "
        f"chat_template.json or tokenizer_config.json's chat_template). {JUDGE_HINT}"
    )


class QwenJudge:
    def __init__(
        self,
        model: Qwen3_5MoeForConditionalGeneration,
        tokenizer,
        image_processor,
        template: str,
        batch_size: int = 8,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.template = template
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = next(model.parameters()).device
        self.image_token_id = int(model.config.image_token_id)
        self.image_token = tokenizer.convert_ids_to_tokens(self.image_token_id)

    @classmethod
    def load(cls, path, device: str = "cpu", batch_size: int = 8, max_new_tokens: int = MAX_NEW_TOKENS) -> QwenJudge:
        """The checkpoint's dtype (bf16 for the hub weights, vLLM's default too) on ``device``. (Loading straight
        onto the GPU with ``device_map`` would need the accelerate package, which this project does not install.)"""
        root = judge_dir(path)
        tokenizer = AutoTokenizer.from_pretrained(root, local_files_only=True)
        template = chat_template(root, tokenizer)
        model = Qwen3_5MoeForConditionalGeneration.from_pretrained(root, local_files_only=True, dtype="auto")
        return cls(
            model.to(device),
            tokenizer,
            Qwen2VLImageProcessorPil.from_pretrained(root, local_files_only=True),
            template,
            batch_size,
            max_new_tokens,
        )

    def prompt_text(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=True, enable_thinking=False
        )

    def inputs(self, conversations: Sequence[list[dict[str, Any]]], images: Sequence[np.ndarray]) -> dict:
        """Model inputs of conversations that each hold one image, in order."""
        vision = self.image_processor(images=[Image.fromarray(im, "RGB") for im in images], return_tensors="pt")
        merge = self.image_processor.merge_size**2
        texts = []
        for messages, grid in zip(conversations, vision["image_grid_thw"]):
            text = self.prompt_text(messages)
            if text.count(self.image_token) != 1:
                raise ValueError(
                    f"a judge conversation must render one image placeholder {self.image_token!r}, "
                    f"found {text.count(self.image_token)}"
                )
            texts.append(text.replace(self.image_token, self.image_token * int(grid.prod() // merge)))
        tok = self.tokenizer(texts, padding=True, padding_side="left", add_special_tokens=False, return_tensors="pt")
        return {
            "input_ids": tok["input_ids"],
            "attention_mask": tok["attention_mask"],
            "mm_token_type_ids": (tok["input_ids"] == self.image_token_id).int(),
            "pixel_values": vision["pixel_values"],
            "image_grid_thw": vision["image_grid_thw"],
        }

    @torch.no_grad()
    def answers(self, conversations: Sequence[list[dict[str, Any]]], images: Sequence[np.ndarray]) -> list[str]:
        """The judge's answer to each conversation about its image, think blocks removed."""
        out: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            batch = self.inputs(conversations[start : start + self.batch_size], images[start : start + self.batch_size])
            batch = {k: v.to(self.device) for k, v in batch.items()}
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
            generated = self.model.generate(**batch, do_sample=False, max_new_tokens=self.max_new_tokens)
            new = generated[:, batch["input_ids"].shape[1] :]
            out += [strip_think(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        return out
