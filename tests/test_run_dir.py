"""Run directories: a new run needs an empty output_dir (or overwrite=true); resume=true reloads the saved config
and takes only the changes that keep the run's meaning; inside a Ray job a relative output_dir is made durable.
All through `python -m cluster.run`'s main, which answers before any Ray or actor starts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.config import load_config, to_yaml
from cluster.run import main
from cluster.run_dir import RESUMABLE, RunDirError, delete_run, prepare_run_dir, resolve_output_dir


def _saved_run(root: Path, *overrides: str) -> str:
    """A run directory as a run leaves it: its config.yaml (and some outputs)."""
    root.mkdir(parents=True)
    text = to_yaml(load_config(None, [f"output_dir={root}", *overrides]))
    (root / "config.yaml").write_text(text)
    (root / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward_mean": 0.1}) + "\n")
    (root / "checkpoints").mkdir()
    return text


def _prepare(*overrides: str):
    return prepare_run_dir(load_config(None, list(overrides)), None, list(overrides))


def test_new_run_refuses_a_directory_that_holds_a_run(tmp_path, capsys):
    root = tmp_path / "run"
    text = _saved_run(root)
    assert main([f"output_dir={root}", "trainer.steps=3"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "resume=true" in err and "overwrite=true" in err
    assert (root / "config.yaml").read_text() == text and (root / "metrics.jsonl").is_file()  # untouched


def test_new_run_refuses_a_non_empty_directory_that_is_no_run_even_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for overwrite in ("false", "true"):
        with pytest.raises(RunDirError, match="holds no run"):
            _prepare(f"output_dir={tmp_path}", f"overwrite={overwrite}")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_the_previous_run_once_the_checks_pass(tmp_path, capsys):
    root = tmp_path / "run"
    _saved_run(root)
    cfg, notes, replace = _prepare(f"output_dir={root}", "overwrite=true")
    assert replace and cfg.output_dir == str(root) and (root / "config.yaml").is_file()  # deleted only later
    # a later check fails (a scorer without weights): the previous run is still there
    assert main([f"output_dir={root}", "overwrite=true", "rewards.hps.enabled=true"]) == 2
    assert "rewards.hps.path is not set" in capsys.readouterr().err and (root / "metrics.jsonl").is_file()
    assert "deleted the previous run" in delete_run(root) and list(root.iterdir()) == []
    cfg, notes, replace = _prepare(f"output_dir={root}")  # empty now: a new run may start
    assert (notes, replace) == ([], False)


def test_resume_reloads_the_saved_config_and_takes_allowed_changes(tmp_path):
    root = tmp_path / "run"
    _saved_run(root, "trainer.steps=7", "rollout.group_size=3", "seed=5")
    cfg, notes, _ = _prepare(f"output_dir={root}", "resume=true")
    # the saved run's fields, not the defaults (40 steps, group 4, seed 0)
    assert (cfg.trainer.steps, cfg.rollout.group_size, cfg.seed, cfg.resume) == (7, 3, 5, True) and notes == []

    cfg, notes, _ = _prepare(
        f"output_dir={root}",
        "resume=true",
        "trainer.steps=12",
        "rewards.color.replicas=2",
        "logging.image_every=1",
        "cluster.dashboard_port=9999",
    )
    assert (cfg.trainer.steps, cfg.rewards.color.replicas, cfg.logging.image_every) == (12, 2, 1)
    assert (cfg.rollout.group_size, cfg.seed) == (3, 5)
    assert any(n.startswith("resume: trainer.steps 7 -> 12") for n in notes) and len(notes) == 4


def test_resume_refuses_changes_of_meaning_listing_all_and_keeps_config_yaml(tmp_path, capsys):
    root = tmp_path / "run"
    text = _saved_run(root, "trainer.steps=7")
    args = [f"output_dir={root}", "resume=true", "rollout.group_size=6", "learner.optim.lr=1e-3", "trainer.steps=9"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "2 field(s) differ" in err
    assert "rollout.group_size: 8 (saved) -> 6 (asked)" in err and "learner.optim.lr: 0.0001 (saved) -> 0.001" in err
    assert "trainer.steps" not in err.split("(a resumed run may change only")[0]  # allowed: not listed as refused
    assert (root / "config.yaml").read_text() == text


def test_resume_compares_a_config_file_given_again_as_a_whole(tmp_path):
    root = tmp_path / "run"
    _saved_run(root)  # the embedded default
    cfg = load_config("tiny", [f"output_dir={root}", "resume=true", "rollout.group_size=2"])
    with pytest.raises(RunDirError, match="rollout.group_size: 8 \\(saved\\) -> 2"):
        prepare_run_dir(cfg, "tiny", [f"output_dir={root}", "resume=true", "rollout.group_size=2"])


def test_resume_needs_a_saved_run_and_excludes_overwrite(tmp_path):
    with pytest.raises(RunDirError, match="no run to resume"):
        _prepare(f"output_dir={tmp_path / 'none'}", "resume=true")
    with pytest.raises(RunDirError, match="contradict"):
        _prepare(f"output_dir={tmp_path}", "resume=true", "overwrite=true")


def test_the_allow_list_keeps_meaning_fields_out():
    from cluster.run_dir import _reason

    for key in (
        "trainer.steps",
        "logging.image_every",
        "cluster.address",
        "rewards.gdino.replicas",
        "rewards.color.num_cpus",
        "rollout.workers",
        "rollout.cot.engine",
        "learner.logprob_chunk_tokens",
    ):
        assert _reason(key), key
    for key in (
        "seed",
        "data.path",
        "data.shuffle",
        "model.path",
        "rollout.group_size",
        "rollout.cot.temperature",
        "trainer.prompts_per_step",
        "trainer.mode",
        "rewards.color.enabled",
        "rewards.gdino.path",
        "rewards.ensemble",
        "learner.ranks",
        "learner.optim.lr",
        "learner.loss.beta",
        "learner.loss.is_cap",
        "learner.loss.is_correction",
        "learner.zero3_persistence_threshold",
    ):
        assert _reason(key) is None, key
    assert all(reason for reason in RESUMABLE.values())  # every allowed field says why


def test_relative_output_dir_inside_a_ray_job_goes_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    assert resolve_output_dir("outputs/run") == (tmp_path / "outputs" / "run", "")
    # what the job supervisor hands a job's driver (ray job submit --working-dir .)
    monkeypatch.setenv(
        "RAY_JOB_CONFIG_JSON_ENV_VAR",
        json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_0123.zip"}, "metadata": {}}),
    )
    path, note = resolve_output_dir("outputs/run")
    assert path == tmp_path / "home" / "t2i-r1-ray" / "outputs" / "run" and "temporary copy" in note
    assert resolve_output_dir(str(tmp_path / "abs")) == (tmp_path / "abs", "")  # an absolute one is kept
    # a job without a working directory runs where it was started: relative stays relative to it
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {}, "metadata": {}}))
    assert resolve_output_dir("outputs/run") == (tmp_path / "outputs" / "run", "")
