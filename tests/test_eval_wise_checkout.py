"""Reading a WISE checkout: prompts of both protocols and the judge rubric from the judge script, on a fake
checkout with made-up prompts and rubric (WISE's own text is never in this project), and the errors for a
checkout without the expected files or with a script of another shape."""

from __future__ import annotations

import json

import pytest

from evaluation.local_files import MissingFilesError
from evaluation.wise.checkout import WiseDataError, eval_items, load_prompts, load_rubric
from evaluation.wise.rubric import Field, RubricFormatError, read_rubric
from evaluation.wise.variants import LEGACY, VERIFIED
from tests.tiny_eval_models import FAKE_JUDGE_SCRIPT, fake_wise_checkout


@pytest.fixture
def checkout(tmp_path):
    return fake_wise_checkout(tmp_path / "WISE")


def test_loads_prompts_of_both_protocols(checkout):
    verified = load_prompts(checkout, VERIFIED)
    assert [(p.prompt_id, p.category) for p in verified] == [
        (1, "Culture"),
        (2, "Culture"),
        (401, "Time"),
        (521, "Space"),
        (641, "Biology"),
        (761, "Physics"),
        (881, "Chemistry"),
    ]
    assert verified[0].prompt == "a lantern for the autumn fair"
    assert verified[0].record["Explanation"] == "paper lantern"
    legacy = load_prompts(checkout, LEGACY)
    # 568 is Space in the legacy ranges (Time ends at 567), 701 Biology
    assert [(p.prompt_id, p.category) for p in legacy] == [
        (1, "Culture"),
        (401, "Time"),
        (568, "Space"),
        (701, "Biology"),
        (801, "Physics"),
        (901, "Chemistry"),
    ]
    items = eval_items(verified)
    assert [i.prompt_index for i in items] == list(range(7)) and items[2].category == "Time"
    assert items[2].metadata["prompt_id"] == 401 and items[2].benchmark == "wise" and items[2].sample_index == 0


def test_rubric_renders_the_scripts_messages(checkout):
    rubric = load_rubric(checkout, VERIFIED)
    assert rubric.fields == {"Prompt", "Explanation"}
    record = {"prompt_id": 7, "Prompt": 'a "quoted" thing', "Explanation": "why {not}"}
    msgs = rubric.render(record)
    assert msgs == [
        {"role": "system", "content": [{"type": "text", "text": "You grade pictures."}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": 'Give Score: 0 or Score: 1.\nAsked for: "a "quoted" thing"\n'
                    'Meaning: "why {not}"\nReply with one line.',
                },
                {"type": "image"},
            ],
        },
    ]
    # the same text as the script's own function gives (executed here on our made-up script only)
    namespace = {}
    exec(FAKE_JUDGE_SCRIPT.replace("{RUBRIC_LINE}", "Give Score: 0 or Score: 1."), namespace)
    original = namespace["build_evaluation_messages"](record, "IMG")
    assert [[c.get("text") for c in m["content"]] for m in original] == [
        [c.get("text") for c in m["content"]] for m in msgs
    ]
    assert "Consistency" in load_rubric(checkout, LEGACY).render(record)[1]["content"][0]["text"]
    with pytest.raises(KeyError, match=r"needs fields \['Explanation'\]"):
        rubric.render({"Prompt": "x"})


def test_missing_files_are_listed(tmp_path, checkout):
    with pytest.raises(
        MissingFilesError,
        match=r"WISE checkout .*does not exist.*data_verified/cultural_common_sense"
        r"_verified\.json.*vllm_eval\.py.*PKU-YuanGroup/WISE",
    ):
        load_prompts(tmp_path / "nowhere", VERIFIED)
    (checkout / "data_verified" / "natural_science_verified.json").unlink()
    (checkout / "vllm_eval.py").unlink()
    with pytest.raises(
        MissingFilesError,
        match=r"incomplete: missing data_verified/natural_science_verified\.json; "
        r"vllm_eval\.py\. Clone https://github\.com/PKU-YuanGroup/WISE",
    ):
        load_rubric(checkout, VERIFIED)
    load_prompts(checkout, LEGACY)  # the legacy files are all there


def test_bad_prompt_files(checkout):
    rel = "data_verified/natural_science_verified.json"
    (checkout / rel).write_text(json.dumps([{"prompt_id": 2, "Prompt": "x", "Explanation": "y"}]))
    with pytest.raises(WiseDataError, match="prompt_id 2 appears twice"):
        load_prompts(checkout, VERIFIED)
    (checkout / rel).write_text(json.dumps([{"prompt_id": 641, "Prompt": "x"}]))
    with pytest.raises(WiseDataError, match=r"lacks \['Explanation'\]"):
        load_prompts(checkout, VERIFIED)
    (checkout / rel).write_text(json.dumps([{"prompt_id": 1641, "Prompt": "x", "Explanation": "y"}]))
    with pytest.raises(ValueError, match="prompt_id 1641 is outside 1-1000"):
        load_prompts(checkout, VERIFIED)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.replace("def build_evaluation_messages", "def build_messages"), "no function build_evaluation_"),
        (
            lambda s: s.replace("prompt_data['Explanation']", "prompt_data['Explanation'].upper()"),
            r":\d+: an f-string field other than prompt_data\['<key>'\]",
        ),
        (lambda s: s.replace("prompt_data['Prompt']", "prompt_data['Prompt']!r"), "an f-string field other than"),
        (lambda s: s.replace('"You grade pictures."', "SYSTEM_TEXT"), "expected a string or f-string as the text"),
        (
            lambda s: s.replace(
                '{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image_base64}"}}',
                '{"type": "text", "text": "no image"}',
            ),
            "has no image part",
        ),
        (
            lambda s: s.replace("    return [", "    messages = [").replace("    ]\n", "    ]\n    return messages\n"),
            "must return one literal list",
        ),
    ],
)
def test_judge_script_of_another_shape_is_refused(tmp_path, change, message):
    path = tmp_path / "vllm_eval.py"
    path.write_text(change(FAKE_JUDGE_SCRIPT.replace("{RUBRIC_LINE}", "Grade it.")))
    with pytest.raises(RubricFormatError, match=message):
        read_rubric(path)


def test_rubric_pieces(tmp_path):
    path = tmp_path / "s.py"
    path.write_text(FAKE_JUDGE_SCRIPT.replace("{RUBRIC_LINE}", "Grade it."))
    ((role, (part, image)),) = read_rubric(path).messages[1:]
    assert role == "user" and image.kind == "image"
    assert part.pieces == (
        'Grade it.\nAsked for: "',
        Field("Prompt"),
        '"\nMeaning: "',
        Field("Explanation"),
        '"\nReply with one line.',
    )
