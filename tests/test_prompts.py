"""Prompt strings and ids of both CoT levels, pinned against hand-written T2I-R1 strings."""

from __future__ import annotations

import dataclasses
import json

import pytest
import regex

from core.t2i_r1_text import T2I_R1_REASONING_TEMPLATE
from policy.tokenizer import SpecialIds, build_tiny_tokenizer, learn_merges, tiny_corpus
from rewards.scorers.color import COLOR_ALIASES, COLOR_PROTOTYPES
from rollout.config import PromptConfig
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
    # The cut has its own test.
    return PromptBuilder(tok, SpecialIds.from_tokenizer(tok), PromptConfig(max_prompt_tokens=4096))


# GPT-2's pre-tokenizer pattern and byte -> printable-character table, rebuilt here, independently of the
# tokenizer code: the reference encoder below is plain-Python BPE over them.
GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def _byte_chars() -> dict[int, str]:
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(shifted)) for b in range(256)}


def _reference_tokens(tok, text: str) -> list[int]:
    """The tiny tokenizer's ids for ``text`` by the textbook algorithm: split with GPT-2's pattern, spell each piece
    in byte symbols, then repeatedly apply the lowest-ranked of the tokenizer's merges present in the piece."""
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    rank = {tuple(m.split(" ") if isinstance(m, str) else m): i for i, m in enumerate(model["merges"])}
    byte_char, ids = _byte_chars(), []
    for piece in GPT2_PATTERN.findall(text):
        symbols = [byte_char[b] for b in piece.encode("utf-8")]
        while len(symbols) > 1:
            pairs = [(rank.get(pair, len(rank)), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
            best, i = min(pairs)
            if best == len(rank):
                break
            symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
        ids += [model["vocab"][s] for s in symbols]
    return ids


def test_tokenizer_is_textbook_bpe_with_the_builtin_words(tok):
    assert _reference_tokens(tok, COT_CHAT) == tok.encode(COT_CHAT, add_special_tokens=False)
    # every word of T2I-R1's texts and the built-in prompts is one token, with the space before it where it has
    # one, and so is every colour term of the colour reward; other words fall back to smaller pieces
    pieces = {p for text in tiny_corpus() for p in GPT2_PATTERN.findall(text)}
    pieces |= {" " + c for c in [*COLOR_PROTOTYPES, *COLOR_ALIASES]}
    for piece in pieces:
        assert len(tok.encode(piece, add_special_tokens=False)) == 1, piece
    for text in ("a hundred reddish zebras", "ünïcödé 42 ✓", "  two  spaces\n\n"):
        ids = tok.encode(text, add_special_tokens=False)
        assert ids == _reference_tokens(tok, text) and tok.decode(ids) == text
    assert len(tok.encode(" hundred", add_special_tokens=False)) > 1
    assert len(COT_CHAT.encode()) > 4 * len(tok.encode(COT_CHAT, add_special_tokens=False))  # ~170 tokens, not ~760


def test_learn_merges_worked_by_hand():
    # "ab ab abc" -> pieces ab, Ġab, Ġabc: (a,b) occurs 3 times, then (Ġ,ab) twice, then (Ġab,c) once
    assert learn_merges(["ab ab abc"]) == [("a", "b"), ("Ġ", "ab"), ("Ġab", "c")]
    # a tie between three pairs seen once each: the smallest pair goes first ("Ġ" is U+0120, after "x" and "y")
    assert learn_merges(["xy yz"]) == [("x", "y"), ("y", "z"), ("Ġ", "yz")]


def test_builtin_template_equals_t2i_r1_file(shared_data):
    assert T2I_R1_REASONING_TEMPLATE.encode("utf-8") == (shared_data / "t2i_r1_reasoning_prompt.txt").read_bytes()


def test_cot_chat_string_is_t2i_r1s():
    assert cot_chat_text("a red cat", SYSTEM, T2I_R1_REASONING_TEMPLATE) == COT_CHAT


def test_cot_prompt_ids(tok, builder):
    ids = builder.cot_prompt_ids("a red cat")
    assert ids == [tok.convert_tokens_to_ids("<｜begin▁of▁sentence｜>")] + _reference_tokens(tok, COT_CHAT)


def test_cot_prompt_is_cut_from_the_left(tok):
    ids = SpecialIds.from_tokenizer(tok)
    cut = PromptBuilder(tok, ids, PromptConfig(max_prompt_tokens=4)).cot_prompt_ids("a red cat")
    # T2I-R1 keeps ids[-512:]: the end of the chat string survives, BOS does not.
    assert cut == _reference_tokens(tok, COT_CHAT)[-4:]
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
    cot_ids = _reference_tokens(tok, " A small cat, bright red fur.\n ") + [eos]
    cot = builder.cot_text(cot_ids)
    assert cot == " A small cat, bright red fur.\n "  # EOS dropped, text otherwise untouched
    expected = "User: a red cat.  A small cat, bright red fur.\n\nAssistant:"  # trailing whitespace stripped
    assert image_chat_text("a red cat", cot) == expected
    ids = builder.image_prompt_ids("a red cat", cot)
    bos, boi = tok.convert_tokens_to_ids("<｜begin▁of▁sentence｜>"), tok.convert_tokens_to_ids("<begin_of_image>")
    assert ids == [bos] + _reference_tokens(tok, expected) + [boi]


def test_image_prompt_without_cot(tok, builder):
    ids = builder.image_prompt_ids("a red cat", None)
    assert tok.decode(ids) == "<｜begin▁of▁sentence｜>User: a red cat\n\nAssistant:<begin_of_image>"


def test_empty_cot_still_keeps_the_request(builder):
    # A CoT that decodes to nothing (only EOS) cannot delete the raw prompt.
    assert image_chat_text("a red cat", builder.cot_text([])) == "User: a red cat.\n\nAssistant:"
