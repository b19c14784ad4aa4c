"""The README's commands, run as written (tests/readme.py lists the few substitutions a test machine needs and
the documented overrides that make the runs short). Blocks that start whole runs are slow; the cluster section
and `make run` are run by tests/test_cluster.py, which already starts those runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.readme import BLOCKS, REPO, marked_blocks, script


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `python` of this venv
    env["PYTHONPATH"] = str(REPO)  # as `make` exports it
    env.pop("RAY_ADDRESS", None)
    return env


def _bash(command: str, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout_s
    )


def test_every_bash_block_is_marked_and_run_by_a_test():
    blocks = marked_blocks()
    assert set(blocks) == set(BLOCKS), "README blocks and tests/readme.py's BLOCKS differ"
    for name, block in BLOCKS.items():
        path, _, test = block.run_by.partition("::")
        test = test.split()[0]
        assert f"def {test}(" in (REPO / path).read_text(), f"block {name!r}: {block.run_by} does not exist"


def test_commands_that_need_weights_stop_at_the_check_naming_them(tmp_path):
    # every key of the documented command is known (an unknown key fails before the paths are checked); what
    # stops it is the first weights directory this machine lacks
    if Path("/models/Janus-Pro-7B").exists():
        pytest.skip("this machine has the weights the README names: the command would start a real run")
    (command,) = script("real-weights", out=str(tmp_path / "out"))
    r = _bash(command, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("config error: model.path: directory '/models/Janus-Pro-7B' does not exist"), r.stderr
    (command,) = script("reward-server")
    r = _bash(command, tmp_path)  # its flags parse; it needs the rewards.yaml it names
    assert r.returncode == 2 and "'rewards.yaml': no such file" in r.stderr, r.stdout + r.stderr


@pytest.mark.slow  # two short runs: about 1.5 minutes on an idle 2-core machine
def test_configuration_commands(tmp_path):
    out = tmp_path / "long"
    first, resume = script("configuration", out=str(out))
    r = _bash(first, tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [row["step"] for row in rows] == [1] and rows[0]["reward_color_replicas"] == 2

    again = _bash(first, tmp_path)  # the same command again: a new run refuses the directory that holds one
    assert again.returncode == 2 and "already holds a run" in again.stderr, again.stderr

    r = _bash(resume, tmp_path)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert "resumed from the checkpoint of step 1" in log and "step 2/2" in r.stdout
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [row["step"] for row in rows] == [1, 2]
    # the resumed step ran with the saved config (8 prompts of 8 samples, 2 colour replicas), not the defaults
    assert pq.read_table(out / "rollouts" / "step_000002.parquet").num_rows == 64
    assert rows[1]["reward_color_replicas"] == 2


def _serve(scorer: str, config: Path, cwd: Path) -> tuple[subprocess.Popen, str]:
    """`python -m rewards.serve` on a free port; returns the process and the host:port it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rewards.serve", "--scorer", scorer, "--port", "0", "--config", str(config)],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in proc.stdout:  # bounded: the process prints this line or exits (the test's timeout covers a hang)
        if line.startswith("serving "):
            return proc, line.split()[-1]
    raise AssertionError(f"rewards.serve --scorer {scorer} exited with {proc.wait()} before serving")


@pytest.mark.slow  # a vLLM start-up for the CoTs, and two reward servers: about a minute on an idle machine
def test_generate_and_score_commands(tiny_model_cfg, tmp_path):
    from policy.model import tiny_janus_dir

    out = tmp_path / "generate"
    first, needs_weights = script("generate", checkpoint=str(tiny_janus_dir(tiny_model_cfg)), out=str(out))
    r = _bash(first, tmp_path)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    images = sorted((out / "images").glob("*.png"))
    assert len(images) == 4 and (out / "grid.png").is_file()
    r = _bash(needs_weights, tmp_path)  # flags and overrides parse; what stops it is the missing weights directory
    assert r.returncode == 2 and "model.path: directory '/models/Janus-Pro-7B' does not exist" in r.stderr, r.stderr

    config = tmp_path / "rewards.yaml"
    config.write_text("rewards:\n  token: readme-test-token\n")
    servers = [_serve(scorer, config, tmp_path) for scorer in ("color", "objects")]
    try:
        (command,) = script(
            "score", server1=servers[0][1], server2=servers[1][1], config=str(config), images=str(out / "images")
        )
        r = _bash(command, tmp_path)
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    import re

    for image in images:  # one line per image with both servers' scores: "{path}  color 0.1234  objects 0.5678"
        (line,) = [line for line in r.stdout.splitlines() if line.startswith(str(image))]
        assert re.fullmatch(rf"{re.escape(str(image))}  (color|objects) [0-9.]+  (color|objects) [0-9.]+", line), line


@pytest.mark.slow  # one prompt per category of the embedded evaluation, drawn and scored: a few minutes
def test_evaluation_commands(tmp_path):
    if Path("/models/Janus-Pro-7B").exists():
        pytest.skip("this machine has the weights the README names: the command would start a real evaluation")
    out = tmp_path / "eval"
    embedded, real = script("evaluation", out=str(out))
    r = _bash(embedded, REPO, timeout_s=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    assert (out / "report.md").is_file() and (out / "report.json").is_file()
    r = _bash(real, tmp_path)
    assert r.returncode == 2 and "model.path: directory '/models/Janus-Pro-7B' does not exist" in r.stderr, r.stderr
