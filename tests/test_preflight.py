"""What `python -m cluster.run` checks before any actor starts: the data against the enabled scorers' needs, the
scorers' weights, the dashboard port and the cluster's resources; each failure answered in one message."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import numpy as np
import pytest

from cluster.config import load_config
from cluster.preflight import (
    SKIPPED_ROWS_FILE,
    StartupError,
    check_resources,
    free_dashboard_port,
    load_data,
    prepare,
    silent_rows_warning,
)
from cluster.run import main
from core.prompt_file import DataError

GOOD = {"prompt": "a red car", "nouns": ["car"], "task_type": "color"}
SPATIAL = {
    "prompt": "a cat left of a dog",
    "nouns": ["cat", "dog"],
    "task_type": "spatial",
    "spatial_info": {"obj1": "cat", "obj2": "dog", "locality": "left of"},
}
NUMERACY = {
    "prompt": "two cats",
    "nouns": ["cat"],
    "task_type": "numeracy",
    "numeracy_info": [{"obj_name": "cat", "num": 2}],
}


def _write(path: Path, rows: list) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


@pytest.fixture
def root_handlers():
    """prepare() adds the driver log's handler to the root logger: take it off again."""
    before = list(logging.getLogger().handlers)
    yield
    for h in logging.getLogger().handlers:
        if h not in before:
            logging.getLogger().removeHandler(h)
            h.close()


# ------------------------------------------------------------------------------------------------ data


def test_every_unusable_row_is_reported_at_once(tmp_path):
    path = _write(
        tmp_path / "d.jsonl",
        [
            GOOD,
            _without(SPATIAL, "spatial_info"),  # line 2: the reward service refuses a spatial row without it
            "{broken",  # line 3
            _without(NUMERACY, "numeracy_info"),  # line 4
            SPATIAL,
            {"prompt": "a cat", "nouns": ["cat"]},  # line 6: no task_type
            {"prompt": "a cat", "task_type": "object"},  # line 7: no nouns
        ],
    )
    cfg = load_config(None, [f"data.path={path}"])
    with pytest.raises(DataError) as info:
        load_data(cfg)
    msg = str(info.value)
    assert "5 unusable rows" in msg
    lines = [line.strip() for line in msg.splitlines()[1:]]
    assert [int(line.split(":")[0].split()[1]) for line in lines] == [2, 3, 4, 6, 7]
    assert "spatial_info" in lines[0] and "invalid JSON" in lines[1] and "numeracy_info" in lines[2]
    assert "task_type ''" in lines[3] and "nouns" in lines[4]


def test_many_unusable_rows_list_the_first_ten_and_count_them(tmp_path):
    path = _write(tmp_path / "d.jsonl", [GOOD] + [_without(SPATIAL, "spatial_info")] * 25)
    with pytest.raises(DataError) as info:
        load_data(load_config(None, [f"data.path={path}"]))
    msg = str(info.value)
    assert "25 unusable rows (the first 10 below)" in msg and "... and 15 more" in msg
    assert msg.count("\n  line ") == 10 and "line 2:" in msg and "line 11:" in msg and "line 12:" not in msg


def test_skip_mode_lists_the_skipped_rows_in_the_run_logs_and_warns_in_the_driver_log(tmp_path, root_handlers):
    data = _write(tmp_path / "d.jsonl", [GOOD, _without(SPATIAL, "spatial_info"), SPATIAL, "{broken", NUMERACY])
    out = tmp_path / "run"
    run = prepare(load_config(None, [f"output_dir={out}", f"data.path={data}", "data.on_malformed=skip"]), None, [])
    assert [r.prompt for r in run.data.records] == [GOOD["prompt"], SPATIAL["prompt"], NUMERACY["prompt"]]
    assert [r.index for r in run.data.records] == [0, 1, 2]
    listed = (out / "logs" / SKIPPED_ROWS_FILE).read_text().splitlines()
    assert [line.split(":")[0] for line in listed[1:]] == ["line 2", "line 4"]
    for h in logging.getLogger().handlers:
        h.flush()
    driver = (out / "logs" / "driver.log").read_text()
    assert "skipped 2 unusable rows" in driver and SKIPPED_ROWS_FILE in driver


