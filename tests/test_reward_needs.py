"""rewards/registry.py's declared needs agree with what the scorers' own rules do: a row the table accepts is one
the rule scores, a row it flags is one the rule refuses, and "judges" is false exactly where the rule gives every
image the same score. The rules are the model-free functions the scorers call on every request."""

from __future__ import annotations

import itertools

import pytest

from core.records import PromptRecord
from rewards.base import TASK_TYPES, ScorerInputError
from rewards.detection_rules import check_metadata
from rewards.registry import NEEDS, row_problems
from rewards.vqa_rules import vqa_phrases

FULL = {
    "nouns": ["cat", "dog"],
    "attr_nouns": ["black cat"],
    "spatial_info": {"obj1": "cat", "obj2": "dog", "locality": "left of"},
    "numeracy_info": [{"obj_name": "cat", "num": 2}],
}
OPTIONAL = list(FULL)


def _rows():
    """Every task type with every subset of the metadata fields."""
    for task in TASK_TYPES:
        for k in range(len(OPTIONAL) + 1):
            for present in itertools.combinations(OPTIONAL, k):
                yield task, {"task_type": task, **{f: FULL[f] for f in present}}


def _table_refuses(name: str, meta: dict) -> bool:
    return any(not any(meta.get(alt) for alt in f.split("|")) for f in NEEDS[name].fields_for(meta["task_type"]))


def _raises(rule, meta: dict) -> bool:
    try:
        rule(meta)
    except ScorerInputError:
        return True
    return False


@pytest.mark.parametrize("name, rule", [("gdino", check_metadata), ("git", vqa_phrases)])
def test_declared_fields_match_the_scorers_rule(name, rule):
    for _, meta in _rows():
        assert _table_refuses(name, meta) == _raises(rule, meta), (name, meta)


def test_git_judges_exactly_the_rows_its_rule_asks_questions_about():
    for task, meta in _rows():
        if not _raises(vqa_phrases, meta):
            record = PromptRecord("a black cat", task, meta.get("nouns", []), meta.get("attr_nouns"))
            assert NEEDS["git"].judges(record) == (vqa_phrases(meta) is not None), task


def test_colour_judges_prompts_with_a_colour_word():
    assert NEEDS["color"].judges(PromptRecord("a grey cat", "color", ["cat"]))
    assert not NEEDS["color"].judges(PromptRecord("a cat left of a dog", "spatial", ["cat", "dog"]))


def test_row_problems_name_the_request_and_the_scorer():
    spatial = PromptRecord("a cat left of a dog", "spatial", ["cat", "dog"])  # no spatial_info
    (problem,) = row_problems(spatial, ["color"])
    assert "spatial_info" in problem  # the reward service refuses it, whichever scorer is enabled
    ok = PromptRecord("a black cat", "color", ["cat"], attr_nouns=["black cat"])
    assert row_problems(ok, ["color", "gdino", "git", "objects", "hps"]) == []
    assert row_problems(PromptRecord("a cat", "", ["cat"]), ["color"]) == [
        f"unknown task_type ''; expected one of {', '.join(TASK_TYPES)}"
    ]
    # every scorer of the registry declares its needs
    from rewards.config import SCORER_NAMES

    assert set(NEEDS) == set(SCORER_NAMES)
