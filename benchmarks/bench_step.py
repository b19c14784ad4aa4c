"""Step benchmarks of the whole loop (`python -m cluster.run`, a local Ray cluster, the embedded default).

``step_overlap_*``: median seconds per step of the one-step off-policy loop (the rollout of step t+1 runs while
step t is scored and trained) against the serial loop (trainer.mode=sync, T2I-R1's order), same config, same
seed, run one after the other in fresh processes. The details hold each mode's median seconds per stage, read
from its metrics.parquet: rollout, reward, learner update, weight sync, and (off-policy) the wait for the
overlapped rollout. The first steps (start-up, first allocations) are not counted.

Two configs: the embedded default as `make run` trains it, and the same with 32 CoT tokens instead of 8, where
the rollout takes about as long as the update: overlap can only hide the shorter of the two, so its gain is
bounded by (rollout + learner) / max(rollout, learner).
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.cluster_runs import REPO, cluster_run_command, cluster_run_env
from benchmarks.results_io import Entry

STEPS, SKIP = 14, 3
STAGES = ("rollout_s", "reward_s", "learner_s", "rollout_wait_s", "sync_s", "step_s")


def _run(mode: str, overrides: list[str]) -> dict[str, float]:
    """Median seconds per stage over the steps after SKIP."""
    with tempfile.TemporaryDirectory() as out:
        run_args = [f"trainer.mode={mode}", f"trainer.steps={STEPS}", "trainer.save_every=0", "logging.image_every=0"]
        cmd = cluster_run_command(out, [*run_args, *overrides])
        done = subprocess.run(cmd, cwd=REPO, env=cluster_run_env(), capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        rows = pq.read_table(Path(out) / "metrics.parquet").to_pylist()[SKIP:]
    return {k: statistics.median(r[k] for r in rows) for k in STAGES if all(r.get(k) is not None for r in rows)}


def _entry(name: str, overrides: list[str]) -> Entry:
    serial = _run("sync", overrides)
    overlap = _run("off_policy", overrides)
    return Entry(
        name=name,
        ours=overlap["step_s"],
        baseline=serial["step_s"],
        unit="s/step",
        higher_is_better=False,
        target=1.3,
        details={
            "off_policy_stages_s": overlap,
            "sync_stages_s": serial,
            "overrides": overrides,
            "steps_counted": STEPS - SKIP,
            "bound": (serial["rollout_s"] + serial["learner_s"]) / max(serial["rollout_s"], serial["learner_s"]),
        },
    )


def run() -> list[Entry]:
    return [
        _entry("step_overlap_embedded_default", []),
        _entry("step_overlap_cot32", ["rollout.cot.max_new_tokens=32"]),
    ]
