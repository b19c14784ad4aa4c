"""The text side of the T2I-CompBench metrics: what each official script reads out of a prompt, as pure functions
of spaCy tokens (spacy_parse.py). File:line references are to Karine-Huang/T2I-CompBench@1b70949.

Where the official script crashes on a prompt (none of the 300 val prompts of any category does), these
functions raise PromptRuleError naming the prompt's problem instead of inventing a score.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional

from evaluation.compbench.spacy_parse import Token, span_text


class PromptRuleError(ValueError):
    """The official script cannot score this prompt (it would raise)."""


# ----------------------------------------------------------------------------------------------- BLIP-VQA

BLIP_SKIPPED_CHUNKS = ("top", "the side", "the left", "the right")  # BLIP_vqa.py:36
BLIP_MAX_QUESTIONS = 8  # BLIP_vqa.py:68 (np_num)


def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question cleaning (data/utils.py:31-44): lowercase, delete ``.!"()*#:;~``, strip trailing spaces,
    keep at most ``max_words`` space-separated words."""
    question = re.sub(r"([.!\"()*#:;~])", "", question.lower()).rstrip(" ")
    words = question.split(" ")
    return " ".join(words[:max_words]) if len(words) > max_words else question


def blip_questions(noun_chunks: Sequence[str], max_questions: int = BLIP_MAX_QUESTIONS) -> list[str]:
    """One question ``"{noun phrase}?"`` per spaCy noun chunk, except the four positional chunks, at most
    ``max_questions`` (BLIP_vqa.py:34-42); a prompt with fewer chunks simply has fewer factors."""
    phrases = [c for c in noun_chunks if c not in BLIP_SKIPPED_CHUNKS][:max_questions]
    return [pre_question(f"{p}?") for p in phrases]


# ----------------------------------------------------------------------------------------------- CLIPScore


def without_adjectives(tokens: Sequence[Token]) -> str:
    """The complex-mode CLIP text: the prompt's tokens joined by single spaces, ADJ tokens dropped
    (CLIP_similarity.py:61-64), e.g. "The hat was on top of the coat rack ."."""
    return " ".join(t.text for t in tokens if t.pos != "ADJ")


# ----------------------------------------------------------------------------------------------- spatial

PERSON_WORDS = ("girl", "boy", "man", "woman")
# 2D_spatial_eval.py:168, searched in this order as substrings of the prompt; "on top of" has no rule (scores 0).
LOCALITIES_2D = (
    "on side of",
    "next to",
    "near",
    "on the left of",
    "on the right of",
    "on the bottom of",
    "on the top of",
    "on top of",
)
LOCALITIES_3D = ("in front of", "behind", "hidden")  # 3D_spatial_eval.py:278
# 2D_spatial_eval.py:184, the complex parse's prepositions.
COMPLEX_PREPOSITIONS = ("on top of", "on bottom of", "on the left", "on the right", "next to", "on side of", "near")


def find_locality(prompt: str, vocabulary: Sequence[str]) -> Optional[str]:
    """The first word of ``vocabulary`` that occurs in the prompt (a substring test), or None."""
    return next((w for w in vocabulary if w in prompt), None)


def as_detector_name(noun: Optional[str]) -> Optional[str]:
    """girl/boy/man/woman are detected as ``person`` (2D_spatial_eval.py:228-232, 3D_spatial_eval.py:292-296)."""
    return "person" if noun in PERSON_WORDS else noun


def first_last_nouns(tokens: Sequence[Token]) -> tuple[str, str]:
    """The simple spatial parse: obj1, obj2 = the first and last NOUN token (2D_spatial_eval.py:225-226)."""
    nouns = [t.text for t in tokens if t.pos == "NOUN"]
    if not nouns:
        raise PromptRuleError(
            "no NOUN token in the prompt: the official spatial scripts index the first and last "
            "NOUN and raise IndexError here"
        )
    return nouns[0], nouns[-1]


