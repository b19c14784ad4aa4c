"""benchmarks/gpu_check.sh, the prepared GPU run, checked here with the GPU parts swapped for its CPU dry run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, results_io

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
STAGES = ["tests", "bench_gpu_1b", "step_1b", "bench_gpu_7b", "step_7b"]
ENTRIES = {f"gpu_sampler_image_tokens_per_s_{s}" for s in ("1b", "7b")} | {
    f"gpu_step_images_per_s_{s}" for s in ("1b", "7b")
}


def _run(out: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    # TMPDIR: the carried wheels (if any) install under the test's folder, not a shared /tmp path
    full_env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(out.parent), **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(out), *args], cwd="/", env=full_env, capture_output=True, text=True, timeout=3600
    )


def _stages(out: Path) -> list[list[str]]:
    return [line.split("\t") for line in (out / "stages.tsv").read_text().splitlines()]


@pytest.mark.slow
def test_dry_run_runs_every_stage_and_writes_logs_and_entries(tmp_path):
    out = tmp_path / "out"
    res = _run(out, "--dry-run", GPU_CHECK_SECONDS="3000", GPU_CHECK_BUDGET_SCALE="10")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "entries.json",
        "gpu_check.log",
        "stages.tsv",
        "summary.txt",
        "tests.xml",
    ]
    assert [row[:2] for row in _stages(out)] == [[s, "0"] for s in STAGES]
    log = (out / "gpu_check.log").read_text()
    assert all(f"==== {s} (budget " in log for s in STAGES)
    entries = json.loads((out / "entries.json").read_text())
    assert {e["name"] for e in entries} == ENTRIES
    for e in entries:
        assert e["details"]["dry_run"] and e["details"]["device"] == "cpu"
        assert math.isfinite(e["ours"]) and e["ours"] > 0 and math.isfinite(e["baseline"]) and e["baseline"] > 0
    step = next(e for e in entries if e["name"] == "gpu_step_images_per_s_1b")["details"]
    assert set(step["ours_stage_s"]) == {"cot", "image", "decode", "reward", "reference", "train", "sync"}
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[-1].startswith("gpu_check: 5/5 stages ok; tests 1 passed, 0 failed, 0 skipped; 4 entries")
    assert res.stdout.rstrip().endswith(summary[-1])  # printed last, where the device tool's output tail shows it


def test_stages_without_time_left_are_skipped_and_the_run_fails(tmp_path):
    out = tmp_path / "out"
    res = _run(out, "--dry-run", GPU_CHECK_SECONDS="0")
    assert res.returncode == 1
    assert [row[:2] for row in _stages(out)] == [[s, "skipped"] for s in STAGES]
    assert not (out / "entries.json").exists()
    assert (
        (out / "summary.txt")
        .read_text()
        .splitlines()[-1]
        .startswith("gpu_check: 0/5 stages ok (not ok: tests, bench_gpu_1b, step_1b, bench_gpu_7b, step_7b); 0 entries")
    )


def test_bad_arguments_print_the_usage(tmp_path):
    for args in ([], [str(tmp_path / "a"), "--fast"], [str(tmp_path / "a"), "--dry-run", "x"]):
        res = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and "usage: benchmarks/gpu_check.sh OUT_DIR [--dry-run]" in res.stderr


def _entry(name: str, **details) -> dict:
    return results_io.Entry(
        name, 12.0, 1.5, "images/s per GPU", target=10.0, details={"device": "NVIDIA H200", **details}
    ).to_json()


def test_record_merges_gpu_entries_and_refuses_dry_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(results_io, "RESULTS", tmp_path / "results.json")
    monkeypatch.setattr(results_io, "REPORT", tmp_path / "BENCHMARKS.md")
    (tmp_path / "results.json").write_text(json.dumps([_entry("sampler_image_tokens_per_s")]))
    run = tmp_path / "run"
    run.mkdir()
    (run / "entries.json").write_text(json.dumps([_entry("gpu_step_images_per_s_1b", dry_run=gpu_check.DRY_RUN)]))
    with pytest.raises(SystemExit, match="dry run"):
        gpu_check.record(run)
    assert json.loads((tmp_path / "results.json").read_text())[0]["name"] == "sampler_image_tokens_per_s"

    (run / "entries.json").write_text(json.dumps([_entry("gpu_step_images_per_s_1b")]))
    gpu_check.record(run)
    merged = json.loads((tmp_path / "results.json").read_text())
    assert [e["name"] for e in merged] == ["gpu_step_images_per_s_1b", "sampler_image_tokens_per_s"]
    assert merged[0]["ratio"] == 8.0 and merged[0]["meets_target"] is False
    assert "gpu_step_images_per_s_1b" in (tmp_path / "BENCHMARKS.md").read_text()