def test_the_t2i_r1_file_with_the_colour_reward_warns_how_many_rows_teach_nothing(shared_data):
    from rewards.scorers.color import ColorScorer

    cfg = load_config(None, [f"data.path={shared_data / 't2i_r1_train.jsonl'}"])  # embedded default: colour only
    records = load_data(cfg).records
    # reference: the colour scorer itself, on two different random images (its score is continuous in the pixels:
    # equal scores mean it had nothing to judge)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(2)]
    scorer = ColorScorer()
    silent = sum(1 for r in records if len({s.score for s in scorer.score(r, images)}) == 1)
    warning = silent_rows_warning(records, cfg.rewards)
    assert warning is not None
    assert f"{silent} of {len(records)} rows ({silent / len(records):.0%})" in warning
    assert 0.8 < silent / len(records) < 0.9  # T2I-R1's file: mostly prompts without a colour word
    assert "numeracy 1172/1172" in warning  # no numeracy prompt names a colour
    for name in ("objects (embedded)", "gdino (needs rewards.gdino.path)", "hps", "orm", "clip", "git"):
        assert name in warning, name
    assert f"objects (embedded) would judge {silent}" in warning  # every such row has nouns
    cfg.rewards.objects.enabled = True
    assert silent_rows_warning(records, cfg.rewards) is None


# ------------------------------------------------------------------------------------------------ config


def test_an_enabled_scorer_without_weights_fails_in_one_line_before_anything_starts(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([f"output_dir={out}", "rewards.hps.enabled=true"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: rewards.hps.enabled=true, but rewards.hps.path is not set") and err.count("\n") == 1
    assert not out.exists()  # nothing was written, nothing started
    (tmp_path / "gdino").mkdir()
    (tmp_path / "gdino" / "config.json").write_text("{}")
    assert main([f"output_dir={out}", "rewards.gdino.enabled=true", f"rewards.gdino.path={tmp_path / 'gdino'}"]) == 2
    err = capsys.readouterr().err
    assert "is incomplete, missing" in err and "model.safetensors" in err and err.count("\n") == 1


def test_a_busy_dashboard_port_is_swapped_for_a_free_one():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        cfg = load_config(None, [f"cluster.dashboard_port={busy}"])
        note = free_dashboard_port(cfg)
        assert note is not None and f"{busy} is in use" in note and str(cfg.cluster.dashboard_port) in note
        assert cfg.cluster.dashboard_port != busy
        with socket.socket() as t:
            t.bind(("127.0.0.1", cfg.cluster.dashboard_port))  # the new one is free
        # the nearest free one above (not an ephemeral port from bind(0), which Ray's own processes may take first)
        assert busy < cfg.cluster.dashboard_port < busy + 100
        for p in range(busy + 1, cfg.cluster.dashboard_port):
            with socket.socket() as t, pytest.raises(OSError):
                t.bind(("127.0.0.1", p))
    cfg = load_config(None, [f"cluster.dashboard_port={busy}"])
    assert free_dashboard_port(cfg) is None and cfg.cluster.dashboard_port == busy  # free again: kept
    joined = load_config(None, ["cluster.address=127.0.0.1:6379", f"cluster.dashboard_port={busy}"])
    assert free_dashboard_port(joined) is None  # a joined cluster's dashboard is not ours to start


def test_actors_that_do_not_fit_the_cluster_are_refused_with_the_breakdown():
    cfg = load_config(None, ["learner.ranks=2", "learner.num_cpus_per_rank=1", "rewards.color.replicas=3"])
    check_resources(cfg, {"CPU": 4.0})  # 2 + 0.5 + 0.75 = 3.25 fits
    with pytest.raises(StartupError) as info:
        check_resources(cfg, {"CPU": 3.0})
    assert "needs 3.25 CPU (learner 2, rollout 0.5, reward color 0.75) but the Ray cluster has 3" in str(info.value)
    gpu = load_config(None, ["rollout.num_gpus_per_worker=1"])
    with pytest.raises(StartupError, match="needs 1 GPU .*has 0"):
        check_resources(gpu, {"CPU": 2.0})
