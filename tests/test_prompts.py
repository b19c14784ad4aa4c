"""Prompt strings and ids of both CoT levels, pinned against hand-written T2I-R1 strings."""

from __future__ import annotations

import dataclasses
import re

import pytest

from policy.tokenizer import WORD_TOKENS, SpecialIds, build_tiny_tokenizer
from rollout.config import T2I_R1_REASONING_TEMPLATE, PromptConfig
from rollout.prompts import PromptBuilder, cot_chat_text, image_chat_text

SYSTEM = "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."
# T2I-R1's chat string for the prompt "a red cat", written out by hand. The user turn is stripped by Janus's
# SFT template, so the template's trailing space is gone before "\n\nAssistant:".
COT_CHAT = (
    SYSTEM + "\n\nUser: "
    'You are asked to generate an image based on this prompt: "a red cat"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation:"
    "\n\nAssistant:"
)


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def builder(tok):
    # The byte-level tiny tokenizer spends ~800 tokens on the CoT chat string (Janus-Pro's: ~170), so the
    # default cut at 512 would bite; the cut has its own test.
    return PromptBuilder(tok, SpecialIds.from_tokenizer(tok), PromptConfig(max_prompt_tokens=4096))


def _byte_tokens(tok, text: str) -> list[int]:
    """The tiny tokenizer is byte-level BPE without merges: one token per UTF-8 byte, spelled with GPT-2's
    byte -> printable-character table (rebuilt here, independently of the tokenizer code), except that each
    whole word of WORD_TOKENS ("red" in "a red cat", not in "hundred") is one token."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    byte_char = {b: chr(b) if b in printable else chr(next(shifted)) for b in range(256)}
    vocab = tok.get_vocab()
    pieces = re.split(r"\b(" + "|".join(WORD_TOKENS) + r")\b", text)
    ids = []
    for i, piece in enumerate(pieces):
        ids += [vocab[piece]] if i % 2 else [vocab[byte_char[b]] for b in piece.encode("utf-8")]
    return ids


def test_colour_words_are_single_tokens_only_as_whole_words(tok):
    assert _byte_tokens(tok, "a red cat") == tok.encode("a red cat", add_special_tokens=False)
    assert len(tok.encode(" red", add_special_tokens=False)) == 2  # space byte + "red"
    assert len(tok.encode("hundred", add_special_tokens=False)) == len("hundred")


def test_builtin_template_equals_t2i_r1_file(shared_data):
    assert T2I_R1_REASONING_TEMPLATE.encode("utf-8") == (shared_data / "t2i_r1_reasoning_prompt.txt").read_bytes()


def test_cot_chat_string_is_t2i_r1s():
    assert cot_chat_text("a red cat", SYSTEM, T2I_R1_REASONING_TEMPLATE) == COT_CHAT


def test_cot_prompt_ids(tok, builder):
    ids = builder.cot_prompt_ids("a red cat")
    assert ids == [tok.convert_tokens_to_ids("<｜begin▁of▁sentence｜>")] + _byte_tokens(tok, COT_CHAT)


def test_cot_prompt_is_cut_from_the_left(tok):
    ids = SpecialIds.from_tokenizer(tok)
    cut = PromptBuilder(tok, ids, PromptConfig(max_prompt_tokens=12)).cot_prompt_ids("a red cat")
    # T2I-R1 keeps ids[-512:]: the end of the chat string survives, BOS does not.
    assert cut == _byte_tokens(tok, COT_CHAT)[-12:]
    assert tok.decode(cut) == "\n\nAssistant:"


def test_template_file_gives_the_same_prompt(tok, shared_data):
    ids = SpecialIds.from_tokenizer(tok)
    path = str(shared_data / "t2i_r1_reasoning_prompt.txt")
    from_file = PromptBuilder(tok, ids, PromptConfig(reasoning_template_file=path, max_prompt_tokens=4096))
    assert tok.decode(from_file.cot_prompt_ids("a red cat")[1:]) == COT_CHAT


def test_custom_system_prompt_and_template(tok):
    ids = SpecialIds.from_tokenizer(tok)
    cfg = PromptConfig(system_prompt="Be brief.", reasoning_template="Plan {} now. ")
    got = PromptBuilder(tok, ids, cfg).cot_prompt_ids("two dogs")
    assert tok.decode(got[1:]) == "Be brief.\n\nUser: Plan two dogs now.\n\nAssistant:"
    no_system = dataclasses.replace(cfg, system_prompt="")
    assert tok.decode(PromptBuilder(tok, ids, no_system).cot_prompt_ids("two dogs")[1:]) == (
        "User: Plan two dogs now.\n\nAssistant:"
    )


def test_image_prompt_keeps_raw_prompt_and_cleans_cot(tok, builder):
    eos = tok.convert_tokens_to_ids("<｜end▁of▁sentence｜>")
    cot_ids = _byte_tokens(tok, " A small cat, bright red fur.\n ") + [eos]
    cot = builder.cot_text(cot_ids)
    assert cot == " A small cat, bright red fur.\n "  # EOS dropped, text otherwise untouched
    expected = "User: a red cat.  A small cat, bright red fur.\n\nAssistant:"  # trailing whitespace stripped
    assert image_chat_text("a red cat", cot) == expected
    ids = builder.image_prompt_ids("a red cat", cot)
    bos, boi = tok.convert_tokens_to_ids("<｜begin▁of▁sentence｜>"), tok.convert_tokens_to_ids("<begin_of_image>")
    assert ids == [bos] + _byte_tokens(tok, expected) + [boi]


def test_image_prompt_without_cot(tok, builder):
    ids = builder.image_prompt_ids("a red cat", None)
    assert tok.decode(ids) == "<｜begin▁of▁sentence｜>User: a red cat\n\nAssistant:<begin_of_image>"


def test_empty_cot_still_keeps_the_request(builder):
    # A CoT that decodes to nothing (only EOS) cannot delete the raw prompt.
    assert image_chat_text("a red cat", builder.cot_text([])) == "User: a red cat.\n\nAssistant:"
