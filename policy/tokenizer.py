"""Special tokens of Janus-Pro and a real tokenizer for the tiny random model, built offline.

The tiny tokenizer is a byte-level BPE with no merges (one token per UTF-8 byte, so any text round-trips)
plus Janus-Pro's special tokens under the same strings. It is a genuine ``tokenizers`` model wrapped in
``PreTrainedTokenizerFast``, saved with the tiny checkpoint, so every process loads the identical tokenizer
and all code paths (prompt building, decoding, stop at EOS) are the ones used with the real model.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
IMAGE_PLACEHOLDER = "<image_placeholder>"
SPECIAL_TOKENS = (BOS, EOS, PAD, BOI, EOI, IMAGE_PLACEHOLDER)

# Whole words that get one token each in the tiny tokenizer (bytes otherwise). A real tokenizer gives common
# words their own token; here that matters for learning: with "red" spelled as three common bytes, a tiny random
# model can barely tell a red prompt from a blue one, so the embedded colour reward could not be learned.
WORD_TOKENS = (
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


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE (256 byte tokens, no merges), the Janus special tokens, then WORD_TOKENS."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    # single_word: only whole words ("red", not the "red" in "hundred"); the space before stays a byte token
    tok.add_tokens([AddedToken(w, single_word=True) for w in WORD_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        extra_special_tokens={"boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE_PLACEHOLDER},
    )
