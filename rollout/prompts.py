"""Prompt construction for both CoT levels, exactly as T2I-R1 builds them (docs/ALGORITHM.md §1).

Semantic level (the text CoT) is conditioned on a DeepSeek-format chat string::

    BOS + "{system}\\n\\nUser: {filled template}\\n\\nAssistant:"      (cut to the last max_prompt_tokens)

Token level (the image) is conditioned on the raw prompt followed by the decoded CoT::

    BOS + "User: {raw prompt}. {CoT text}\\n\\nAssistant:" + <begin_of_image>

Details taken from T2I-R1's trainer and Janus's conversation template, where they differ from a naive reading:
- The template is filled with the raw prompt and the user turn is then ``.strip()``-ed (Janus's
  ``apply_sft_template_for_multi_turn_prompts``), so the template file's trailing space does not reach the
  model; the whole chat string is stripped too (only matters for a system prompt with outer whitespace).
- The CoT text is ``tokenizer.decode(cot_ids, skip_special_tokens=True)`` (EOS and anything special dropped);
  "{raw prompt}. {CoT}" is stripped as a whole, so trailing whitespace of the CoT disappears.
- The CoT prompt is cut with ``ids[-max_prompt_tokens:]``: the *left* end goes, BOS included.
- The image context drops the CoT stage's system prompt and template.
- Without a CoT (``use_cot=False``), the image prompt is Janus-Pro's plain generation prompt
  ``"User: {raw prompt}\\n\\nAssistant:"``.

BOS is prepended explicitly (the texts are encoded with ``add_special_tokens=False``): Janus-Pro's tokenizer adds
exactly this one BOS by itself, the tiny test tokenizer adds none, so both give the reference ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from transformers import PreTrainedTokenizerBase

from policy.tokenizer import SpecialIds
from rollout.config import PromptConfig


def chat_text(user: str, system: str = "") -> str:
    """Janus's DeepSeek SFT format for one user turn and an open assistant turn."""
    head = f"{system}\n\n" if system else ""
    return f"{head}User: {user.strip()}\n\nAssistant:".strip()


def reasoning_template(cfg: PromptConfig) -> str:
    """The CoT user-turn template: the file named by the config (verbatim), else the built-in one."""
    if cfg.reasoning_template_file is None:
        return cfg.reasoning_template
    path = Path(os.path.expanduser(cfg.reasoning_template_file))
    template = path.read_text(encoding="utf-8")
    if "{}" not in template:
        raise ValueError(f"rollout.prompt.reasoning_template_file {str(path)!r} has no {{}} for the raw prompt")
    return template


def cot_chat_text(prompt: str, system: str, template: str) -> str:
    """The chat string that asks for the semantic CoT of ``prompt`` (without BOS)."""
    # str.replace, not str.format: a user template may contain other braces.
    return chat_text(template.replace("{}", prompt), system)


def image_chat_text(prompt: str, cot: Optional[str]) -> str:
    """The chat string the image is drawn from (without BOS and <begin_of_image>); ``cot=None``: no CoT."""
    return chat_text(prompt if cot is None else f"{prompt}. {cot}")


class PromptBuilder:
    """Token ids of both contexts for one tokenizer and prompt config (the template is read once)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, ids: SpecialIds, cfg: PromptConfig):
        self.tokenizer = tokenizer
        self.ids = ids
        self.cfg = cfg
        self.template = reasoning_template(cfg)

    def _encode(self, text: str) -> list[int]:
        return [self.ids.bos] + list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def cot_prompt_ids(self, prompt: str) -> list[int]:
        """BOS + CoT chat string, cut from the left to ``max_prompt_tokens`` (as T2I-R1 does)."""
        ids = self._encode(cot_chat_text(prompt, self.cfg.system_prompt, self.template))
        return ids[-self.cfg.max_prompt_tokens :]

    def cot_text(self, cot_ids: Sequence[int]) -> str:
        """The CoT as it enters the image prompt: decoded without special tokens (EOS goes)."""
        return self.tokenizer.decode(list(cot_ids), skip_special_tokens=True)

    def image_prompt_ids(self, prompt: str, cot: Optional[str]) -> list[int]:
        """BOS + image chat string + <begin_of_image>; ``cot=None`` gives the no-CoT prompt."""
        return self._encode(image_chat_text(prompt, cot)) + [self.ids.boi]