def complex_spatial_objects(tokens: Sequence[Token]) -> list[str]:
    """The complex parse (2D_spatial_eval.py:184-214): around every preposition of COMPLEX_PREPOSITIONS, the
    nearest NOUN or PROPN before it and the nearest NOUN after it (or, when no NOUN follows, the last PROPN of
    the first proper-noun run after it). The script scores the pair only when exactly two objects are found."""
    n = len(tokens)
    objects = []
    for i in range(n):
        # Which span length matched, checked longest first on slices that may run past the end (as spaCy's
        # doc[i:i+3] does), so k can exceed the tokens left; the script then finds nothing after the preposition.
        k = next((k for k in (3, 2, 1) if span_text(tokens[i : i + k]) in COMPLEX_PREPOSITIONS), None)
        if k is None:
            continue
        for j in range(i - 1, -1, -1):
            if tokens[j].pos in ("NOUN", "PROPN"):
                objects.append(tokens[j].text)
                break
        reached_end = False
        for j in range(i + k, n):
            if tokens[j].pos == "NOUN":
                objects.append(tokens[j].text)
                break
            if j == n - 1:
                reached_end = True
        if reached_end:
            for j in range(i + k, n):
                if j + 1 < n and tokens[j].pos == "PROPN" and tokens[j + 1].pos != "PROPN":
                    objects.append(tokens[j].text)
                    break
    return objects


# ----------------------------------------------------------------------------------------------- numeracy

NUMBER_WORDS = ("a", "an", "one", "two", "three", "four", "five", "six", "seven", "eight")  # numeracy_eval.py:137
SINGLE_WORDS = ("a", "an", "one")
# word2number's values for the number words; it raises on "a" / "an", and the script then appends no count.
WORD_VALUES = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
# numeracy_eval.py:165-174: names the detector knows under another label.
NUMERACY_RENAMES = {
    "boy": "person",
    "girl": "person",
    "man": "person",
    "woman": "person",
    "ship": "boat",
    "telivision": "tv",
    "goldfish": "fish",
    "painting": "picture",
}


def numeracy_objects(
    tokens: Sequence[Token], singular: Sequence[str], plural: Sequence[str]
) -> tuple[list[str], list[int]]:
    """The numeracy parse (numeracy_eval.py:136-161): after each number word, a two-word or one-word object of
    ``new_objects.txt`` (singular or plural; the singular is kept). Returns the object list and the count list
    exactly as the script builds them: a count is appended only when word2number reads the number word, so the
    two lists can differ in length (e.g. "a dogs"), which the score then handles as the script does."""
    objs: list[str] = []
    counts: list[int] = []
    n = len(tokens)

    def append_count(word: str) -> None:
        if word in WORD_VALUES:
            counts.append(WORD_VALUES[word])

    for i in range(n):
        word = tokens[i].text
        if word not in NUMBER_WORDS:
            continue
        two = f"{tokens[i + 1].text} {tokens[i + 2].text}" if i < n - 2 else None
        if two is not None and (two in singular or two in plural):
            if two in plural and word not in SINGLE_WORDS:
                objs.append(singular[plural.index(two)])
                append_count(word)
            else:
                counts.append(1)
                objs.append(two)
            continue
        if i + 1 >= n:
            raise PromptRuleError(
                f"the prompt ends with the number word {word!r}: the official numeracy parse "
                "reads the next token and raises IndexError here"
            )
        one = tokens[i + 1].text
        if one in singular or one in plural:
            if one in singular and word in SINGLE_WORDS:
                counts.append(1)
                objs.append(one)
            else:
                if one not in plural:
                    raise PromptRuleError(
                        f"{word!r} {one!r}: a count above one with a singular noun; the official "
                        "numeracy parse looks it up among the plurals and raises ValueError here"
                    )
                objs.append(singular[plural.index(one)])
                append_count(word)
    if not objs:
        raise PromptRuleError(
            "no counted object (a number word followed by a name of new_objects.txt): the "
            "official numeracy score divides by zero here"
        )
    return objs, counts


def numeracy_detector_name(obj: str) -> str:
    return NUMERACY_RENAMES.get(obj, obj)
