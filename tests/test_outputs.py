"""RunOutputs: a step's metrics row replaces the earlier row of that step; resume forgets later steps."""

from __future__ import annotations

import pyarrow.parquet as pq

from cluster.outputs import RunOutputs


def test_metric_rows_replace_and_truncate(tmp_path):
    out = RunOutputs(tmp_path)
    for step in (0, 1, 2):
        out.write_metrics({"step": step, "reward_mean": step / 10})
    out.write_metrics({"step": 1, "reward_mean": 0.5})  # step 1 again (a resumed run): replaced, not added
    assert [(r["step"], r["reward_mean"]) for r in pq.read_table(out.metrics_path).to_pylist()] == [
        (0, 0.0),
        (1, 0.5),
        (2, 0.2),
    ]
    out.truncate_after(0)
    assert pq.read_table(out.metrics_path).to_pylist() == [{"step": 0, "reward_mean": 0.0}]
    assert out.metric_rows() == [{"step": 0, "reward_mean": 0.0}]


def test_metrics_keep_every_column_whenever_it_first_appears(tmp_path):
    out = RunOutputs(tmp_path)
    out.write_metrics({"step": 1, "reward_mean": 0.1})
    out.write_metrics({"step": 2, "reward_mean": 0.2, "eval_score": 0.7})  # a column first seen at step 2
    out.write_metrics({"step": 3, "reward_mean": 0.3, "restarts": 1})  # and another at step 3, without eval_score
    table = pq.read_table(out.metrics_path)
    assert table.column_names == ["step", "reward_mean", "eval_score", "restarts"]
    assert table.to_pylist() == [
        {"step": 1, "reward_mean": 0.1, "eval_score": None, "restarts": None},
        {"step": 2, "reward_mean": 0.2, "eval_score": 0.7, "restarts": None},
        {"step": 3, "reward_mean": 0.3, "eval_score": None, "restarts": 1},
    ]
    assert str(table.schema.field("eval_score").type) == "double"
    assert str(table.schema.field("restarts").type) == "int64"
