"""Prompt data: T2I-R1's training file, Parquet, malformed rows, and the deterministic per-step schedule."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.data import PromptSchedule
from core.prompt_file import DataError, load_prompts


def test_reads_t2i_r1_training_file(shared_data):
    ps = load_prompts(str(shared_data / "t2i_r1_train.jsonl"))
    assert len(ps.records) == 7223 and not ps.skipped
    first = ps.records[0]
    assert first.prompt == "a photo of a car below a zebra" and first.task_type == "spatial"
    assert first.spatial_info == {"obj1": "car", "obj2": "zebra", "locality": "below"}
    counts = {}
    for r in ps.records:
        counts[r.task_type] = counts.get(r.task_type, 0) + 1
    # docs/ALGORITHM.md §9
    assert counts == {
        "spatial": 2195,
        "numeracy": 1172,
        "color": 879,
        "complex": 700,
        "non": 700,
        "texture": 695,
        "shape": 682,
        "object": 200,
    }
    num = next(r for r in ps.records if r.numeracy_info)
    assert all(isinstance(x["num"], int) for x in num.numeracy_info)
    assert [r.index for r in ps.records[:3]] == [0, 1, 2]


def test_builtin_prompt_set():
    ps = load_prompts(None)
    assert len(ps.records) >= 64
    assert all(r.nouns and r.task_type == "color" for r in ps.records)


def test_parquet_equals_jsonl(tmp_path, shared_data):
    rows = [json.loads(l) for l in (shared_data / "t2i_r1_train.jsonl").read_text().splitlines()[:50]]
    src = tmp_path / "p.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    assert load_prompts(str(tmp_path / "p.parquet")).records == load_prompts(str(src)).records


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("{not json", "invalid JSON"),
        ('{"nouns": ["cat"]}', "missing or empty field 'prompt'"),
        ('{"prompt": "a cat", "nouns": "cat"}', "'nouns' must be a non-empty list"),
        ('{"prompt": "x", "spatial_info": {"obj1": "a"}}', "'spatial_info' must have"),
        ('{"prompt": "x", "numeracy_info": [{"obj_name": "a", "num": "two"}]}', "'numeracy_info' must be"),
        ('["a list"]', "expected a JSON object"),
    ],
)
def test_malformed_row_names_its_line(tmp_path, bad, reason):
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a red cat", "nouns": ["cat"]}\n\n' + bad + '\n{"prompt": "a dog", "nouns": ["dog"]}\n')
    with pytest.raises(DataError, match=rf"d.jsonl: line 3: .*{reason}.*on_malformed=skip"):
        load_prompts(str(f))
    ps = load_prompts(str(f), on_malformed="skip")
    assert [r.prompt for r in ps.records] == ["a red cat", "a dog"]
    assert [n for n, _ in ps.skipped] == [3] and reason.split("'")[0] in ps.skipped[0][1]
    assert [r.index for r in ps.records] == [0, 1]


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_prompts(str(tmp_path / "none.jsonl"))
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no usable prompts"):
        load_prompts(str(tmp_path / "e.jsonl"))


def test_schedule_covers_each_epoch_once_and_is_deterministic():
    recs = load_prompts(None).records[:10]
    s = PromptSchedule(recs, prompts_per_step=4, seed=1)
    seq = [r.index for t in range(1, 6) for r in s.batch(t)]  # steps 1..5: 20 prompts = two epochs
    assert sorted(seq[:10]) == list(range(10)) and sorted(seq[10:]) == list(range(10))
    assert seq[:10] != seq[10:]  # a fresh permutation per epoch
    assert seq[:10] != list(range(10))  # shuffled
    # Resuming means asking for step t again in a new object: same prompts, in any order of calls.
    s2 = PromptSchedule(recs, prompts_per_step=4, seed=1)
    assert [r.index for r in s2.batch(4)] == seq[12:16]
    assert [r.index for r in PromptSchedule(recs, 4, seed=2).batch(1)] != seq[:4]
    assert [r.index for r in PromptSchedule(recs, 4, seed=1, shuffle=False).batch(2)] == [4, 5, 6, 7]
    assert s.epoch_of(3) == 0 and s.epoch_of(4) == 1  # step 3 takes prompts 9-12 of the sequence: it starts in epoch 0
    with pytest.raises(ValueError, match="count from 1"):
        s.batch(0)
