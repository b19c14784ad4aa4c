"""Special tokens of Janus-Pro and a real tokenizer for the tiny random model, built offline.

The tiny tokenizer is a byte-level BPE (GPT-2's pre-tokenizer: a word takes the space before it) whose merges are
learned here, deterministically, from the English the tiny model meets: T2I-R1's system prompt and CoT template,
the chat format's words, the built-in prompts and the basic colour terms. Each of their words is then one token
(" red", " apple", " visualization"), as a real tokenizer's common words are, and any other text still
round-trips through the byte tokens. Plus Janus-Pro's special tokens under the same strings. It is a genuine
``tokenizers`` model wrapped in ``PreTrainedTokenizerFast``, saved with the tiny checkpoint, so every process
loads the identical tokenizer and all code paths (prompt building, decoding, stop at EOS) are the ones used with
the real model.

Why words matter (LEARNING.md): with one token per byte, a colour and its noun are a few common bytes among ~30
context tokens, and the tiny random policy's images barely depend on the prompt; GRPO then moves every prompt's
images the same way and often collapses them to one code. With word tokens the same policy separates prompts from
the first steps, and the T2I-R1 CoT prompt is ~170 tokens (Janus-Pro's tokenizer: ~170) instead of ~760.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from core.prompt_file import load_prompts
from core.t2i_r1_text import T2I_R1_REASONING_TEMPLATE, T2I_R1_SYSTEM_PROMPT

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
IMAGE_PLACEHOLDER = "<image_placeholder>"
SPECIAL_TOKENS = (BOS, EOS, PAD, BOI, EOI, IMAGE_PLACEHOLDER)

# The basic colour terms (those the embedded colour reward reads, with its aliases): every one a word token.
COLOUR_WORDS = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "violet",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "grey",
    "gold",
    "golden",
    "silver",
    "cyan",
    "turquoise",
    "teal",
    "magenta",
    "beige",
    "maroon",
    "navy",
)


@dataclass(frozen=True)
class SpecialIds:
    """Ids of the special tokens the rollout and learner need (Janus-Pro: 100000, 100001, 100015, 100016)."""

    bos: int
    eos: int
    pad: int
    boi: int

    @classmethod
    def from_tokenizer(cls, tok: PreTrainedTokenizerBase) -> SpecialIds:
        ids = {}
        for name, text in (("bos", BOS), ("eos", EOS), ("pad", PAD), ("boi", BOI)):
            i = tok.convert_tokens_to_ids(text)
            if i is None or i == tok.unk_token_id:
                raise ValueError(f"tokenizer has no {text!r} token; is this a Janus-Pro tokenizer?")
            ids[name] = int(i)
        return cls(**ids)


def tiny_corpus() -> list[str]:
    """The texts the tiny tokenizer learns its words from."""
    prompts = [r.prompt for r in load_prompts(None).records]
    return [T2I_R1_SYSTEM_PROMPT, T2I_R1_REASONING_TEMPLATE, "User: Assistant:", *prompts, " ".join(COLOUR_WORDS)]


def _pre_tokenizer() -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def learn_merges(texts: list[str]) -> list[tuple[str, str]]:
    """BPE training: merge the most frequent adjacent pair (ties: the smallest pair) until every pre-token of
    ``texts`` is a single symbol. Plain Python, so the merges (and the model built on them) are the same on every
    machine."""
    pre = _pre_tokenizer()
    counts = collections.Counter(piece for text in texts for piece, _ in pre.pre_tokenize_str(text))
    words = {w: list(w) for w in counts}
    merges = []
    while True:
        pairs: collections.Counter = collections.Counter()
        for w, symbols in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += counts[w]
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for w, symbols in words.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            words[w] = merged


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE: the 256 byte symbols, the merges of :func:`learn_merges` on :func:`tiny_corpus`, then the
    Janus special tokens."""
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = learn_merges(tiny_corpus())
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))  # two merges may spell the same token (e.g. "ab"+"c", "a"+"bc")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        extra_special_tokens={"boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE_PLACEHOLDER},
    )
