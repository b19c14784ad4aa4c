"""T2I-CompBench's text rules on real val prompts through spaCy (en_core_web_sm 3.8): questions, objects,
localities and counts worked by hand, and the 722-label gate statistic EVAL.md reports for the spatial prompts."""

from __future__ import annotations

import pytest

from evaluation.compbench import spacy_parse
from evaluation.compbench.detection_rules import LabelGate
from evaluation.compbench.files import load_new_objects, load_unidet_labels
from evaluation.compbench.prompt_rules import (
    LOCALITIES_2D,
    LOCALITIES_3D,
    as_detector_name,
    blip_questions,
    complex_spatial_objects,
    find_locality,
    first_last_nouns,
    numeracy_objects,
    without_adjectives,
)
from tests.tiny_compbench_models import require_spacy


@pytest.fixture(scope="module")
def parse():
    require_spacy()
    return spacy_parse.parse


@pytest.mark.parametrize(
    "prompt, questions",
    [
        ("a green bench and a blue bowl", ["a green bench?", "a blue bowl?"]),
        # "top" is one of the dropped chunks
        ("The red hat was on top of the brown coat rack.", ["the red hat?", "the brown coat rack?"]),
    ],
)
def test_blip_questions(parse, prompt, questions):
    assert blip_questions(parse(prompt).noun_chunks) == questions


def test_complex_prompt(parse):
    tokens = parse("The red hat was on top of the brown coat rack.").tokens
    assert without_adjectives(tokens) == "The hat was on top of the coat rack ."
    assert complex_spatial_objects(tokens) == ["hat", "coat"]


def test_simple_spatial_prompts(parse):
    prompt = "a girl on the top of a frog"
    obj1, obj2 = first_last_nouns(parse(prompt).tokens)
    assert (as_detector_name(obj1), as_detector_name(obj2), find_locality(prompt, LOCALITIES_2D)) == (
        "person",
        "frog",
        "on the top of",
    )
    prompt = "a dog in front of a desk"
    assert (*first_last_nouns(parse(prompt).tokens), find_locality(prompt, LOCALITIES_3D)) == (
        "dog",
        "desk",
        "in front of",
    )


def test_numeracy_prompt(parse, shared_data):
    singular, plural = load_new_objects(shared_data / "t2i_compbench/new_objects.txt")
    assert numeracy_objects(parse("four cameras and three horses").tokens, singular, plural) == (
        ["camera", "horse"],
        [4, 3],
    )
    assert numeracy_objects(parse("two boys").tokens, singular, plural) == (["boy"], [2])


def test_every_numeracy_val_prompt_parses(parse, shared_data):
    d = shared_data / "t2i_compbench"
    singular, plural = load_new_objects(d / "new_objects.txt")
    for line in (d / "numeracy_val.txt").read_text().splitlines():
        objects, counts = numeracy_objects(parse(line).tokens, singular, plural)
        assert len(objects) == len(counts) >= 1, line


def test_spatial_label_gate_statistic(parse, shared_data):
    """EVAL.md: 100 of the 300 spatial val prompts have an object that is never an exact UniDet label."""
    d = shared_data / "t2i_compbench"
    gate = LabelGate(load_unidet_labels(d / "unidet_labels_722.json"))
    blocked = 0
    for line in (d / "spatial_val.txt").read_text().splitlines():
        objs = [as_detector_name(o) for o in first_last_nouns(parse(line).tokens)]
        blocked += not all(gate.exact(o) for o in objs)
    assert blocked == 100
